"""Evaluation metric names (pipeline/eval_metrics.py): an unknown class metric is
refused."""
import pytest

from pipeline import eval_metrics


def test_unknown_class_metric_is_refused():
    with pytest.raises(ValueError, match="unknown class metric 'kappa'"):
        eval_metrics.ClassMetric(name="kappa")
