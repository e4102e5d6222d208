"""Training set-up (models/model.py): hardware choice, learning-rate schedule, optimizer,
float32 export of a mixed-precision or partly frozen model."""
import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from models import checkpoint, model
from models.hparams import ModelHParams
from tests.support.paths import REPO
from tests.support.tiny_bert import build_in_precision


def test_cpu_gets_the_default_strategy_and_bfloat16_where_it_has_the_instructions(
        monkeypatch):
    from serving.precision import bfloat16_refusal_here
    for name in ("TPU_NAME", "COLAB_TPU_ADDR"):
        monkeypatch.delenv(name, raising=False)
    strategy = model.select_strategy()
    assert strategy.num_replicas_in_sync == 1
    assert model.resolve_precision("auto", strategy, cpu_bfloat16=False) == "float32"
    assert model.resolve_precision("auto", strategy, cpu_bfloat16=True) == "mixed_bfloat16"
    here = bfloat16_refusal_here() is None
    assert model.resolve_precision("auto", strategy) == (
        "mixed_bfloat16" if here else "float32")
    assert model.resolve_precision("float32", strategy, cpu_bfloat16=True) == "float32"
    assert model.resolve_precision("mixed_bfloat16", strategy) == "mixed_bfloat16"


def test_warmup_then_linear_decay():
    schedule = model.WarmupLinearDecay(1e-4, warmup_steps=10, total_steps=110)
    values = [float(schedule(step)) for step in (0, 5, 10, 60, 110, 200)]
    assert values == pytest.approx([0, 5e-5, 1e-4, 5e-5, 0, 0])
    # No warm-up (model.warmup_fraction 0, or fewer than 10 steps): step 0 had rate 0, so
    # a run of one step trained nothing; Hugging Face's schedule starts at the peak.
    no_warmup = model.WarmupLinearDecay(1e-4, warmup_steps=0, total_steps=4)
    assert [float(no_warmup(s)) for s in range(5)] == pytest.approx([1e-4, 7.5e-5, 5e-5,
                                                                     2.5e-5, 0])


def test_optimizer_skips_weight_decay_on_bias_and_layer_norm():
    optimizer = model.make_optimizer(ModelHParams(), total_steps=100)
    dense = tf.Variable(tf.ones([2, 2]), name="dense/kernel")
    bias = tf.Variable(tf.ones([2]), name="dense/bias")
    norm = tf.Variable(tf.ones([2]), name="LayerNorm/gamma")
    optimizer.build([dense, bias, norm])
    assert not optimizer._use_weight_decay(bias) and not optimizer._use_weight_decay(norm)
    assert optimizer._use_weight_decay(dense)


def test_mixed_precision_model_is_exported_in_float32(tiny_checkpoint):
    tf.keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        trained = checkpoint.load_classifier(tiny_checkpoint, num_labels=3)
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")
    assert trained.dtype_policy.name == "mixed_bfloat16"
    exported = model.float32_copy(trained)
    assert exported.dtype_policy.name == "float32"
    inputs = {"input_ids": tf.constant([[101, 2307, 3185, 102]]),
              "attention_mask": tf.ones([1, 4], tf.int32)}
    full, mixed = exported(inputs).logits, trained(inputs).logits
    assert full.dtype == tf.float32 and mixed.dtype == tf.bfloat16
    assert float(tf.reduce_max(tf.abs(full - tf.cast(mixed, tf.float32)))) < 0.05
    assert model.float32_copy(exported) is exported


def test_frozen_embeddings_stay_fixed_and_export_keeps_every_weight(tiny_checkpoint):
    classifier = build_in_precision(ModelHParams(
        freeze_embeddings=True, learning_rate=1e-2, precision="mixed_bfloat16"), tiny_checkpoint)
    before = {v.name: v.numpy() for v in classifier.weights}
    inputs = {"input_ids": tf.constant([[101, 2307, 3185, 102]] * 4),
              "attention_mask": tf.ones([4, 4], tf.int32)}
    classifier.fit(inputs, tf.constant([0, 1, 0, 1]), epochs=2, verbose=0)
    changed = {v.name for v in classifier.weights
               if not np.array_equal(v.numpy(), before[v.name])}
    assert changed and not any("/embeddings/" in name for name in changed)
    assert all("/embeddings/" not in v.name for v in classifier.trainable_weights)
    # Frozen weights come last in get_weights(); the float32 copy must match them by name.
    exported = model.float32_copy(classifier)
    trained = {v.name.split("/", 1)[1]: v.numpy() for v in classifier.weights}
    assert len(exported.weights) == len(trained)
    for variable in exported.weights:
        np.testing.assert_array_equal(variable.numpy(), trained[variable.name.split("/", 1)[1]])


def test_layer_depth_orders_embeddings_encoder_layers_and_head():
    prefix = "tf_bert_for_sequence_classification/"
    names = ["bert/embeddings/word_embeddings/weight:0",
             "bert/encoder/layer_._0/attention/self/query/kernel:0",
             "bert/encoder/layer_._11/output/LayerNorm/beta:0",
             "bert/pooler/dense/kernel:0", "classifier/bias:0"]
    assert [model.layer_depth(prefix + n, 12) for n in names] == [0, 1, 12, 13, 13]


