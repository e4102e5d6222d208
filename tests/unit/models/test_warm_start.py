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


def _base_model(folder, checkpoint_dir, info: dict) -> str:
    """A base model as warm start reads one: the classifier's weights, its labels and its
    model_info.json."""
    import json
    import os

    import tensorflow as tf

    from models import checkpoint
    from serving import contract
    classifier = checkpoint.load_classifier(checkpoint_dir, 2)
    tf.saved_model.save(classifier, str(folder))
    extra = os.path.join(folder, contract.ASSETS_EXTRA)
    os.makedirs(extra, exist_ok=True)
    with open(os.path.join(extra, contract.LABELS_FILE), "w") as f:
        f.write("neg\npos\n")
    with open(os.path.join(extra, contract.MODEL_INFO_FILE), "w") as f:
        json.dump({"pooling": "cls", **info}, f)
    return str(folder)


def test_a_refused_warm_start_leaves_every_weight_as_it_was(tiny_checkpoint, tmp_path):
    """A base model with one encoder layer, a run with two: the missing weight is found
    after the embeddings and layer 0 were overwritten, and the run then trained a half
    warm model reported as 'from the checkpoint'. Every weight is now checked first."""
    from models import checkpoint, warm_start
    from tests.support.tiny_bert import make_tiny_checkpoint
    one_layer = make_tiny_checkpoint(str(tmp_path / "one-layer"), layers=1)
    base = _base_model(tmp_path / "base", one_layer, {})
    classifier = checkpoint.load_classifier(tiny_checkpoint, 2, pooling="cls")
    before = [v.numpy() for v in classifier.weights]
    with pytest.raises(ValueError, match="has no weight 'bert/encoder/layer_._1/"):
        warm_start.warm_start_from(classifier, base, ["neg", "pos"])
    assert all(np.array_equal(v.numpy(), b) for v, b in zip(classifier.weights, before))


@pytest.mark.parametrize("info,given,message", [
    ({"tokenizer_sha256": "0" * 64}, {}, "trained on another vocabulary or casing"),
    ({"multi_label": True}, {"multi_label": False},
     r"predicts several labels per text \(sigmoid\), this run one label per text"),
    # on Kubeflow the resolver queries by type alone: another pipeline's blessed model
    ({"pipeline": "other"}, {"pipeline": "reviews"},
     r"is pipeline 'other''s, this run's is 'reviews' \(name\)"),
])
def test_a_base_model_of_another_tokenizer_or_task_is_refused(tiny_checkpoint, tmp_path,
                                                              info, given, message):
    """Same shapes, so the weights loaded: another checkpoint's embeddings then read this
    vocabulary's ids, and softmax rows served as sigmoid logits."""
    from models import checkpoint, warm_start
    base = _base_model(tmp_path / "base", tiny_checkpoint, info)
    classifier = checkpoint.load_classifier(tiny_checkpoint, 2, pooling="cls")
    fingerprint = checkpoint.tokenizer_sha256(tiny_checkpoint)
    with pytest.raises(ValueError, match=message):
        warm_start.warm_start_from(classifier, base, ["neg", "pos"],
                                   tokenizer_sha256=fingerprint, **given)
    # the same tokenizer and task: carried over
    same = _base_model(tmp_path / "same", tiny_checkpoint,
                       {"tokenizer_sha256": fingerprint, "multi_label": False})
    assert "2 of 2 labels carried over" in warm_start.warm_start_from(
        classifier, same, ["neg", "pos"], tokenizer_sha256=fingerprint, multi_label=False)
