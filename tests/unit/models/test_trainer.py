"""The Trainer's arithmetic (models/trainer.py): training steps and balanced class
weights."""
import numpy as np
import pytest
import tensorflow as tf

from models import model
from models.hparams import ModelHParams
from models.trainer import training_steps


@pytest.mark.parametrize("epochs,train_steps,examples,replicas,expected", [
    (2.0, 0, 1000, 1, (32, 2, 64)),    # 32 batches of 32 per epoch
    (0.5, 0, 1000, 1, (16, 1, 16)),    # half an epoch
    (2.0, 10, 1000, 1, (10, 1, 10)),   # train_steps wins
    (1.0, 0, 5, 1, (1, 1, 1)),
    (2.0, 0, 1000, 2, (16, 2, 32)),    # 2 replicas x 32: 16 global batches of 64 per epoch
    (2.0, 10, 1000, 4, (5, 2, 10)),    # train_steps counts global steps of 128
    (1.01, 0, 3200, 1, (51, 2, 101)),  # two epochs of 51, not of 100 (200 steps)
    (2.0, 10, 96, 1, (3, 4, 10)),      # epochs of 3: StopAtStep ends the 4th at 10
])
def test_training_steps(epochs, train_steps, examples, replicas, expected):
    hparams = ModelHParams(epochs=epochs, train_steps=train_steps, batch_size=32)
    assert training_steps(hparams, examples, hparams.batch_size * replicas) == expected


@pytest.mark.parametrize("mirrored", [False, True])
def test_a_fit_stops_at_the_total_step_exactly(mirrored):
    """train_steps 10 in epochs of 3 steps: 12 steps were taken. Under a distribution
    strategy the step counter is a MirroredVariable (int() refused it: every replica of a
    multi-worker Trainer failed)."""
    from models.trainer import StopAtStep
    tf.keras.utils.set_random_seed(0)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"]) if mirrored else \
        tf.distribute.get_strategy()
    with strategy.scope():
        model_ = tf.keras.Sequential([tf.keras.layers.Dense(2)])
        model_.compile(optimizer=tf.keras.optimizers.SGD(0.1),
                       loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    data = tf.data.Dataset.from_tensor_slices((np.ones((96, 4), "float32"),
                                               np.zeros(96, "int64"))).batch(32).repeat()
    model_.fit(data, steps_per_epoch=3, epochs=4, callbacks=[StopAtStep(10)], verbose=0)
    assert int(tf.keras.backend.get_value(model_.optimizer.iterations)) == 10


def test_balanced_class_weights():
    from models.trainer import balanced_class_weights
    assert balanced_class_weights([90, 10]) == pytest.approx({0: 100 / 180, 1: 5.0})
    assert balanced_class_weights([5, 0, 5]) == {0: 10 / 15, 2: 10 / 15}  # absent class


def test_balanced_class_weights_make_the_rare_class_count(tiny_checkpoint):
    """Uninformative inputs, 1 row in 20 of class 1: unweighted training learns to say 0;
    with balanced weights the rare class's score rises to about one half."""
    from models.trainer import balanced_class_weights
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 5000, size=(480, 12))
    labels = np.array([int(i % 20 == 0) for i in range(480)])
    inputs = {"input_ids": ids, "attention_mask": np.ones_like(ids),
              "token_type_ids": np.zeros_like(ids)}
    batches = tf.data.Dataset.from_tensor_slices((inputs, labels)).batch(16)
    rare_score = {}
    for weights in (None, balanced_class_weights(np.bincount(labels).tolist())):
        tf.keras.utils.set_random_seed(0)
        classifier = model.build_classifier(ModelHParams(learning_rate=1e-3), 2, 60,
                                            tiny_checkpoint)
        classifier.fit(batches.repeat(), steps_per_epoch=30, epochs=2, class_weight=weights,
                       verbose=0)
        logits = classifier.predict(batches, verbose=0).logits
        rare_score[weights is not None] = float(tf.reduce_mean(tf.nn.softmax(logits)[:, 1]))
    assert rare_score[False] < 0.25 and rare_score[True] > 0.4


@pytest.mark.parametrize("setting,value,message", [
    ("batch_size", 0, "model.batch_size must be at least 1, got 0"),  # ZeroDivisionError
    ("batch_size", -4, "model.batch_size must be at least 1"),
    ("eval_batch_size", 0, "model.eval_batch_size must be at least 1"),
    ("epochs", 0.0, "model.epochs must be above 0"),  # trained one step
    ("train_steps", -5, "model.train_steps must be 0 .use epochs. or more"),
    ("learning_rate", -1e-2, "model.learning_rate must be above 0"),  # gradient ascent
    ("learning_rate", 0.0, "model.learning_rate must be above 0"),
    ("warmup_fraction", 5.0, "model.warmup_fraction must be from 0 to below 1"),
    ("weight_decay", -0.1, "model.weight_decay must be 0 or more"),
    ("dropout", 1.5, "model.dropout must be from 0 to below 1"),
    ("max_seq_length", 2, "model.max_seq_length must be at least 3"),
    ("precision", "bf16", "model.precision must be one of auto, float32, mixed_float16, "
                          "mixed_bfloat16, not 'bf16'"),
])
def test_hyperparameters_out_of_range_are_refused_before_any_step(setting, value, message):
    """They were accepted, and failed after Transform or trained wrongly."""
    with pytest.raises(ValueError, match=message):
        ModelHParams(**{setting: value})


def test_rows_without_a_label_id_are_refused_before_training():
    from models.trainer import check_label_ids
    check_label_ids({"rows": 10, "label_counts": [6, 4]}, multi_label=False)
    with pytest.raises(ValueError, match="2 of 10 training rows have a label Transform's "
                                         "label vocabulary lacks"):
        check_label_ids({"rows": 10, "label_counts": [6, 2]}, multi_label=False)
    check_label_ids({"rows": 10, "label_counts": [6, 6]}, multi_label=True)  # label sets
