"""The candidate model on a bounded sample of eval examples: calibration and the
examples it gets most wrong.

TFMA writes metrics, not per-example predictions, so the report loads the Trainer's
serving model and runs its ``serving_default`` signature on the first
``MAX_EXAMPLES`` raw eval examples (the ones TFMA evaluated, from TextExampleGen).
Redaction's placeholders (``[unused1]``, the word pieces the model reads) are shown by
their type's name (``[EMAIL]``, custom types as named in ``privacy.custom_patterns``).
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Optional, Sequence

import numpy as np
from tfx.dsl.io import fileio

from local.report.data import split_folders
from serving import contract

MAX_EXAMPLES = 256  # keeps the report cheap: one model load and a few batches
BATCH = 64
MOST_WRONG = 10
BINS = 10


@dataclasses.dataclass
class Scored:
    texts: list
    truth: np.ndarray  # rows x classes, multi-hot (one-hot for single-label models)
    probabilities: np.ndarray  # rows x classes
    multi_label: bool
    threshold: float  # multi-label decision threshold
    of_total: Optional[int] = None  # eval rows in the split (TFMA's example count)

    def confidence_and_correct(self) -> tuple[np.ndarray, np.ndarray]:
        """Single-label: the top class's probability and whether it is the true class;
        multi-label: every (row, label) score and whether the label is true."""
        if self.multi_label:
            return self.probabilities.reshape(-1), self.truth.reshape(-1) > 0.5
        predicted = self.probabilities.argmax(axis=1)
        return self.probabilities.max(axis=1), self.truth[np.arange(len(predicted)),
                                                          predicted] > 0.5

    def reliability(self, bins: int = BINS) -> list:
        """(bin low, bin high, rows, mean confidence, accuracy) of each non-empty bin."""
        confidence, correct = self.confidence_and_correct()
        edges = np.linspace(0.0, 1.0, bins + 1)
        which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
        rows = []
        for b in range(bins):
            inside = which == b
            if inside.any():
                rows.append((edges[b], edges[b + 1], int(inside.sum()),
                             float(confidence[inside].mean()), float(correct[inside].mean())))
        return rows

    def expected_calibration_error(self) -> float:
        total = sum(r[2] for r in self.reliability())
        return sum(r[2] / total * abs(r[3] - r[4]) for r in self.reliability()) if total \
            else 0.0

    def most_wrong(self, labels: Sequence[str], n: int = MOST_WRONG) -> list:
        """Up to ``n`` misclassified rows, worst first: (text, true, predicted, error),
        the error being 1 - p(true class), or the largest |truth - score| of a label."""
        if self.multi_label:
            error = np.abs(self.truth - self.probabilities).max(axis=1)
            predicted = self.probabilities >= self.threshold
            wrong = (predicted != (self.truth > 0.5)).any(axis=1)
        else:
            error = 1.0 - (self.truth * self.probabilities).sum(axis=1)
            predicted = self.probabilities.argmax(axis=1)
            wrong = self.truth.argmax(axis=1) != predicted
        found = []
        for i in np.argsort(-error):
            if len(found) == n:
                break
            if wrong[i]:
                found.append((self.texts[i], _names(self.truth[i] > 0.5, labels),
                              _names(predicted[i], labels, self.probabilities[i]),
                              float(error[i])))
        return found


def _names(row, labels: Sequence[str], probabilities=None) -> str:
    if np.ndim(row) == 0:  # a predicted class id
        return f"{labels[int(row)]} ({probabilities[int(row)]:.2f})"
    names = [labels[i] for i in np.flatnonzero(row)]
    if probabilities is not None:
        names = [f"{labels[i]} ({probabilities[i]:.2f})" for i in np.flatnonzero(row)]
    return ", ".join(names) or "(none)"


def placeholder_names(privacy: Optional[dict] = None) -> dict:
    """{placeholder: "[NAME]"} of every built-in type and the custom types of ``privacy``
    (the run's settings, as the Trainer recorded them)."""
    from models import redaction

    custom = [tuple(pair) for pair in (privacy or {}).get("custom_patterns", [])]
    return {t.placeholder: f"[{t.name.upper()}]"
            for t in redaction.BUILTIN + redaction.custom_types(custom)}


def readable(text: str, names: dict) -> str:
    """``text`` with each known placeholder replaced by its type's name."""
    return re.sub(r"\[unused\d+\]", lambda m: names.get(m.group(0), m.group(0)), text)


def _model_info(model_dir: str) -> dict:
    path = os.path.join(model_dir, contract.ASSETS_EXTRA, contract.MODEL_INFO_FILE)
    if not fileio.exists(path):
        return {}
    with fileio.open(path) as f:
        return json.load(f)


def score(model_uri: str, examples_uri: str, labels: Sequence[str],
          limit: int = MAX_EXAMPLES, placeholders: Optional[dict] = None) -> Optional[Scored]:
    """The Trainer's model (``<model_uri>/Format-Serving``) on the first ``limit`` eval
    examples of TextExampleGen's output; None without eval examples or labels.
    ``placeholders``: ``placeholder_names`` of the run (default: the built-in types)."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401 - registers the tokenizer ops

    from models.export import redact_texts

    folder = split_folders(examples_uri).get("eval")
    if folder is None or not labels:
        return None
    files = sorted(fileio.glob(os.path.join(folder, "*")))
    serialized = [r.numpy() for r in tf.data.TFRecordDataset(
        files, compression_type="GZIP").take(limit)] if files else []
    if not serialized:
        return None
    model_dir = os.path.join(model_uri, contract.SERVING_MODEL_DIR)
    info = _model_info(model_dir)
    model = tf.saved_model.load(model_dir)
    predict = model.signatures[contract.EXAMPLES_SIGNATURE]

    probabilities = np.concatenate([
        predict(**{contract.EXAMPLES_INPUT: tf.constant(serialized[i:i + BATCH])})[
            contract.PROBABILITIES].numpy() for i in range(0, len(serialized), BATCH)])
    index = {label: i for i, label in enumerate(labels)}
    truth = np.zeros((len(serialized), len(labels)))
    rows, names = [], placeholder_names() if placeholders is None else placeholders
    for row, record in enumerate(serialized):
        example = tf.train.Example.FromString(record).features.feature
        for value in example[contract.LABEL_FEATURE].bytes_list.value:
            if value.decode() in index:
                truth[row, index[value.decode()]] = 1.0
        rows.append([example[name].bytes_list.value[0]
                     for name in (contract.TEXT_FEATURE, contract.TEXT_PAIR_FEATURE)
                     if name in example and example[name].bytes_list.value])
    # Examples hold raw text with privacy.at_ingestion false: shown as the model redacts
    flat = [part for parts in rows for part in parts]
    redacted = redact_texts(model, flat, BATCH)
    if redacted is not None:
        flat = redacted
    texts, start = [], 0
    for parts in rows:
        texts.append(" ⟂ ".join(readable(part.decode("utf-8", errors="replace"), names)
                                 for part in flat[start:start + len(parts)]))
        start += len(parts)
    known = truth.sum(axis=1) > 0  # rows whose labels the model knows
    return Scored([t for t, k in zip(texts, known) if k], truth[known], probabilities[known],
                  bool(info.get("multi_label")), float(info.get("threshold", 0.5)))
