"""The Trainer's ``run_fn``: fine-tune BERT on Transform's output and export it."""
from __future__ import annotations

import json
import logging
import math
import os
import time

import tensorflow as tf
import tensorflow_transform as tft

from models import (autograph, checkpoint, dataset, distribution, export, model as model_lib,
                    training_progress, warm_start)
from models.hparams import POOLING_WORDS, ModelHParams, Task
from models.pooling import pooling_of
from serving import contract

TOP_PROBABILITY_ROWS = 512  # eval rows the undertraining hint's probabilities come from


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


def check_label_ids(profile: dict, multi_label: bool) -> None:
    """Refuses training rows whose label id is -1 (a label Transform's vocabulary lacks:
    one with a line break, which TFT drops): such ids crashed training on a CPU and gave
    a NaN loss on a GPU, which the NaN guard blamed on the learning rate."""
    labelled = sum(profile["label_counts"])
    if not multi_label and labelled != profile["rows"]:
        raise ValueError(f"{profile['rows'] - labelled} of {profile['rows']} training rows "
                         f"have a label Transform's label vocabulary lacks (id -1)")


def training_steps(hparams: ModelHParams, num_examples: int,
                   global_batch: int) -> tuple[int, int, int]:
    """(steps per epoch, epochs, total steps) for ``hparams.train_steps`` or
    ``hparams.epochs``, in steps of ``global_batch`` examples (``model.batch_size`` x the
    replicas). The epochs share the total evenly (1.01 passes of 100 batches: 2 epochs of
    51, not of 100), and ``StopAtStep`` ends the last one at the total exactly."""
    steps_per_epoch = max(1, math.ceil(num_examples / global_batch))
    total = hparams.train_steps or max(1, math.ceil(hparams.epochs * steps_per_epoch))
    epochs = math.ceil(total / min(steps_per_epoch, total))
    return math.ceil(total / epochs), epochs, total


class StopAtStep(tf.keras.callbacks.Callback):
    """Ends training once the optimizer has taken ``total`` steps (its own count: a
    replica restored from a backup counts on from there)."""

    def __init__(self, total: int):
        super().__init__()
        self.total = total

    def on_train_batch_end(self, batch, logs=None):
        # get_value reads a replicated (Mirrored) counter too, where int() cannot
        if int(tf.keras.backend.get_value(self.model.optimizer.iterations)) >= self.total:
            self.model.stop_training = True


def check_devices(accelerator: str, strategy: tf.distribute.Strategy) -> None:
    """Logs the devices TensorFlow found; fails when the Trainer was given an
    ``accelerator`` (``kubeflow.trainer_accelerator``, e.g. NVIDIA_TESLA_T4 or TPU_V3) that
    TensorFlow cannot see, instead of training on the CPU."""
    gpus = tf.config.list_physical_devices("GPU")
    devices = [device.name for device in tf.config.list_logical_devices()]
    devices += [f"{gpu.name}={tf.config.experimental.get_device_details(gpu)}" for gpu in gpus]
    logging.info("Devices: %s", ", ".join(devices))
    if not accelerator:
        return
    if "TPU" in accelerator.upper():
        if isinstance(strategy, tf.distribute.TPUStrategy):
            return
        missing = "no TPU is attached (TPU_NAME unset, no /dev/accel*)"
    else:
        if gpus:
            return
        missing = ("TensorFlow sees no GPU (built with CUDA: "
                   f"{tf.test.is_built_with_cuda()}; the image needs TensorFlow's CUDA "
                   "libraries, `make image GPU=1`, and the node an NVIDIA driver)")
    raise RuntimeError(f"the Trainer's accelerator (kubeflow.trainer_accelerator or "
                       f"vertex.trainer_accelerator) is {accelerator!r} but {missing}; "
                       f"devices found: {', '.join(devices)}")


def eval_top_probability(classifier, validation: tf.data.Dataset,
                         rows: int = TOP_PROBABILITY_ROWS):
    """The mean probability of the predicted class on the first ``rows`` eval rows (about
    1/classes: the model still guesses); None without eval rows, or when the model cannot
    be run here (logged)."""
    tops, seen = [], 0
    try:
        for inputs, _ in validation:
            logits = tf.cast(classifier(inputs, training=False).logits, tf.float32)
            tops.append(tf.reduce_max(tf.nn.softmax(logits), axis=-1)[:rows - seen])
            seen += int(tops[-1].shape[0])
            if seen >= rows:
                break
    except (tf.errors.OpError, ValueError, TypeError) as error:
        logging.warning("eval probabilities for the undertraining hint not computed: %s",
                        error)
        return None
    return float(tf.reduce_mean(tf.concat(tops, 0))) if tops else None


def balanced_class_weights(label_counts: list) -> dict:
    """{class id: rows / (classes x rows of the class)} (scikit-learn's 'balanced')."""
    total, classes = sum(label_counts), len(label_counts)
    return {i: total / (classes * count) for i, count in enumerate(label_counts) if count}


