"""The model card as Markdown: what a reviewer needs to approve (or question) a model.

``markdown(facts)`` renders ``CardFacts`` gathered by the ModelCard executor (or by
anyone holding the same values, e.g. the run report); nothing here reads files.
"""
from __future__ import annotations

import dataclasses
import html
import json
import os
from typing import Optional, Sequence

from components.eval_results import Evaluation, label_of
from models.hparams import POOLING_WORDS
from serving.contract import ASSETS_EXTRA, MODEL_CARD_FILE

CARD_FILE = os.path.join(ASSETS_EXTRA, MODEL_CARD_FILE)  # inside the SavedModel folder
TRAINING_FIGURES = (("train_examples", "training examples"), ("steps", "training steps"),
                    ("precision", "precision"), ("fit_seconds", "training seconds"),
                    ("examples_per_second", "examples/s"))


@dataclasses.dataclass
class DataFacts:
    sources: list = dataclasses.field(default_factory=list)  # lines naming what was read
    rows: dict = dataclasses.field(default_factory=dict)  # split -> rows
    classes: dict = dataclasses.field(default_factory=dict)  # split -> {label: rows}
    scripts: dict = dataclasses.field(default_factory=dict)  # script -> share of letters
    scripts_sample: int = 0  # texts the script shares come from
    unknown_share: Optional[float] = None  # [UNK] share of the training word pieces


@dataclasses.dataclass
class CardFacts:
    model_name: str
    run_id: str
    created: str  # UTC, ISO 8601
    labels: list
    data: DataFacts
    training: dict  # the Trainer's train_stats.json (hparams, where it started, figures)
    evaluation: Evaluation
    gate: list  # components.eval_results.GateCheck
    blessed: Optional[bool]
    intended_use: str = ""
    limitations: str = ""
    owners: str = ""
    lineage: list = dataclasses.field(default_factory=list)  # (role, artifact id, URI)
    input_contract: dict = dataclasses.field(default_factory=dict)  # model_info.json's "input"


def card_path(model_uri: str) -> str:
    """Where the card lies in a Model artifact (ModelCard's output ``model_with_card``)."""
    from tfx.utils import path_utils

    return os.path.join(path_utils.serving_model_path(model_uri), CARD_FILE)


def _text(value) -> str:
    """Text from the data (a label, a column or file name) as Markdown shows it: no HTML,
    no link (GitHub's Markdown links a bare https://... too: its ':' is written as an
    entity, which every renderer shows as ':')."""
    return (html.escape(str(value), quote=False).replace("[", "\\[").replace("]", "\\]")
            .replace("://", "&#58;//"))


def _cell(value) -> str:
    """A Markdown table cell: text (``_text``), pipes escaped, one line."""
    return _text(value).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence, rows: Sequence[Sequence]) -> list:
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |",
             "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]


def _number(value, count: bool = False) -> str:
    """A figure as the card shows it: counts whole, other numbers to 4 decimals."""
    if value is None:
        return "-"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.0f}" if count or isinstance(value, int) else f"{value:.4f}"
    return str(value)


def _metric(name: str, value) -> str:
    return _number(value, count=name.endswith("count") or name == "support")


def _details(facts: CardFacts) -> list:
    checkpoint = facts.training.get("checkpoint") or facts.training.get(
        "hparams", {}).get("checkpoint", "unknown")
    return ["## Model details", "",
            f"- Name: {facts.model_name}",
            f"- Run: {facts.run_id}",
            f"- Created: {facts.created}",
            f"- Base checkpoint: {checkpoint}",
            f"- Classes: {', '.join(map(_text, facts.labels)) or 'unknown'}",
            f"- Gate: {_verdict(facts.blessed)}"]


def _verdict(blessed: Optional[bool]) -> str:
    return {True: "BLESSED", False: "NOT BLESSED", None: "unknown"}[blessed]


def _data(data: DataFacts, labels: Sequence[str]) -> list:
    lines = ["## Data", "", "Sources:", ""] + [f"- {_text(s)}"
                                              for s in data.sources or ["unknown"]]
    splits = sorted(data.rows, key=lambda split: (split != "train", split))
    if splits:
        names = list(labels) + sorted({c for counts in data.classes.values()
                                       for c in counts} - set(labels))
        lines += ["", "Rows per split and class:", ""]
        lines += _table(["class"] + splits,
                        [[name] + [data.classes.get(s, {}).get(name, 0) for s in splits]
                         for name in names] + [["all rows"] + [data.rows[s] for s in splits]])
    if data.scripts:
        shares = ", ".join(f"{script} {100 * share:.1f}%"
                           for script, share in sorted(data.scripts.items(),
                                                       key=lambda kv: -kv[1]))
        lines += ["", f"- Scripts (letters of {data.scripts_sample} training texts): "
                      f"{shares}. Languages: not detected."]
    else:
        lines += ["", "- Languages: unknown (not detected)."]
    if data.unknown_share is not None:
        lines.append(f"- [UNK] word pieces: {100 * data.unknown_share:.1f}% of the training "
                     f"split (high shares mean the checkpoint's vocabulary does not fit "
                     f"the text).")
    return lines


