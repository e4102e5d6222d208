"""The Evaluator's output read back: what the run summary, the report and the model card
show.

Metrics per slice (candidate and baseline), every class's precision, recall, F1 and
support, the confusion matrix, each gate threshold with its value and verdict, and why
the gate failed: each failed threshold with both values and the setting that sets it,
or why no metric was computed. Pure readers of TFMA's files (local paths or URIs).

Beside the components (not in ``pipeline/``) so that the model card component reads it
without importing the pipeline that is built from it.
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

PER_CLASS = ("precision", "recall", "f1", "support")
CONFUSION = "multi_class_confusion_matrix_at_thresholds"


@dataclasses.dataclass
class Evaluation:
    metrics: dict = dataclasses.field(default_factory=dict)  # slice -> {metric: value}
    baseline_metrics: dict = dataclasses.field(default_factory=dict)
    per_class: dict = dataclasses.field(default_factory=dict)  # class id -> {kind: value}
    confusion: dict = dataclasses.field(default_factory=dict)  # (true id, predicted id) -> n
    failures: list = dataclasses.field(default_factory=list)
    failed: set = dataclasses.field(default_factory=set)  # (metric, is_diff) that failed
    # failures that are no threshold missed: no value computed, no examples in a slice
    problems: list = dataclasses.field(default_factory=list)
    gated: str = ""  # the metric eval.metric gates (its bound: eval.min_accuracy)


@dataclasses.dataclass
class GateCheck:
    """One threshold of the gate (on the whole eval split) and how the model fared."""

    metric: str
    kind: str  # "at least" (an absolute bar) or "change vs. baseline at least"
    bound: float
    value: Optional[float]
    passed: bool
    setting: str  # the configuration field that sets the bound


def slice_name(slice_key) -> str:
    return ";".join(f"{s.column}={s.bytes_value.decode() or s.int64_value}"
                    for s in slice_key.single_slice_keys)


def read(uri: str, labels: Sequence[str] = (), gated: str = "") -> Evaluation:
    """Reads an Evaluator output folder; ``labels`` name the class ids, ``gated`` is the
    metric ``eval.metric`` gates on (its bounds are eval.min_accuracy/max_accuracy_drop)."""
    import tensorflow_model_analysis as tfma

    result = Evaluation(gated=gated)
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
            result.failed.add((failure.metric_key.name, failure.metric_key.is_diff))
            result.failures.append(failure_text(failure, result, labels, gated))
            if failure.message:
                result.problems.append(result.failures[-1])
    for missing in validation.missing_slices:
        result.problems.append(
            f"no metrics for the slice {missing or 'overall'}: the eval split had no "
            f"examples there")
    if not validation.validation_ok and not result.failures and not result.problems:
        result.problems.append("no metric was computed on the eval split (no examples?)")
    result.failures += [p for p in result.problems if p not in result.failures]
    return result


def gate_checks(uri: str, evaluation: Evaluation) -> list:
    """Every threshold on the whole eval split in the eval config the Evaluator wrote
    to ``uri`` (without a baseline, TFMA drops the change thresholds), with the value it
    judged (as TFMA names the metrics) and whether it passed."""
    from tensorflow_model_analysis.metrics import metric_specs
    from tensorflow_model_analysis.writers import eval_config_writer

    config = eval_config_writer.load_eval_run(uri)[0]
    checks = []
    thresholds = metric_specs.metric_thresholds_from_metrics_specs(config.metrics_specs,
                                                                    config)
    baselines = {spec.name for spec in config.model_specs if spec.is_baseline}
    for key, found in sorted(thresholds.items(), key=lambda kv: (kv[0].name, kv[0].is_diff)):
        if key.model_name in baselines:
            continue  # TFMA lists the baseline's thresholds too; only the candidate is gated
        candidate = evaluation.metrics.get("", {}).get(key.name)
        baseline = evaluation.baseline_metrics.get("", {}).get(key.name)
        failed = (key.name, key.is_diff) in evaluation.failed
        for slicing, threshold in found:
            if slicing is not None and (slicing.feature_keys or slicing.feature_values):
                continue  # a threshold per slice (pipeline.eval_config sets none)
            if key.is_diff:
                value = candidate - baseline if None not in (candidate, baseline) else None
                # TFMA passes a change strictly above the bound; the pipeline subtracts an
                # epsilon so that an equal value passes (see pipeline.eval_config).
                bound = threshold.absolute.value + 1e-9
                checks.append(GateCheck(key.name, "change vs. baseline at least", bound,
                                        value, not failed, "eval.max_accuracy_drop"))
            else:
                setting = "eval.min_class_recall" if key.name == "min_class_recall" \
                    and key.name != evaluation.gated else "eval.min_accuracy"
                checks.append(GateCheck(key.name, "at least", threshold.lower_bound.value,
                                        candidate, not failed, setting))
    return checks


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
