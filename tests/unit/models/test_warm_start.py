"""Warm start moves classifier columns by label name."""
import numpy as np
import pytest

from models.warm_start import _by_label


def test_classifier_columns_follow_label_names():
    saved = np.array([[1.0, 2.0], [3.0, 4.0]])  # hidden 2, labels ["neg", "pos"]
    fresh = np.full((2, 3), 9.0)  # now ["pos", "neutral", "neg"]
    moved = _by_label(saved, fresh, ["neg", "pos"], ["pos", "neutral", "neg"])
    assert moved.tolist() == [[2.0, 9.0, 1.0], [4.0, 9.0, 3.0]]
    bias = _by_label(np.array([0.5, -0.5]), np.zeros(3), ["neg", "pos"], ["pos", "neutral", "neg"])
    assert bias.tolist() == [-0.5, 0.0, 0.5]
    assert fresh[0, 0] == 9.0  # the fresh weights are not modified in place


@pytest.mark.parametrize("save_traces", [True, False])
def test_saved_weights_read_a_model_saved_with_or_without_keras_traces(tmp_path, save_traces):
    """Models pushed before the export left out Keras's traces still warm-start: both kinds
    of SavedModel give the same named weights with the same values."""
    import tensorflow as tf

    from models.warm_start import saved_weights
    inputs = tf.keras.Input((3,))
    hidden = tf.keras.layers.Dense(4, name="encoder")(inputs)
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(2, name="classifier")(hidden))
    path = str(tmp_path / "saved")
    model.save(path, save_format="tf", save_traces=save_traces)
    loaded = {v.name: v.numpy() for v in saved_weights(tf.saved_model.load(path))}
    expected = {v.name: v.numpy() for v in model.weights}
    assert sorted(loaded) == sorted(expected) and len(expected) == 4
    for key, value in expected.items():
        np.testing.assert_array_equal(loaded[key], value)
