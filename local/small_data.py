"""Plain words on small data: eval classes too small for their figures to mean much, and
training that looks too short. The run summary and the report show both."""
from __future__ import annotations

import math
from typing import Optional

MIN_EVAL_SUPPORT = 30  # a class's recall moves in steps of 1/rows: 3.3 points at 30 rows
FEW_STEPS = 300  # fewer training steps than this rarely fine-tune BERT on a new task
LOSS_MOVED = 0.9  # the loss "moved" when its end is below this share of its start
NEAR_UNIFORM = 0.1  # top probability within this share of (1 - 1/classes) above 1/classes


def low_support(per_class: dict, labels: list, minimum: int = MIN_EVAL_SUPPORT) -> list:
    """(class name, eval rows) of every class with fewer than ``minimum`` eval rows."""
    found = []
    for class_id, figures in sorted(per_class.items()):
        support = figures.get("support")
        if support is not None and support < minimum:
            name = labels[class_id] if 0 <= class_id < len(labels) else str(class_id)
            found.append((name, int(support)))
    return found


def low_support_warning(per_class: dict, labels: list,
                        minimum: int = MIN_EVAL_SUPPORT) -> Optional[str]:
    """One warning naming each class with too few eval rows, and the settings to change."""
    few = low_support(per_class, labels, minimum)
    if not few:
        return None
    shown = ", ".join(f"'{name}' {rows}" for name, rows in few)
    return (f"WARNING: few eval rows for {len(few)} class(es) (under {minimum} each: "
            f"{shown}): their precision, recall and F1, and the gate's figures, rest on too "
            f"few examples to mean much; raise data.eval_fraction, or give an eval set "
            f"(data.presplit)")


def _symptoms(stats: dict) -> list:
    found = []
    first, last = stats.get("first_loss"), stats.get("last_loss")
    if first and last is not None and last > LOSS_MOVED * first:
        found.append(f"the training loss barely moved ({first:.3f} -> {last:.3f})")
    top, classes = stats.get("eval_top_probability"), stats.get("classes")
    if top is not None and classes and classes >= 2:
        uniform = 1 / classes
        if top < uniform + NEAR_UNIFORM * (1 - uniform):
            found.append(f"its eval predictions are near uniform (top probability "
                         f"{top:.2f} on average; {uniform:.2f} is a guess among {classes} "
                         f"classes)")
    return found


def short_training_hint(stats: dict) -> Optional[str]:
    """A hint when the Trainer's ``train_stats.json`` says the model barely learned: too
    few steps (name model.epochs / model.train_steps), or else the learning rate."""
    symptoms = _symptoms(stats)
    steps = stats.get("steps")
    if not symptoms or not steps:
        return None
    hparams = stats.get("hparams", {})
    said = " and ".join(symptoms)
    if steps < FEW_STEPS:
        epochs = hparams.get("epochs")
        now = (f"model.train_steps is {hparams['train_steps']}" if hparams.get("train_steps")
               else f"model.epochs is {epochs:g}" if epochs else "")
        suggest = (f" (e.g. model.epochs {math.ceil(epochs * FEW_STEPS / steps)}, or "
                   f"model.train_steps {FEW_STEPS})" if epochs and not hparams.get(
                       "train_steps") else f" (e.g. model.train_steps {FEW_STEPS})")
        return (f"HINT: the model looks undertrained: {said} after only {steps} training "
                f"steps{f' ({now})' if now else ''}; train longer{suggest}")
    rate = hparams.get("learning_rate")
    return (f"HINT: the model barely learned: {said} after {steps} training steps; check "
            f"that texts and labels belong together, or try another model.learning_rate"
            + (f" (now {rate:g})" if rate else ""))
