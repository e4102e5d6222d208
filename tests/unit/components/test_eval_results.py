"""Evaluation results (components/eval_results.py): per-class metrics computed by TFMA
itself (analyze_raw_data runs its real evaluator on labels and scores), checked against
scikit-learn, and the gate they drive."""
import json

import numpy as np
import pandas as pd
import pytest
import tensorflow_model_analysis as tfma
from sklearn import metrics as sk

from components import eval_results
from local import evaluation
from pipeline import eval_metrics

MODULE = eval_metrics.__name__
RNG = np.random.default_rng(0)


def _class_metric(name, multi_label=False, lower_bound=None, **kwargs):
    threshold = None if lower_bound is None else tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": lower_bound}))
    return tfma.MetricConfig(class_name="ClassMetric", module=MODULE, threshold=threshold,
                             config=json.dumps({"name": name, "multi_label": multi_label,
                                                **kwargs}))


def _analyze(tmp_path, labels, scores, metrics, binarize=None, gated="macro_f1"):
    frame = pd.DataFrame({"label": list(labels), "scores": [list(s) for s in scores]})
    specs = [tfma.MetricsSpec(metrics=metrics)]
    if binarize:
        specs.append(binarize)
    config = tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(label_key="label", prediction_key="scores")],
        slicing_specs=[tfma.SlicingSpec()], metrics_specs=specs)
    tfma.analyze_raw_data(frame, config, output_path=str(tmp_path))
    return eval_results.read(str(tmp_path), labels=["a", "b", "c"][:len(scores[0])],
                             gated=gated)


def test_single_label_report_matches_scikit_learn(tmp_path):
    truth = RNG.integers(0, 3, 300)
    scores = RNG.dirichlet([1, 1, 1], 300)
    scores[np.arange(300)[:150], truth[:150]] += 1  # half the rows right, half by chance
    scores /= scores.sum(axis=1, keepdims=True)
    predicted = scores.argmax(axis=1)
    result = _analyze(tmp_path, truth, scores, [
        tfma.MetricConfig(class_name="ClassReport", module=MODULE),
        tfma.MetricConfig(class_name="MultiClassConfusionMatrixAtThresholds",
                          config='{"thresholds": [0.0]}'),
        *[_class_metric(name) for name in eval_metrics.SINGLE_LABEL_NAMES]])
    precision, recall, f1, support = sk.precision_recall_fscore_support(truth, predicted)
    for c in range(3):
        assert result.per_class[c] == pytest.approx({
            "precision": precision[c], "recall": recall[c], "f1": f1[c],
            "support": support[c]})
    overall = result.metrics[""]
    assert overall["macro_f1"] == pytest.approx(sk.f1_score(truth, predicted, average="macro"))
    assert overall["weighted_f1"] == pytest.approx(
        sk.f1_score(truth, predicted, average="weighted"))
    assert overall["macro_recall"] == pytest.approx(
        sk.recall_score(truth, predicted, average="macro"))
    assert overall["min_class_recall"] == pytest.approx(recall.min())
    matrix = sk.confusion_matrix(truth, predicted)
    assert result.confusion == {(a, p): matrix[a, p] for a in range(3) for p in range(3)
                                if matrix[a, p]}
    lines = evaluation.confusion_lines(result.confusion, ["a", "b", "c"])
    assert lines[0].split()[-3:] == ["a", "b", "c"]
    assert [int(v) for v in lines[1].split()[1:]] == matrix[0].tolist()


def test_two_class_auc_and_a_macro_f1_gate_that_accuracy_would_pass(tmp_path):
    """95 of 100 rows are class 0 and the model always says 0: accuracy 0.95, but it never
    finds class 1, so macro-F1 is about 0.49 and a 0.7 bar blocks it."""
    truth = np.array([0] * 95 + [1] * 5)
    p1 = np.concatenate([RNG.uniform(0.0, 0.4, 95), RNG.uniform(0.2, 0.45, 5)])
    scores = np.stack([1 - p1, p1], axis=1)
    result = _analyze(tmp_path, truth, scores, [
        tfma.MetricConfig(class_name="SparseCategoricalAccuracy",
                          threshold=tfma.MetricThreshold(value_threshold=tfma.
                                                         GenericValueThreshold(
                                                             lower_bound={"value": 0.9}))),
        tfma.MetricConfig(class_name="ClassReport", module=MODULE),
        _class_metric("macro_f1", lower_bound=0.7),
        _class_metric("min_class_recall", lower_bound=0.2)],
        binarize=tfma.MetricsSpec(metrics=[tfma.MetricConfig(class_name="AUC")],
                                  binarize=tfma.BinarizationOptions(
                                      class_ids={"values": [1]})))
    overall = result.metrics[""]
    assert overall["sparse_categorical_accuracy"] == pytest.approx(0.95)
    assert overall["macro_f1"] == pytest.approx(sk.f1_score(truth, scores.argmax(1),
                                                            average="macro"))
    assert overall["auc"] == pytest.approx(sk.roc_auc_score(truth, p1), abs=2e-3)
    assert sorted(result.failures) == [
        "macro_f1 0.4872 is below the lower bound 0.7000 (eval.min_accuracy)",
        "min_class_recall 0.0000 is below the lower bound 0.2000 (eval.min_class_recall); "
        "lowest: class 'b', recall 0.0000 of 5"]


