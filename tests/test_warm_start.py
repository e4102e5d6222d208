"""Warm start moves classifier columns by label name."""
import numpy as np

from models.warm_start import _by_label


def test_classifier_columns_follow_label_names():
    saved = np.array([[1.0, 2.0], [3.0, 4.0]])  # hidden 2, labels ["neg", "pos"]
    fresh = np.full((2, 3), 9.0)  # now ["pos", "neutral", "neg"]
    moved = _by_label(saved, fresh, ["neg", "pos"], ["pos", "neutral", "neg"])
    assert moved.tolist() == [[2.0, 9.0, 1.0], [4.0, 9.0, 3.0]]
    bias = _by_label(np.array([0.5, -0.5]), np.zeros(3), ["neg", "pos"], ["pos", "neutral", "neg"])
    assert bias.tolist() == [-0.5, 0.0, 0.5]
    assert fresh[0, 0] == 9.0  # the fresh weights are not modified in place
