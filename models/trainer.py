"""The Trainer's ``run_fn``: fine-tune BERT on Transform's output and export it."""
from __future__ import annotations

import json
import logging
import math
import os
import time

import tensorflow as tf
import tensorflow_transform as tft

from models import checkpoint, dataset, export, features, model as model_lib, warm_start
from models.hparams import ModelHParams

STATS_FILE = "train_stats.json"


class Throughput(tf.keras.callbacks.Callback):
    """Training examples per second, timed after ``skip`` warm-up batches (tracing)."""

    def __init__(self, batch_size: int, skip: int = 5):
        super().__init__()
        self.batch_size, self.skip = batch_size, skip
        self.batches, self.seconds, self._start = 0, 0.0, None

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1
        if self.batches > self.skip:
            self.seconds += time.perf_counter() - self._start

    @property
    def examples_per_second(self) -> float:
        timed = self.batches - self.skip
        return timed * self.batch_size / self.seconds if self.seconds else 0.0


def training_steps(hparams: ModelHParams, num_examples: int) -> tuple[int, int]:
    """(steps per epoch, epochs) covering ``hparams.train_steps`` or ``hparams.epochs``."""
    steps_per_epoch = max(1, math.ceil(num_examples / hparams.batch_size))
    total = hparams.train_steps or max(1, math.ceil(hparams.epochs * steps_per_epoch))
    steps_per_epoch = min(steps_per_epoch, total)
    return steps_per_epoch, math.ceil(total / steps_per_epoch)


def run_fn(fn_args) -> None:
    """TFX Trainer entry point (``Trainer(run_fn='models.trainer.run_fn')``)."""
    hparams = ModelHParams.from_dict(fn_args.custom_config["model"])
    tf.keras.utils.set_random_seed(hparams.seed)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    label_names = export.read_label_names(
        tf_transform_output.vocabulary_file_by_name(features.LABEL_VOCAB))
    if len(label_names) < 2:
        raise ValueError(f"need at least 2 classes to train, found {label_names}")
    checkpoint_dir = checkpoint.resolve_checkpoint_dir(hparams.checkpoint)
    vocab = checkpoint.read_vocab(checkpoint_dir)
    pad_id = vocab.index("[PAD]")

    strategy = model_lib.select_strategy()
    precision = model_lib.resolve_precision(hparams.precision, strategy)
    tf.keras.mixed_precision.set_global_policy(precision)

    feature_spec = tf_transform_output.transformed_feature_spec()
    replicas = strategy.num_replicas_in_sync

    def make(patterns, batch_size, shuffle):
        return dataset.make_dataset(patterns, feature_spec, batch_size * replicas, pad_id,
                                    hparams.max_seq_length, hparams.dynamic_padding,
                                    shuffle=shuffle, seed=hparams.seed)

    num_train = dataset.count_records(fn_args.train_files)
    steps_per_epoch, epochs = training_steps(hparams, num_train)
    logging.info("Fine-tuning %s on %d examples: %d epochs x %d steps, precision %s, "
                 "%d replica(s)", checkpoint_dir, num_train, epochs, steps_per_epoch,
                 precision, replicas)
    with strategy.scope():
        classifier = model_lib.build_classifier(hparams, len(label_names),
                                                steps_per_epoch * epochs, checkpoint_dir)
        started_from = _start_weights(classifier, hparams, fn_args, label_names)
    logging.info("Training starts %s", started_from)
    throughput = Throughput(hparams.batch_size * replicas)
    started = time.time()
    history = classifier.fit(
        make(fn_args.train_files, hparams.batch_size, shuffle=True).repeat(),
        steps_per_epoch=steps_per_epoch, epochs=epochs,
        validation_data=make(fn_args.eval_files, hparams.eval_batch_size, shuffle=False),
        callbacks=[tf.keras.callbacks.TensorBoard(
            log_dir=os.path.join(fn_args.model_run_dir, "tensorboard"), update_freq=50),
            throughput],
        verbose=2)
    stats = {"started_from": started_from, "train_examples": num_train,
             "steps": steps_per_epoch * epochs,
             "fit_seconds": time.time() - started, "precision": precision,
             "examples_per_second": throughput.examples_per_second,
             "final": {k: float(v[-1]) for k, v in history.history.items()}}
    logging.info("Training stats: %s", stats)
    with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, STATS_FILE), "w") as f:
        json.dump(stats, f, indent=2)

    export.export_serving_model(
        model_lib.float32_copy(classifier), tf_transform_output, label_names, pad_id,
        fn_args.serving_model_dir,
        model_info={"checkpoint": hparams.checkpoint,
                    "max_seq_length": hparams.max_seq_length,
                    "precision": precision, "started_from": started_from,
                    "train_examples": num_train,
                    "train_steps": steps_per_epoch * epochs})


def _start_weights(classifier, hparams: ModelHParams, fn_args, label_names) -> str:
    """Applies warm start when asked and possible; says where training starts from."""
    base_model = getattr(fn_args, "base_model", None)
    if not hparams.warm_start:
        return f"from the checkpoint {hparams.checkpoint}"
    if not base_model:
        return f"from the checkpoint {hparams.checkpoint} (no blessed model to warm start from)"
    try:
        return warm_start.warm_start_from(classifier, base_model, label_names)
    except ValueError as error:  # e.g. the checkpoint changed since the blessed model
        logging.warning("warm start skipped: %s", error)
        return f"from the checkpoint {hparams.checkpoint} (warm start skipped: {error})"