def run_fn(fn_args) -> None:
    """TFX Trainer entry point (``Trainer(run_fn='models.trainer.run_fn')``): fine-tunes
    the checkpoint (or warm-starts from the latest blessed model) on Transform's output
    and exports the serving model, on one process or as one replica of several.

    Args:
      fn_args: TFX's ``FnArgs``: ``train_files``/``eval_files`` (Transform's examples),
        ``transform_output``, ``serving_model_dir``, ``model_run_dir``, ``base_model``
        (warm start) and ``custom_config`` (``model``: every ``ModelHParams`` setting,
        ``task``, ``privacy``, ``max_unknown_share``, ``distribution``).

    Returns:
      None. Writes the SavedModel (signatures: ``serving.contract``) to
      ``serving_model_dir`` (the chief only) and ``train_stats.json`` and TensorBoard logs
      to ``model_run_dir``.
    """
    # First: MultiWorkerMirroredStrategy must exist before any other TensorFlow op.
    strategy = model_lib.select_strategy()
    autograph.skip_library_conversion()
    cluster = distribution.cluster_config()
    chief = distribution.is_chief(cluster)
    hparams = ModelHParams.from_dict(fn_args.custom_config["model"])
    task = Task.from_custom_config(fn_args.custom_config)
    tf.keras.utils.set_random_seed(hparams.seed)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    label_names = export.read_label_names(
        tf_transform_output.vocabulary_file_by_name(contract.LABEL_VOCAB))
    if len(label_names) < 2:
        raise ValueError(f"need at least 2 classes to train, found {label_names}")
    checkpoint_dir = checkpoint.resolve_checkpoint_dir(hparams.checkpoint)
    vocab = checkpoint.read_vocab(checkpoint_dir)
    pad_id, sep_id = vocab.index("[PAD]"), vocab.index("[SEP]")
    tokenizer = checkpoint.tokenizer_sha256(checkpoint_dir)  # recorded; checked at warm start

    replica_settings = fn_args.custom_config.get("distribution") or {}
    check_devices(fn_args.custom_config.get("accelerator") or
                  replica_settings.get("accelerator", ""), strategy)
    precision = model_lib.resolve_precision(hparams.precision, strategy)
    tf.keras.mixed_precision.set_global_policy(precision)

    feature_spec = tf_transform_output.transformed_feature_spec()
    replicas = strategy.num_replicas_in_sync
    global_batch = hparams.batch_size * replicas  # model.batch_size is per replica

    def make(patterns, batch_size, shuffle):
        data = dataset.make_dataset(patterns, feature_spec, batch_size * replicas, pad_id,
                                    hparams.max_seq_length, hparams.dynamic_padding,
                                    shuffle=shuffle, seed=hparams.seed, repeat=shuffle,
                                    sep_id=sep_id if task.text_pair else None,
                                    multi_label_classes=len(label_names) * task.multi_label)
        return distribution.shard_data(data, len(dataset.list_files(patterns)), replicas) \
            if cluster else data

    profile = dataset.profile_split(fn_args.train_files, feature_spec, len(label_names),
                                    vocab.index("[UNK]"),
                                    [vocab.index(t) for t in ("[CLS]", "[SEP]")])
    num_train = profile["rows"]
    check_label_ids(profile, task.multi_label)
    unknown_share = profile["unknown_pieces"] / max(profile["word_pieces"], 1)
    limit = fn_args.custom_config.get("max_unknown_share")
    if limit is not None and unknown_share > limit:
        logging.warning("%.1f%% of the training word pieces are [UNK] (limit %.1f%%): the "
                        "vocabulary of %s does not fit this text", 100 * unknown_share,
                        100 * limit, hparams.checkpoint)
    class_weight = None
    if hparams.class_weight == "balanced":
        if task.multi_label:
            raise ValueError("model.class_weight balanced is for single-label tasks")
        class_weight = balanced_class_weights(profile["label_counts"])
        logging.info("Class weights: %s", class_weight)
    steps_per_epoch, epochs, total_steps = training_steps(hparams, num_train, global_batch)
    logging.info("Fine-tuning %s on %d examples: %d epochs x %d steps of %d examples "
                 "(%d replica(s) x %d), precision %s", checkpoint_dir, num_train, epochs,
                 steps_per_epoch, global_batch, replicas, hparams.batch_size, precision)
    with strategy.scope():
        classifier = model_lib.build_classifier(hparams, len(label_names),
                                                total_steps, checkpoint_dir,
                                                multi_label=task.multi_label)
        started_from = _start_weights(classifier, hparams, fn_args, label_names, tokenizer,
                                      task.multi_label)
    pooling = pooling_of(classifier)
    logging.info("Training starts %s; the classifier reads %s", started_from,
                 POOLING_WORDS[pooling])
    throughput, loss_trend = Throughput(global_batch), training_progress.LossTrend()
    callbacks = [training_progress.StopOnNonFiniteLoss(hparams.learning_rate),
                 StopAtStep(total_steps), throughput, loss_trend]
    if cluster:  # a restarted replica resumes from the last backup, not from step 0
        every = replica_settings.get("backup_every_steps", 0)
        callbacks.append(tf.keras.callbacks.BackupAndRestore(  # kept after fit: a
            os.path.join(fn_args.model_run_dir, distribution.BACKUP_DIR),  # replica lost
            save_freq=every or "epoch", delete_checkpoint=False))  # in export resumes there
    if chief:
        callbacks.append(tf.keras.callbacks.TensorBoard(
            log_dir=os.path.join(fn_args.model_run_dir, "tensorboard"), update_freq=50))
    if chief and hparams.progress_every_steps:  # its lines replace Keras's line per epoch
        callbacks.append(training_progress.TrainingProgress(
            total_steps, global_batch, hparams.progress_every_steps))
    started = time.time()
    validation = make(fn_args.eval_files, hparams.eval_batch_size, shuffle=False)
    history = classifier.fit(
        make(fn_args.train_files, hparams.batch_size, shuffle=True),  # repeated
        steps_per_epoch=steps_per_epoch, epochs=epochs, validation_data=validation,
        callbacks=callbacks, class_weight=class_weight,
        verbose=0 if hparams.progress_every_steps or not chief else 2)
    training_progress.check_finite_weights(classifier, hparams.learning_rate)
    stats = {"started_from": started_from, "train_examples": num_train,
             "steps": total_steps,
             "fit_seconds": time.time() - started, "precision": precision,
             "examples_per_second": throughput.examples_per_second,
             "label_counts": dict(zip(label_names, profile["label_counts"])),
             "class_weight": class_weight and {label_names[i]: w
                                               for i, w in class_weight.items()},
             "unknown_share": unknown_share, "unknown_share_limit": limit,
             "checkpoint": hparams.checkpoint, "hparams": hparams.to_dict(),
             "pooling": pooling,
             "final": {k: float(v[-1]) for k, v in history.history.items()},
             # what local/small_data.py reads for its undertraining hint
             "first_loss": loss_trend.first, "last_loss": loss_trend.last,
             "classes": len(label_names),
             "eval_top_probability": None if task.multi_label or not chief else
             eval_top_probability(classifier, validation),
             "replicas": replicas, "global_batch": global_batch,
             "resumed_from_step": loss_trend.start_step,
             "privacy": fn_args.custom_config.get("privacy")}
    logging.info("Training stats: %s", stats)
    if chief:
        stats_path = os.path.join(fn_args.model_run_dir, contract.TRAIN_STATS_FILE)
        with tf.io.gfile.GFile(stats_path, "w") as f:
            json.dump(stats, f, indent=2)

    # Every replica saves (saving may read variables collectively); only the chief's
    # copy is kept, and the others wait for it before they end.
    export_dir = distribution.write_dir(fn_args.serving_model_dir, cluster)
    export.export_serving_model(
        model_lib.float32_copy(classifier), tf_transform_output, label_names, pad_id,
        export_dir,
        model_info={"pipeline": fn_args.custom_config.get("pipeline"),
                    "checkpoint": hparams.checkpoint,
                    "tokenizer_sha256": tokenizer,
                    "max_seq_length": hparams.max_seq_length,
                    "truncation": hparams.truncation, "pooling": pooling,
                    "text_pair": task.text_pair, "multi_label": task.multi_label,
                    **({"threshold": hparams.threshold} if task.multi_label else {}),
                    "precision": precision, "started_from": started_from,
                    "train_examples": num_train,
                    "train_steps": total_steps},
        sep_id=sep_id, task=task, threshold=hparams.threshold,
        privacy=fn_args.custom_config.get("privacy"))
    if cluster:
        distribution.remove_temporary(export_dir, cluster)
        distribution.barrier(strategy)
        if chief:  # training is over: the backup (and the workers' parts of it) can go
            distribution.remove_backup(fn_args.model_run_dir)


def _start_weights(classifier, hparams: ModelHParams, fn_args, label_names,
                   tokenizer: str, multi_label: bool) -> str:
    """Applies warm start when asked and possible; says where training starts from."""
    base_model = getattr(fn_args, "base_model", None)
    if not hparams.warm_start:
        return f"from the checkpoint {hparams.checkpoint}"
    if not base_model:
        return f"from the checkpoint {hparams.checkpoint} (no blessed model to warm start from)"
    try:
        return warm_start.warm_start_from(classifier, base_model, label_names,
                                          tokenizer_sha256=tokenizer, multi_label=multi_label,
                                          pipeline=fn_args.custom_config.get("pipeline"))
    except ValueError as error:  # e.g. the checkpoint changed since the blessed model
        logging.warning("warm start skipped: %s", error)
        return f"from the checkpoint {hparams.checkpoint} (warm start skipped: {error})"