def _inputs(contract: dict) -> list:
    """What callers send: the columns, how they are joined, each signature's inputs."""
    lines = ["## Input contract", ""]
    if not contract:
        return lines + ["Not recorded in model_info.json (a model exported before it was)."]
    columns = contract.get("text_columns", [])
    pair = contract.get("text_pair_columns", [])
    separator = json.dumps(contract.get("text_separator", " "), ensure_ascii=False)
    lines.append(f"- Text: the column{'s' if len(columns) > 1 else ''} "
                 f"{', '.join(map(_text, columns)) or 'unknown'}"
                 + (f", joined with {separator} (empty parts "
                    f"{contract.get('empty_parts', 'left out')}), in the model's graph"
                    if len(columns) > 1 else "") + ".")
    if pair:
        lines.append(f"- Second text of each pair: {', '.join(map(_text, pair))}"
                     + (f", joined with {separator}" if len(pair) > 1 else "") + ".")
    privacy = contract.get("privacy", {})
    patterns = [name for name, _ in privacy.get("custom_patterns", [])]
    lines.append(f"- Privacy: redacts {privacy.get('redact', 'unknown')}"
                 + (f" and {', '.join(patterns)}" if patterns else "")
                 + " before tokenizing, in every signature.")
    kinds = {"classify": "tf.Example features", "serving_default":
             "tf.Example features of the joined text (TFMA)"}
    lines += [""] + _table(["signature", "inputs", "as"], [
        [name, ", ".join(inputs), kinds.get(name, "strings")]
        for name, inputs in contract.get("signatures", {}).items()])
    return lines


def _training(training: dict) -> list:
    lines = ["## Training", "",
             f"Training started {training.get('started_from', 'from an unknown point')}."]
    if training.get("pooling") in POOLING_WORDS:
        lines[-1] += f" The classifier reads {POOLING_WORDS[training['pooling']]}."
    figures = [[label, _number(training[key])] for key, label in TRAINING_FIGURES
               if training.get(key) is not None]
    figures += [[f"final {name}", _number(value)]
                for name, value in sorted(training.get("final", {}).items())]
    if figures:
        lines += [""] + _table(["figure", "value"], figures)
    hparams = training.get("hparams", {})
    if hparams:
        lines += ["", "Settings (`model.*`):", ""]
        lines += _table(["setting", "value"],
                        [[name, "-" if value is None else value]
                         for name, value in sorted(hparams.items())])
    return lines


def _metrics(evaluation: Evaluation, labels: Sequence[str]) -> list:
    if not evaluation.metrics:
        return ["## Metrics (eval split)", "", "No metric was computed."]
    overall = evaluation.metrics.get("", {})
    base = evaluation.baseline_metrics.get("", {})
    lines = ["## Metrics (eval split)", "", "Overall (baseline: the latest blessed model, "
             "when there is one):", ""]
    lines += _table(["metric", "value", "baseline"],
                    [[name, _metric(name, value), _metric(name, base.get(name))]
                     for name, value in sorted(overall.items())])
    slices = sorted(name for name in evaluation.metrics if name)
    if slices:
        names = sorted({m for s in slices for m in evaluation.metrics[s]})
        lines += ["", "Per slice:", ""]
        lines += _table(["slice"] + names,
                        [[s] + [_metric(m, evaluation.metrics[s].get(m)) for m in names]
                         for s in slices])
    if evaluation.per_class:
        lines += ["", "Per class:", ""]
        kinds = ("precision", "recall", "f1", "support")
        lines += _table(["class", *kinds],
                        [[label_of(c, labels)] + [_metric(k, evaluation.per_class[c].get(k))
                                                  for k in kinds]
                         for c in sorted(evaluation.per_class)])
    if evaluation.confusion:
        ids = sorted({c for pair in evaluation.confusion for c in pair if c >= 0})
        lines += ["", "Confusion matrix (rows: true class, columns: predicted):", ""]
        lines += _table(["true \\ predicted"] + [label_of(c, labels) for c in ids],
                        [[label_of(t, labels)] + [_number(evaluation.confusion.get((t, p), 0), True)
                                                  for p in ids] for t in ids])
    return lines


def _gate(facts: CardFacts) -> list:
    lines = ["## Gate", "", f"Decision: **{_verdict(facts.blessed)}** (thresholds on the "
                            "whole eval split; slices are reported, not gated)."]
    if facts.gate:
        lines += [""] + _table(
            ["metric", "threshold", "value", "result", "set by"],
            [[c.metric, f"{c.kind} {c.bound:+.4f}" if c.setting == "eval.max_accuracy_drop"
              else f"{c.kind} {c.bound:.4f}",
              _number(c.value) if c.setting != "eval.max_accuracy_drop" or c.value is None
              else f"{c.value:+.4f}", "passed" if c.passed else "FAILED", c.setting]
             for c in facts.gate])
    notes = list(facts.evaluation.problems)
    if not facts.evaluation.baseline_metrics:
        notes.append("No baseline (no model was blessed before): the comparison with it "
                     "(eval.max_accuracy_drop) did not apply.")
    return lines + ([""] + [f"- {note}" for note in notes] if notes else [])


def _use(facts: CardFacts) -> list:
    return ["## Intended use", "", facts.intended_use or "Not stated (model_card.intended_use).",
            "", "## Limitations", "", facts.limitations or "Not stated (model_card.limitations).",
            "", "## Owners", "", facts.owners or "Not stated (model_card.owners)."]


def _lineage(lineage: Sequence) -> list:
    if not lineage:
        return []
    return ["## Lineage", ""] + _table(["artifact", "id", "URI"],
                                       [[role, artifact_id or "-", uri]
                                        for role, artifact_id, uri in lineage])


def markdown(facts: CardFacts) -> str:
    """The whole card."""
    sections = [[f"# Model card: {facts.model_name}"], _details(facts),
                _data(facts.data, facts.labels), _inputs(facts.input_contract),
                _training(facts.training),
                _metrics(facts.evaluation, facts.labels), _gate(facts), _use(facts),
                _lineage(facts.lineage)]
    return "\n\n".join("\n".join(s) for s in sections if s) + "\n"
