"""Evaluation metric names (pipeline/eval_metrics.py): an unknown class metric is
refused."""
import pytest

from pipeline import eval_metrics


def test_unknown_class_metric_is_refused():
    with pytest.raises(ValueError, match="unknown class metric 'kappa'"):
        eval_metrics.ClassMetric(name="kappa")


def test_rows_of_a_label_the_model_does_not_know_count_against_no_class():
    """TFMA gives a label outside the model's vocabulary (a baseline trained before the
    label set grew) the class id -1: fn[-1] counted those rows against the last class."""
    from tensorflow_model_analysis.metrics.multi_class_confusion_matrix_metrics import \
        MatrixEntryKey

    counts = eval_metrics.counts_from_matrices({0.0: {
        MatrixEntryKey(0, 0): 36, MatrixEntryKey(0, 1): 4, MatrixEntryKey(1, 1): 36,
        MatrixEntryKey(1, 0): 4, MatrixEntryKey(-1, 0): 20}})
    scores = counts.per_class()
    assert list(scores["support"]) == [40, 40]
    assert list(scores["recall"]) == pytest.approx([0.9, 0.9])
    assert list(counts.fp) == [24, 4]  # the new class's rows are wrong predictions of 0
    assert counts.rows == 100 and counts.exact == 72
