"""Progress lines without a pipeline run: the Trainer's callback in a real Keras fit, and
the component lines of a real LocalDagRunner run of two small components."""
import io
import logging
import re

import numpy as np
import pytest
import tensorflow as tf
from absl import logging as absl_logging
from tfx import v1 as tfx
from tfx.dsl.component.experimental.decorators import component

from local import run_progress
from models import training_progress


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


@component
def Produce(examples: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.Examples]):
    absl_logging.info("chatter the quiet run hides")
    verbosity = absl_logging.get_verbosity()  # as TensorFlow does while it saves a model
    absl_logging.set_verbosity(absl_logging.FATAL)
    absl_logging.set_verbosity(verbosity)


@component
def Fail(examples: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Examples]):
    raise RuntimeError("broken on purpose")


@pytest.mark.e2e  # a real LocalDagRunner run (two tiny components)
def test_component_lines_of_a_real_local_run_and_the_rest_stays_quiet(tmp_path):
    produce = Produce()
    fail = Fail(examples=produce.outputs["examples"])
    pipeline = tfx.dsl.Pipeline(
        pipeline_name="progress", pipeline_root=str(tmp_path / "root"),
        components=[produce, fail],
        metadata_connection_config=tfx.orchestration.metadata
        .sqlite_metadata_connection_config(str(tmp_path / "metadata.sqlite")))
    out, passed = io.StringIO(), []
    absl_logger = logging.getLogger("absl")
    keep = logging.Handler()
    keep.emit = passed.append  # what the filter lets through to absl's handlers
    absl_logger.addHandler(keep)
    verbosity = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.ERROR)  # as `bert-pipeline run` (no --verbose)
    try:
        with pytest.raises(RuntimeError, match="broken on purpose"):
            with run_progress.component_progress(stream=out):
                tfx.orchestration.LocalDagRunner().run(pipeline)
        assert absl_logging.get_verbosity() == absl_logging.ERROR  # restored
    finally:
        absl_logger.removeHandler(keep)
        absl_logging.set_verbosity(verbosity)
    lines = out.getvalue().splitlines()
    assert [re.sub(r"[\d.]+s", "T", line) for line in lines] == [
        "[   T] Produce started", "[   T] Produce complete in T",
        "[   T] Fail started", "[   T] Fail failed in T"], lines
    assert not [r for r in passed if r.levelno < logging.ERROR]


def test_negative_progress_interval_is_refused():
    from models.hparams import ModelHParams

    with pytest.raises(ValueError, match="model.progress_every_steps must be 0 .off. or more"):
        ModelHParams(progress_every_steps=-1)