def test_the_gate_table_names_min_accuracy_when_min_class_recall_is_the_gated_metric(
        tmp_path):
    """eval.metric min_class_recall is bounded by eval.min_accuracy (the config forces
    eval.min_class_recall to 0 then): the card and report named the other setting."""
    truth = np.array([0] * 50 + [1] * 50)
    p1 = np.concatenate([RNG.uniform(0.0, 0.4, 50), RNG.uniform(0.3, 1.0, 50)])
    result = _analyze(tmp_path, truth, np.stack([1 - p1, p1], axis=1),
                      [tfma.MetricConfig(class_name="ClassReport", module=MODULE),
                       _class_metric("min_class_recall", lower_bound=0.99)],
                      gated="min_class_recall")
    [check] = eval_results.gate_checks(str(tmp_path), result)
    assert (check.metric, check.setting) == ("min_class_recall", "eval.min_accuracy")
    assert result.failures[0].endswith("(eval.min_accuracy); lowest: class 'b', recall "
                                       f"{result.per_class[1]['recall']:.4f} of 50")


def test_multi_label_metrics_match_scikit_learn(tmp_path):
    truth = (RNG.uniform(size=(200, 3)) < [0.5, 0.3, 0.1]).astype(float)
    truth[truth.sum(axis=1) == 0, 0] = 1.0
    scores = np.clip(truth * 0.4 + RNG.uniform(0, 0.7, size=(200, 3)), 0, 1)
    predicted = (scores >= 0.6).astype(int)
    names = eval_metrics.MULTI_LABEL_NAMES
    result = _analyze(tmp_path, truth.tolist(), scores, [
        tfma.MetricConfig(class_name="ClassReport", module=MODULE,
                          config='{"multi_label": true, "threshold": 0.6}'),
        *[_class_metric(name, multi_label=True, threshold=0.6) for name in names]])
    overall = result.metrics[""]
    assert overall["subset_accuracy"] == pytest.approx(sk.accuracy_score(truth, predicted))
    assert overall["micro_f1"] == pytest.approx(sk.f1_score(truth, predicted, average="micro"))
    assert overall["macro_f1"] == pytest.approx(sk.f1_score(truth, predicted, average="macro"))
    assert overall["macro_precision"] == pytest.approx(
        sk.precision_score(truth, predicted, average="macro"))
    recall = sk.recall_score(truth, predicted, average=None)
    assert overall["min_class_recall"] == pytest.approx(recall.min())
    assert [result.per_class[c]["support"] for c in range(3)] == truth.sum(axis=0).tolist()
    assert not result.confusion  # no multi-class matrix for several labels per text


def test_gate_failures_name_both_values_and_the_setting():
    from tensorflow_model_analysis.proto import validation_result_pb2

    evaluation_result = eval_results.Evaluation(
        metrics={"": {"sparse_categorical_accuracy": 0.78}},
        baseline_metrics={"": {"sparse_categorical_accuracy": 0.81}})
    change = validation_result_pb2.ValidationFailure()
    change.metric_key.name = "sparse_categorical_accuracy"
    change.metric_key.is_diff = True
    change.metric_threshold.change_threshold.absolute.value = -0.01 - 1e-9
    change.metric_value.double_value.value = -0.03
    assert eval_results.failure_text(change, evaluation_result, [], "") == (
        "sparse_categorical_accuracy 0.7800 vs. the baseline's 0.8100: a change of -0.0300, "
        "more than the allowed drop 0.0100 (eval.max_accuracy_drop)")
    missing = validation_result_pb2.ValidationFailure(message="Metric not found.")
    missing.metric_key.name = "macro_f1"
    assert eval_results.failure_text(missing, evaluation_result, [], "macro_f1") == (
        "macro_f1: no value was computed (Metric not found)")


def test_the_gate_table_has_one_row_per_threshold_with_a_baseline(tmp_path):
    """With a baseline TFMA's config names both models, and the baseline's thresholds
    were listed as well: every row twice in the card and the report after the first run."""
    from tensorflow_model_analysis.writers import eval_config_writer

    from pipeline.config import PipelineConfig
    from pipeline.pipeline import eval_config

    config = tfma.utils.update_eval_config_with_defaults(eval_config(PipelineConfig()),
                                                         has_baseline=True)
    (tmp_path / "eval_config.json").write_text(eval_config_writer._serialize_eval_run(
        config, "", "tfrecord", {"candidate": "/m/2", "baseline": "/m/1"}))
    result = eval_results.Evaluation(
        metrics={"": {"sparse_categorical_accuracy": 0.91}},
        baseline_metrics={"": {"sparse_categorical_accuracy": 0.9}})
    checks = eval_results.gate_checks(str(tmp_path), result)
    assert [(c.metric, c.kind) for c in checks] == [
        ("sparse_categorical_accuracy", "at least"),
        ("sparse_categorical_accuracy", "change vs. baseline at least")]
    assert checks[1].value == pytest.approx(0.01)
