"""The Evaluator's output as the run summary shows it.

Metrics per slice (candidate and baseline), every class's precision, recall, F1 and
support, the confusion matrix, and why the gate failed: each failed threshold with both
values and the setting that sets it, or why no metric was computed.
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

PER_CLASS = ("precision", "recall", "f1", "support")
CONFUSION = "multi_class_confusion_matrix_at_thresholds"
CORNER = "true \\ predicted"


@dataclasses.dataclass
class Evaluation:
    metrics: dict = dataclasses.field(default_factory=dict)  # slice -> {metric: value}
    baseline_metrics: dict = dataclasses.field(default_factory=dict)
    per_class: dict = dataclasses.field(default_factory=dict)  # class id -> {kind: value}
    confusion: dict = dataclasses.field(default_factory=dict)  # (true id, predicted id) -> n
    failures: list = dataclasses.field(default_factory=list)


def slice_name(slice_key) -> str:
    return ";".join(f"{s.column}={s.bytes_value.decode() or s.int64_value}"
                    for s in slice_key.single_slice_keys)


def read(uri: str, labels: Sequence[str] = (), gated: str = "") -> Evaluation:
    """Reads an Evaluator output folder; ``labels`` name the class ids, ``gated`` is the
    metric ``eval.metric`` gates on (its bounds are eval.min_accuracy/max_accuracy_drop)."""
    import tensorflow_model_analysis as tfma

    result = Evaluation()
    for per_slice in tfma.load_metrics(uri):
        name = slice_name(per_slice.slice_key)
        for kv in per_slice.metric_keys_and_values:
            key, value = kv.key, kv.value
            if key.is_diff:
                continue
            baseline = key.model_name == "baseline"
            if value.HasField(CONFUSION) and not name and not baseline:
                for matrix in value.multi_class_confusion_matrix_at_thresholds.matrices[:1]:
                    result.confusion = {(e.actual_class_id, e.predicted_class_id):
                                        e.num_weighted_examples for e in matrix.entries}
            if not value.HasField("double_value"):
                continue
            number = value.double_value.value
            if key.name in PER_CLASS and key.sub_key.HasField("class_id"):
                if not name and not baseline:
                    result.per_class.setdefault(key.sub_key.class_id.value, {})[key.name] = number
                continue
            if key.name == "auc" and len(labels) != 2:  # class 1 vs. the rest: binary only
                continue
            target = result.baseline_metrics if baseline else result.metrics
            target.setdefault(name, {})[key.name] = number
    validation = tfma.load_validation_result(uri)
    for per_slice in validation.metric_validations_per_slice:
        for failure in per_slice.failures:
            result.failures.append(failure_text(failure, result, labels, gated))
    for missing in validation.missing_slices:
        result.failures.append(
            f"no metrics for the slice {missing or 'overall'}: the eval split had no "
            f"examples there")
    if not validation.validation_ok and not result.failures:
        result.failures.append("no metric was computed on the eval split (no examples?)")
    return result


def failure_text(failure, evaluation: Evaluation, labels: Sequence[str], gated: str) -> str:
    """One failed threshold: the metric, its value, the bound and the setting behind it."""
    name = failure.metric_key.name
    if failure.message:
        return f"{name}: no value was computed ({failure.message.rstrip('.')})"
    value = failure.metric_value.double_value.value
    threshold = failure.metric_threshold
    if failure.metric_key.is_diff:
        candidate = evaluation.metrics.get("", {}).get(name)
        baseline = evaluation.baseline_metrics.get("", {}).get(name)
        both = (f"{candidate:.4f} vs. the baseline's {baseline:.4f}"
                if candidate is not None and baseline is not None else "")
        drop = max(-threshold.change_threshold.absolute.value - 1e-9, 0.0)
        return (f"{name} {both}: a change of {value:+.4f}, more than the allowed drop "
                f"{drop:.4f} (eval.max_accuracy_drop)")
    bound = threshold.value_threshold.lower_bound.value
    setting = "eval.min_accuracy" if name == gated else "eval.min_class_recall"
    text = f"{name} {value:.4f} is below the lower bound {bound:.4f} ({setting})"
    if name == "min_class_recall":
        worst = weakest_class(evaluation.per_class, labels)
        if worst:
            text += f"; lowest: {worst}"
    return text


def label_of(class_id: int, labels: Sequence[str]) -> str:
    return labels[class_id] if 0 <= class_id < len(labels) else str(class_id)


def weakest_class(per_class: dict, labels: Sequence[str]) -> Optional[str]:
    occurring = {c: v for c, v in per_class.items() if v.get("support", 0) > 0}
    if not occurring:
        return None
    class_id = min(occurring, key=lambda c: occurring[c].get("recall", 0.0))
    values = occurring[class_id]
    return (f"class '{label_of(class_id, labels)}', recall {values.get('recall', 0):.4f} "
            f"of {values['support']:.0f}")


def per_class_lines(per_class: dict, labels: Sequence[str]) -> list:
    width = max([len("class")] + [len(label_of(c, labels)) for c in per_class]) + 2
    lines = [f"  {'class':<{width}}{'precision':>10}{'recall':>9}{'f1':>9}{'support':>9}"]
    for class_id in sorted(per_class):
        v = per_class[class_id]
        lines.append(f"  {label_of(class_id, labels):<{width}}{v.get('precision', 0):>10.4f}"
                     f"{v.get('recall', 0):>9.4f}{v.get('f1', 0):>9.4f}"
                     f"{v.get('support', 0):>9.0f}")
    return lines


def confusion_lines(confusion: dict, labels: Sequence[str]) -> list:
    """Rows: true class; columns: predicted class."""
    ids = sorted({c for pair in confusion for c in pair if c >= 0})
    names = [label_of(c, labels) for c in ids]
    width = max([len(CORNER)] + [len(n) for n in names]) + 2
    cell = max([8] + [len(n) + 2 for n in names])
    lines = [f"  {CORNER:<{width}}" + "".join(f"{n:>{cell}}" for n in names)]
    for actual, name in zip(ids, names):
        lines.append(f"  {name:<{width}}" + "".join(
            f"{confusion.get((actual, predicted), 0):>{cell}.0f}" for predicted in ids))
    return lines