def test_layer_lr_decay_scales_each_layers_update_and_weight_decay():
    """With 2 encoder layers and decay 0.5, layer 0 trains at 1/4 of the rate, layer 1 at
    1/2, the classifier at the full rate (no warm-up: step 0 has the full rate; Adam's
    first step with gradients of ones moves a weight by exactly the rate)."""
    hparams = ModelHParams(layer_lr_decay=0.5, learning_rate=1e-2, warmup_fraction=0.0,
                           weight_decay=0.1)
    optimizer = model.make_optimizer(hparams, total_steps=100, num_layers=2)
    assert isinstance(optimizer, model.LayerwiseAdamW)
    names = ["bert/encoder/layer_._0/output/dense/kernel",
             "bert/encoder/layer_._1/output/dense/kernel", "classifier/kernel"]
    trained = [tf.Variable(tf.zeros([3]), name=f"m/{name}") for name in names]  # gradient 1
    decayed = [tf.Variable(tf.ones([3]), name=f"d/{name}") for name in names]  # gradient 0
    optimizer.apply_gradients([(tf.ones([3]), v) for v in trained]
                              + [(tf.zeros([3]), v) for v in decayed])
    rate = 1e-2  # the schedule at step 0
    for variable, scale in zip(trained, (0.25, 0.5, 1.0)):
        np.testing.assert_allclose(variable.numpy(), -rate * scale, rtol=1e-3)
    for variable, scale in zip(decayed, (0.25, 0.5, 1.0)):  # weight decay: w * 0.1 * rate
        np.testing.assert_allclose(variable.numpy(), 1 - 0.1 * rate * scale, rtol=1e-5)
    assert float(optimizer.learning_rate) == pytest.approx(rate)  # logged unscaled
    assert type(model.make_optimizer(ModelHParams(), 100)) is tf.keras.optimizers.AdamW


def test_layer_lr_decay_scales_each_replicas_update_under_mirrored_strategy():
    """The same step as above, in a fresh process with two CPU replicas: the update runs
    through the strategy's per-variable update (as in multi-GPU and multi-worker training),
    inside a tf.function as Keras's fit runs it."""
    script = """
import json
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from models import model
from models.hparams import ModelHParams
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
names = ["bert/encoder/layer_._0/output/dense/kernel",
         "bert/encoder/layer_._1/output/dense/kernel", "classifier/kernel"]
with strategy.scope():
    optimizer = model.make_optimizer(ModelHParams(
        layer_lr_decay=0.5, learning_rate=1e-2, warmup_fraction=0.0, weight_decay=0.1),
        total_steps=100, num_layers=2)
    trained = [tf.Variable(tf.zeros([3]), name=f"m/{name}") for name in names]
    decayed = [tf.Variable(tf.ones([3]), name=f"d/{name}") for name in names]
@tf.function
def step():
    strategy.run(lambda: optimizer.apply_gradients(
        [(tf.ones([3]), v) for v in trained] + [(tf.zeros([3]), v) for v in decayed]))
step()
print(json.dumps({"replicas": strategy.num_replicas_in_sync,
                  "trained": [float(v.numpy()[0]) for v in trained],
                  "decayed": [float(v.numpy()[0]) for v in decayed]}))
"""
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           cwd=REPO, timeout=300)
    assert child.returncode == 0, child.stderr[-3000:]
    result = json.loads(child.stdout.strip().splitlines()[-1])
    rate = 1e-2  # the schedule at step 0
    assert result["replicas"] == 2
    np.testing.assert_allclose(result["trained"], [-rate * s for s in (0.25, 0.5, 1.0)],
                               rtol=1e-3)
    np.testing.assert_allclose(result["decayed"], [1 - 0.1 * rate * s for s in (0.25, 0.5, 1.0)],
                               rtol=1e-5)


def test_layer_lr_decay_out_of_range_names_the_setting():
    with pytest.raises(ValueError, match="model.layer_lr_decay must be above 0"):
        ModelHParams(layer_lr_decay=1.5)
    with pytest.raises(ValueError, match="needs the encoder's number of layers"):
        model.make_optimizer(ModelHParams(layer_lr_decay=0.8), total_steps=100)


def test_multi_label_training_accuracy_uses_model_threshold(tiny_checkpoint):
    """The Keras accuracy logged while training (val_accuracy, train_stats.json) cut the
    logits at 0, a probability of 0.5, whatever model.threshold said."""
    classifier = model.build_classifier(ModelHParams(threshold=0.8), 3, 10, tiny_checkpoint,
                                        multi_label=True)
    [accuracy] = [m for m in classifier.compiled_metrics._user_metrics]
    assert accuracy.get_config()["threshold"] == pytest.approx(np.log(0.8 / 0.2))
    # logits 1.0 (p 0.73) and 2.0 (p 0.88): below and above the 0.8 cut
    accuracy.update_state([[0.0, 1.0]], [[1.0, 2.0]])
    assert float(accuracy.result()) == 1.0
