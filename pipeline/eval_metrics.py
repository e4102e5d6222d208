"""Per-class metrics TFMA computes for the blessing gate and the run summary.

Single-label models: from TFMA's own multi-class confusion matrix (the top-scoring
class is the prediction). Multi-label models: per label, true and false positives and
negatives at the decision threshold (a label is predicted when its score is at least
``threshold``), plus exact matches of the whole label set. From these counts:

* ``ClassReport``: precision, recall, F1 and support of every class (metric keys with
  ``sub_key.class_id``), for the summary;
* ``ClassMetric(name=...)``: one figure the gate can use, one of ``NAMES``.

Classes that neither occur in the eval split nor are ever predicted are left out of
the macro averages.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Iterable, List, Optional

import apache_beam as beam
import numpy as np
from tensorflow_model_analysis.metrics import (metric_types, metric_util,
                                               multi_class_confusion_matrix_metrics)

# What ClassMetric computes (single-label tasks have no subset_accuracy/micro_f1
# beyond accuracy, multi-label ones no confusion matrix).
SINGLE_LABEL_NAMES = ("macro_f1", "macro_precision", "macro_recall", "weighted_f1",
                      "min_class_recall")
MULTI_LABEL_NAMES = ("subset_accuracy", "micro_f1", "macro_f1", "macro_precision",
                     "macro_recall", "min_class_recall")
NAMES = tuple(dict.fromkeys(SINGLE_LABEL_NAMES + MULTI_LABEL_NAMES))
PER_CLASS = ("precision", "recall", "f1", "support")
_COUNTS = "_class_counts"


@dataclasses.dataclass
class Counts:
    """Per-class true positives, false positives and false negatives, and whole rows."""

    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    rows: float = 0.0
    exact: float = 0.0  # rows whose predicted label set is exactly right

    @property
    def present(self) -> np.ndarray:
        """Classes that occur in the split or were predicted."""
        return (self.tp + self.fp + self.fn) > 0

    def per_class(self) -> Dict[str, np.ndarray]:
        support = self.tp + self.fn
        return {"precision": _ratio(self.tp, self.tp + self.fp),
                "recall": _ratio(self.tp, support),
                "f1": _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn),
                "support": support}

    def figure(self, name: str) -> float:
        scores, present = self.per_class(), self.present
        if name == "subset_accuracy":
            return self.exact / self.rows if self.rows else 0.0
        if name == "micro_f1":
            tp, fp, fn = self.tp.sum(), self.fp.sum(), self.fn.sum()
            return float(2 * tp / (2 * tp + fp + fn)) if tp + fp + fn else 0.0
        if name == "weighted_f1":
            support = scores["support"]
            return float((scores["f1"] * support).sum() / support.sum()) if support.sum() \
                else 0.0
        if name == "min_class_recall":
            occurring = scores["support"] > 0
            return float(scores["recall"][occurring].min()) if occurring.any() else 0.0
        kind = name.removeprefix("macro_")
        return float(scores[kind][present].mean()) if present.any() else 0.0


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    return np.divide(numerator, denominator, out=np.zeros(len(numerator)),
                     where=denominator > 0)


def counts_from_matrices(matrices) -> Counts:
    """TFMA's multi-class confusion matrix (one threshold) -> per-class counts. A row whose
    label the model does not know (TFMA's class id -1) counts as a wrong prediction and
    in no class's recall."""
    entries = next(iter(matrices.values())) if matrices else {}
    classes = 1 + max((max(k.actual_class_id, k.predicted_class_id) for k in entries),
                      default=-1)
    tp, fp, fn = (np.zeros(classes) for _ in range(3))
    for key, weight in entries.items():
        actual, predicted = key.actual_class_id, key.predicted_class_id
        if actual < 0:  # a label the model does not know: a wrong answer, no class's row
            if predicted >= 0:
                fp[predicted] += weight
        elif actual == predicted:
            tp[actual] += weight
        else:
            fn[actual] += weight
            if predicted >= 0:
                fp[predicted] += weight
    return Counts(tp, fp, fn, rows=float(sum(entries.values())), exact=float(tp.sum()))


class _MultiLabelCountsCombiner(beam.CombineFn):
    """Per-label counts of multi-hot labels vs. scores at a threshold."""

    def __init__(self, key: metric_types.MetricKey, eval_config, threshold: float,
                 example_weighted: bool):
        self._key, self._eval_config = key, eval_config
        self._threshold, self._example_weighted = threshold, example_weighted

    def create_accumulator(self) -> Optional[Counts]:
        return None

    def add_input(self, counts: Optional[Counts], element) -> Counts:
        labels, scores, weight = next(metric_util.to_label_prediction_example_weight(
            element, eval_config=self._eval_config, model_name=self._key.model_name,
            output_name=self._key.output_name, example_weighted=self._example_weighted,
            flatten=False, require_single_example_weight=True))
        truth, predicted = labels.reshape(-1) > 0.5, scores.reshape(-1) >= self._threshold
        if counts is None:
            counts = Counts(*(np.zeros(len(truth)) for _ in range(3)))
        weight = float(weight)
        counts.tp += weight * (truth & predicted)
        counts.fp += weight * (~truth & predicted)
        counts.fn += weight * (truth & ~predicted)
        counts.rows += weight
        counts.exact += weight * bool(np.array_equal(truth, predicted))
        return counts

    def merge_accumulators(self, accumulators: Iterable[Optional[Counts]]) -> Optional[Counts]:
        merged = None
        for counts in accumulators:
            if counts is None:
                continue
            if merged is None:
                merged = Counts(counts.tp.copy(), counts.fp.copy(), counts.fn.copy(),
                                counts.rows, counts.exact)
            else:
                merged.tp += counts.tp
                merged.fp += counts.fp
                merged.fn += counts.fn
                merged.rows += counts.rows
                merged.exact += counts.exact
        return merged

    def extract_output(self, counts: Optional[Counts]) -> dict:
        return {self._key: counts}


def _counts_computations(multi_label: bool, threshold: float, eval_config, model_name: str,
                         output_name: str, example_weighted: bool):
    """(computations, function: their results -> Counts or None)."""
    if multi_label:
        key = metric_types.MetricKey(name=f"{_COUNTS}_{threshold}", model_name=model_name,
                                     output_name=output_name,
                                     example_weighted=example_weighted)
        computation = metric_types.MetricComputation(
            keys=[key], preprocessors=None,
            combiner=_MultiLabelCountsCombiner(key, eval_config, threshold, example_weighted))
        return [computation], lambda metrics: metrics.get(key)
    computations = multi_class_confusion_matrix_metrics.multi_class_confusion_matrices(
        thresholds=[0.0], eval_config=eval_config, model_name=model_name,
        output_name=output_name, example_weighted=example_weighted)
    key = computations[-1].keys[-1]
    return computations, lambda metrics: counts_from_matrices(metrics.get(key) or {})


def _class_metric(name: str, multi_label: bool = False, threshold: float = 0.5,
                  eval_config=None, model_name: str = "", output_name: str = "",
                  example_weighted: bool = False) -> metric_types.MetricComputations:
    key = metric_types.MetricKey(name=name, model_name=model_name, output_name=output_name,
                                 example_weighted=example_weighted)
    computations, counts_of = _counts_computations(multi_label, threshold, eval_config,
                                                   model_name, output_name, example_weighted)

    def result(metrics) -> dict:
        counts = counts_of(metrics)
        return {key: counts.figure(name) if counts is not None else float("nan")}

    return computations + [metric_types.DerivedMetricComputation(keys=[key], result=result)]


def _class_report(name: str = "class_report", multi_label: bool = False,
                  threshold: float = 0.5, eval_config=None, model_name: str = "",
                  output_name: str = "",
                  example_weighted: bool = False) -> metric_types.MetricComputations:
    computations, counts_of = _counts_computations(multi_label, threshold, eval_config,
                                                   model_name, output_name, example_weighted)

    def key(kind: str, class_id: int) -> metric_types.MetricKey:
        return metric_types.MetricKey(name=kind, model_name=model_name,
                                      output_name=output_name,
                                      sub_key=metric_types.SubKey(class_id=class_id),
                                      example_weighted=example_weighted)

    def result(metrics) -> dict:
        counts = counts_of(metrics)
        if counts is None:
            return {}
        scores = counts.per_class()
        return {key(kind, int(c)): float(scores[kind][c])
                for c in np.flatnonzero(counts.present) for kind in PER_CLASS}

    marker = metric_types.MetricKey(name=name, model_name=model_name,
                                    output_name=output_name,
                                    example_weighted=example_weighted)
    return computations + [metric_types.DerivedMetricComputation(keys=[marker],
                                                                 result=result)]


class ClassMetric(metric_types.Metric):
    """One per-class figure for the gate: ``name`` is one of ``NAMES``."""

    def __init__(self, name: str = "macro_f1", multi_label: bool = False,
                 threshold: float = 0.5):
        if name not in NAMES:
            raise ValueError(f"unknown class metric '{name}' (one of {', '.join(NAMES)})")
        super().__init__(metric_util.merge_per_key_computations(_class_metric), name=name,
                         multi_label=multi_label, threshold=threshold)


class ClassReport(metric_types.Metric):
    """Precision, recall, F1 and support of every class (``sub_key.class_id``)."""

    def __init__(self, name: str = "class_report", multi_label: bool = False,
                 threshold: float = 0.5):
        super().__init__(metric_util.merge_per_key_computations(_class_report), name=name,
                         multi_label=multi_label, threshold=threshold)


def names_for(multi_label: bool) -> List[str]:
    """Metric names eval.metric may pick for a task (besides accuracy, and auc for
    single-label tasks)."""
    return list(MULTI_LABEL_NAMES if multi_label else SINGLE_LABEL_NAMES)
