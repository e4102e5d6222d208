"""Training progress as plain lines on stderr, for people watching a long Trainer.

Every ``every`` steps: step/total, the examples/s since the previous line and the time
left at that rate (the first step, which traces the graph, and validation left out);
after each epoch: its loss and metrics (training and validation). ``LossTrend`` keeps
where the training loss started and ended, for the run summary's undertraining hint.
Steps count from where training starts: a replica restored from a backup says so and
goes on from the backup's step. ``StopOnNonFiniteLoss`` and ``check_finite_weights``
stop a run that diverged.
"""
from __future__ import annotations

import math
import sys
import time
from typing import Callable, Optional, TextIO

import tensorflow as tf


def duration(seconds: float) -> str:
    """45s, 4m 05s, 1h 02m."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def _figures(logs: Optional[dict]) -> str:
    return ", ".join(f"{name} {float(value):.4f}" for name, value in sorted((logs or {}).items()))


class StartStep(tf.keras.callbacks.Callback):
    """Knows the step training starts at (``start_step``): 0, or the step of the backup a
    replica was restored from (Keras then numbers its batches from there)."""

    def __init__(self):
        super().__init__()
        self.start_step: Optional[int] = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if self.start_step is None:
            self.start_step = int(self._epoch * (self.params or {}).get("steps", 0) + batch)
            self.on_start(self.start_step)

    def on_start(self, step: int) -> None:
        """Called once, before the first batch trained here."""


class TrainingProgress(StartStep):
    """Prints ``Trainer step 50/400 (12%), 1m 05s: 31.2 examples/s, loss 0.6931, about
    7m 40s left`` every ``every`` steps (and at the last one) and a line per epoch."""

    def __init__(self, total_steps: int, batch_size: int, every: int,
                 stream: Optional[TextIO] = None,
                 clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.total_steps, self.batch_size, self.every = total_steps, batch_size, every
        self.stream, self.clock = stream, clock
        self.step, self.epochs = 0, 1
        self._started = self._last_time = self._test_started = 0.0
        self._last_step = 0

    def _print(self, line: str) -> None:
        print(f"  Trainer {line}", file=self.stream or sys.stderr, flush=True)

    def on_train_begin(self, logs=None):
        self.epochs = self.params.get("epochs", 1) if self.params else 1
        self._started = self._last_time = self.clock()

    def on_start(self, step: int) -> None:
        self.step = self._last_step = step
        if step:
            self._print(f"resumes at step {step}/{self.total_steps} (from the backup)")

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.step == self.start_step + 1:  # the first step traces the graph: rates
            self._last_time, self._last_step = self.clock(), self.step  # start after it
        if self.step % self.every and self.step != self.total_steps:
            return
        now = self.clock()
        figures = [f"loss {float(logs['loss']):.4f}"] if logs and "loss" in logs else []
        if self.step > self._last_step:
            rate = (self.step - self._last_step) / max(now - self._last_time, 1e-9)
            figures = [f"{rate * self.batch_size:.1f} examples/s", *figures,
                       f"about {duration((self.total_steps - self.step) / rate)} left"]
        self._last_time, self._last_step = now, self.step
        self._print(f"step {self.step}/{self.total_steps} "
                    f"({100 * self.step // self.total_steps}%), "
                    f"{duration(now - self._started)}: {', '.join(figures)}")

    def on_test_begin(self, logs=None):
        self._test_started = self.clock()

    def on_test_end(self, logs=None):  # validation time is not training time
        self._last_time += self.clock() - self._test_started

    def on_epoch_end(self, epoch, logs=None):
        self._print(f"epoch {epoch + 1}/{self.epochs} done, "
                    f"{duration(self.clock() - self._started)}: {_figures(logs)}")


class NonFiniteLossError(RuntimeError):
    """Training diverged: the loss or a weight is NaN or infinite."""


_DIVERGED_HINT = ("training diverged: lower model.learning_rate (now {rate:g}), or train "
                  "with model.precision float32; the run stops here, so no model with NaN "
                  "weights reaches evaluation (it predicts the most common class, and "
                  "could pass the accuracy bar)")


class StopOnNonFiniteLoss(tf.keras.callbacks.Callback):
    """Raises ``NonFiniteLossError`` at the first batch whose loss is NaN or infinite
    (Keras' TerminateOnNaN only stops, and the NaN model would be exported)."""

    def __init__(self, learning_rate: float):
        super().__init__()
        self.learning_rate = learning_rate

    def on_train_batch_end(self, batch, logs=None):
        if logs and "loss" in logs and not math.isfinite(float(logs["loss"])):
            raise NonFiniteLossError(f"the training loss is {float(logs['loss'])} at batch "
                                     f"{batch + 1}: " + _DIVERGED_HINT.format(
                                         rate=self.learning_rate))


def check_finite_weights(model: tf.keras.Model, learning_rate: float) -> None:
    """``NonFiniteLossError`` naming the first weight holding NaN or infinity."""
    for weight in model.weights:
        if weight.dtype.is_floating and not bool(tf.reduce_all(tf.math.is_finite(weight))):
            raise NonFiniteLossError(f"weight {weight.name} holds NaN or infinity after "
                                     f"training: " + _DIVERGED_HINT.format(rate=learning_rate))


class LossTrend(StartStep):
    """The training loss at the start (the first batch) and at the end (the mean of the
    last quarter of the last epoch's batches).

    Keras' batch logs hold the loss averaged over the epoch so far; the mean of batches
    a+1..n is (n * mean_n - a * mean_a) / (n - a) (batches weigh by their rows; with
    length buckets the last batches may be smaller, so this is close, not exact)."""

    def __init__(self):
        super().__init__()
        self.first: Optional[float] = None
        self._means: list = []  # the running mean after each batch of the current epoch

    def on_epoch_begin(self, epoch, logs=None):
        super().on_epoch_begin(epoch, logs)
        self._means = []

    def on_train_batch_end(self, batch, logs=None):
        if logs and "loss" in logs:
            loss = float(logs["loss"])
            if self.first is None:
                self.first = loss
            self._means.append(loss)

    @property
    def last(self) -> Optional[float]:
        n = len(self._means)
        if not n:
            return None
        a = n - max(1, n // 4)
        return self._means[-1] if a == 0 else \
            (n * self._means[-1] - a * self._means[a - 1]) / (n - a)
