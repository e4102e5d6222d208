"""The classifier's pooling (models/pooling.py): auto follows the checkpoint's own
sentence-transformers pooling file; the mean-pooled head reads the masked mean of the
tokens, trains without touching the unread pooler, exports in float32; a warm start
across poolings is refused."""
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from models import checkpoint, model, pooling, warm_start
from models.hparams import DEFAULT_CHECKPOINT, ModelHParams
from serving import contract
from tests.support.tiny_bert import build_in_precision

IDS = [[101, 2307, 3185, 102]]


def test_auto_follows_the_checkpoints_own_pooling_file(tiny_checkpoint, tmp_path, caplog):
    default = checkpoint.resolve_checkpoint_dir(DEFAULT_CHECKPOINT)  # all-MiniLM-L6-v2
    assert pooling.resolve_pooling("auto", default) == "mean"
    assert pooling.resolve_pooling("cls", default) == "cls"
    assert pooling.resolve_pooling("auto", tiny_checkpoint) == "cls"  # no pooling file
    folder = shutil.copytree(tiny_checkpoint, tmp_path / "st")
    (folder / "1_Pooling").mkdir()
    for modes, expected in (({"pooling_mode_cls_token": True}, "cls"),
                            ({"pooling_mode_mean_tokens": True}, "mean"),
                            ({"pooling_mode_max_tokens": True}, "cls")):
        (folder / "1_Pooling" / "config.json").write_text(json.dumps(modes))
        assert pooling.resolve_pooling("auto", str(folder)) == expected
    assert "names pooling_mode_max_tokens, which model.pooling does not offer" in caplog.text
    assert checkpoint.load_classifier(str(folder), 2).__class__.__name__ == (
        "TFBertForSequenceClassification")  # load_classifier resolves auto itself
    with pytest.raises(ValueError, match="model.pooling must be one of auto, cls, mean"):
        ModelHParams(pooling="max")


def test_the_mean_pooled_head_reads_the_masked_mean_of_the_tokens(tiny_checkpoint):
    classifier = checkpoint.load_classifier(tiny_checkpoint, 2, pooling="mean")
    cls_classifier = checkpoint.load_classifier(tiny_checkpoint, 2)
    assert pooling.pooling_of(classifier) == "mean" and pooling.pooling_of(cls_classifier) == "cls"
    assert [v.name.split("/", 1)[1] for v in classifier.weights] == [
        v.name.split("/", 1)[1] for v in cls_classifier.weights]  # warm starts, exports
    short = {"input_ids": tf.constant(IDS), "attention_mask": tf.ones([1, 4], tf.int32)}
    padded = {"input_ids": tf.constant([IDS[0] + [0, 0, 0]]),
              "attention_mask": tf.constant([[1] * 4 + [0] * 3])}
    logits = classifier(short).logits
    np.testing.assert_allclose(classifier(padded).logits, logits, atol=1e-5)
    tokens = classifier.bert(short)[0]
    by_hand = classifier.classifier(tf.reduce_mean(tokens, axis=1))
    np.testing.assert_allclose(logits, by_hand, atol=1e-5)
    assert not np.allclose(logits, cls_classifier(short).logits, atol=1e-3)


def test_the_mean_pooled_classifier_trains_without_the_pooler_and_exports_in_float32(
        tiny_checkpoint):
    classifier = build_in_precision(ModelHParams(
        pooling="mean", learning_rate=1e-2, precision="mixed_bfloat16"), tiny_checkpoint)
    assert pooling.pooling_of(classifier) == "mean"
    assert not any("/pooler/" in v.name for v in classifier.trainable_weights)
    before = {v.name: v.numpy() for v in classifier.weights}
    inputs = {"input_ids": tf.constant(IDS * 4), "attention_mask": tf.ones([4, 4], tf.int32)}
    classifier.fit(inputs, tf.constant([0, 1, 0, 1]), epochs=2, verbose=0)
    changed = {v.name for v in classifier.weights
               if not np.array_equal(v.numpy(), before[v.name])}
    assert any("/classifier/" in n for n in changed) and not any("/pooler/" in n for n in changed)
    exported = model.float32_copy(classifier)
    assert pooling.pooling_of(exported) == "mean" and exported.dtype_policy.name == "float32"
    full, mixed = exported(inputs).logits, classifier(inputs).logits
    assert float(tf.reduce_max(tf.abs(full - tf.cast(mixed, tf.float32)))) < 0.05


@pytest.mark.parametrize("base_info", [{}, {"pooling": "cls"}])
def test_a_warm_start_from_a_model_of_another_pooling_is_refused(tiny_checkpoint, tmp_path,
                                                                 base_info):
    extra = tmp_path / "base" / contract.ASSETS_EXTRA
    os.makedirs(extra)
    if base_info:  # without a pooling: a model exported before model.pooling, cls
        (extra / contract.MODEL_INFO_FILE).write_text(json.dumps(base_info))
    classifier = checkpoint.load_classifier(tiny_checkpoint, 2, pooling="mean")
    with pytest.raises(ValueError, match="reads BERT's pooler on .CLS., this run reads "
                                         "the mean of the token vectors .model.pooling."):
        warm_start.warm_start_from(classifier, str(tmp_path / "base"), ["0", "1"])
