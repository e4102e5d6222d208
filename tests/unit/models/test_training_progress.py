"""Progress lines without a pipeline run (models/training_progress.py): the Trainer's
callback and loss trend in a real Keras fit. The component lines of a real run:
tests/e2e/test_progress.py."""
import io
import re

import numpy as np
import pytest
import tensorflow as tf

from models import training_progress
from models.training_progress import LossTrend


class Ticks:
    """A clock that advances one second per reading (deterministic rates)."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_duration():
    assert [training_progress.duration(s) for s in (0, 44.6, 245, 3720)] == \
        ["0s", "45s", "4m 05s", "1h 02m"]


def test_training_progress_every_n_steps_with_rate_and_time_left():
    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential([tf.keras.layers.Dense(2, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = np.random.rand(40, 3).astype("float32"), np.random.randint(0, 2, 40)
    out = io.StringIO()
    callback = training_progress.TrainingProgress(total_steps=10, batch_size=8, every=3,
                                                  stream=out, clock=Ticks())
    model.fit(x, y, batch_size=8, epochs=2, steps_per_epoch=5, validation_data=(x, y),
              callbacks=[callback], verbose=0)
    lines = out.getvalue().splitlines()
    steps = [line for line in lines if " step " in line]
    assert [re.search(r"step (\d+)/10", line).group(1) for line in steps] == \
        ["3", "6", "9", "10"]
    # clock: 1 at the start, 2 after the first step (tracing: not timed), 3 at step 3:
    # 2 steps in 1 second of 8 examples each; 7 steps left at 2 steps/s
    assert re.fullmatch(r"  Trainer step 3/10 \(30%\), 2s: 16\.0 examples/s, "
                        r"loss \d\.\d{4}, about 4s left", steps[0]), steps[0]
    assert steps[-1].endswith("about 0s left") and "(100%)" in steps[-1]
    epochs = [line for line in lines if " epoch " in line]
    assert len(epochs) == 2 and epochs[0].startswith("  Trainer epoch 1/2 done, ")
    for name in ("accuracy", "loss", "val_accuracy", "val_loss"):
        assert re.search(rf"\b{name} \d\.\d{{4}}", epochs[1]), epochs[1]


def test_negative_progress_interval_is_refused():
    from models.hparams import ModelHParams

    with pytest.raises(ValueError, match="model.progress_every_steps must be 0 .off. or more"):
        ModelHParams(progress_every_steps=-1)


def test_loss_trend_records_where_a_real_fit_started_and_ended():
    tf.keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(512, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    model = tf.keras.Sequential([tf.keras.layers.Dense(2)])
    model.compile(optimizer=tf.keras.optimizers.SGD(0.5),
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    trend = LossTrend()
    history = model.fit(x, y, batch_size=32, epochs=3, callbacks=[trend], verbose=0)
    assert trend.first > 2 * trend.last  # it learned
    # The end is the last quarter of the last epoch: below that epoch's mean (still falling).
    assert trend.last < history.history["loss"][-1]
    # ... and close to the loss of the trained model on the whole data.
    assert abs(trend.last - model.evaluate(x, y, verbose=0)) < 0.05


def test_a_diverging_fit_stops_with_the_setting_to_change():
    """A learning rate far too high: the loss turns NaN. Keras trains on (the NaN model
    predicts the most common class and could pass the accuracy bar); the callback
    stops the fit at that batch, and the weights check catches NaN weights however they
    came."""
    tf.keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(512, 4)).astype("float32") * 1e3
    y = (x[:, 0] > 0).astype("int64")
    model = tf.keras.Sequential([tf.keras.layers.Dense(64, activation="relu"),
                                 tf.keras.layers.Dense(2)])
    model.compile(optimizer=tf.keras.optimizers.SGD(1e6),
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    stop = training_progress.StopOnNonFiniteLoss(1e6)
    with pytest.raises(training_progress.NonFiniteLossError,
                       match=r"the training loss is (nan|inf) at batch \d+: training "
                             r"diverged: lower model.learning_rate \(now 1e\+06\)"):
        model.fit(x, y, batch_size=32, epochs=3, callbacks=[stop], verbose=0)
    with pytest.raises(training_progress.NonFiniteLossError, match="holds NaN or infinity"):
        training_progress.check_finite_weights(model, 1e6)
    healthy = tf.keras.Sequential([tf.keras.layers.Dense(2)])
    healthy.build((None, 4))
    training_progress.check_finite_weights(healthy, 1e-3)  # no error
