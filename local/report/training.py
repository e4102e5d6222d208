"""The training section: the Trainer's TensorBoard event files and ``train_stats.json``.

Tested end to end: tests/e2e/test_report.py.

Keras' TensorBoard callback writes ``batch_loss``/``batch_accuracy`` every
``update_freq`` steps and ``epoch_*`` scalars per epoch (train/ and validation/
folders); the validation folder also holds ``evaluation_*_vs_iterations`` by step.
"""
from __future__ import annotations

import dataclasses
import json
import os

from tfx.dsl.io import fileio

from serving import contract


@dataclasses.dataclass
class Training:
    stats: dict  # train_stats.json: examples/s, precision, steps, started from, final
    curves: dict  # (folder, tag) -> [(step, value)], e.g. ("train", "batch_loss")
    logdir: str

    def series(self, metric: str) -> dict:
        """{label: [(step, value)]} of one metric (loss, accuracy), by training step:
        batch values, and per-epoch train/validation values at their epoch's last step."""
        steps = self.stats.get("steps") or 0
        epochs = len(self.curves.get(("train", f"epoch_{metric}"), ()))
        per_epoch = steps / epochs if epochs else 0
        found = {}
        batch = self.curves.get(("train", f"batch_{metric}"))
        if batch:
            found[f"train {metric} (every {_spacing(batch)} steps)"] = batch
        for folder in ("train", "validation"):
            epoch = self.curves.get((folder, f"epoch_{metric}"))
            if epoch:
                found[f"{folder} {metric} per epoch"] = [(per_epoch * (e + 1), v)
                                                         for e, v in epoch]
        return found


def _spacing(points: list) -> int:
    return int(points[1][0] - points[0][0]) if len(points) > 1 else int(points[0][0])


def read_events(logdir: str) -> dict:
    """Scalars of every event file under ``logdir``: (folder, tag) -> [(step, value)]."""
    import tensorflow as tf
    from tensorflow.core.util import event_pb2

    curves: dict = {}
    for folder in ("train", "validation"):
        files = sorted(fileio.glob(os.path.join(logdir, folder, "events.out.tfevents.*")))
        for record in tf.data.TFRecordDataset(files) if files else ():
            event = event_pb2.Event.FromString(record.numpy())
            for value in event.summary.value:
                if value.HasField("tensor") and not value.tensor.tensor_shape.dim:
                    number = float(tf.make_ndarray(value.tensor))
                elif value.HasField("simple_value"):
                    number = value.simple_value
                else:
                    continue
                curves.setdefault((folder, value.tag), []).append((event.step, number))
    return {key: sorted(points) for key, points in curves.items()}


def read(model_run_uri: str) -> Training:
    logdir = os.path.join(model_run_uri, "tensorboard")
    stats_path = os.path.join(model_run_uri, contract.TRAIN_STATS_FILE)
    stats = {}
    if fileio.exists(stats_path):
        with fileio.open(stats_path) as f:
            stats = json.load(f)
    return Training(stats, read_events(logdir) if fileio.exists(logdir) else {}, logdir)
