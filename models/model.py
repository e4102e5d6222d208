"""The classifier, its optimizer, and the hardware it trains on."""
from __future__ import annotations

import contextlib
import glob
import json
import logging
import math
import os
import re
from typing import Callable, Optional

import tensorflow as tf

from models import checkpoint, distribution
from models.autograph import without_autograph
from models.hparams import ModelHParams


def select_strategy() -> tf.distribute.Strategy:
    """A multi-worker TF_CONFIG -> MultiWorkerMirroredStrategy (every worker's GPUs, or its
    CPU), TPU -> TPUStrategy, several GPUs -> MirroredStrategy, else the default (1
    device). Call it before any other TensorFlow op of the process."""
    cluster = distribution.cluster_config()
    if cluster:
        strategy = distribution.multi_worker_strategy()
        logging.info("Training as %s of %s (MultiWorkerMirroredStrategy, %d replicas)",
                     distribution.task_name(cluster), json.dumps(cluster["cluster"]),
                     strategy.num_replicas_in_sync)
        return strategy
    if _tpu_configured():
        return _tpu_strategy()
    gpus = tf.config.list_physical_devices("GPU")
    if len(gpus) > 1:
        logging.info("Training on %d GPUs (MirroredStrategy)", len(gpus))
        return tf.distribute.MirroredStrategy()
    logging.info("Training on %s", "1 GPU" if gpus else "CPU")
    return tf.distribute.get_strategy()


def _tpu_configured() -> bool:
    """A TPU VM (/dev/accel*) or a TPU named in the environment; never probes the network."""
    return bool(os.environ.get("TPU_NAME") or os.environ.get("COLAB_TPU_ADDR")
                or glob.glob("/dev/accel*"))


def _tpu_strategy() -> tf.distribute.Strategy:
    local = "local" if glob.glob("/dev/accel*") else None  # a TPU VM's own chips
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
        tpu=os.environ.get("TPU_NAME") or local)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    logging.info("Training on TPU %s", resolver.master())
    return tf.distribute.TPUStrategy(resolver)


def resolve_precision(precision: str, strategy: tf.distribute.Strategy,
                      cpu_bfloat16: Optional[bool] = None) -> str:
    """The Keras policy for ``model.precision``. Args: ``precision``, "auto" or a policy
    name (returned as is); ``strategy``, the one training runs under; ``cpu_bfloat16``,
    whether the CPU has bfloat16 instructions and oneDNN is on (None: ask this machine,
    serving.precision's check). Returns mixed_bfloat16 on TPU, mixed_float16 on GPU,
    mixed_bfloat16 on a CPU with bfloat16 instructions (as accurate as float32 within
    seed noise, about 1.2x as fast: bench/results/training_precision.json), else float32."""
    if precision != "auto":
        return precision
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return "mixed_bfloat16"
    if tf.config.list_physical_devices("GPU"):
        return "mixed_float16"
    if cpu_bfloat16 is None:
        from serving.precision import bfloat16_refusal_here
        cpu_bfloat16 = bfloat16_refusal_here() is None
    return "mixed_bfloat16" if cpu_bfloat16 else "float32"


def float32_copy(classifier):
    """The classifier with float32 compute, same weights: mixed precision is for training.

    Serving and evaluation then compute in full precision on any hardware.
    """
    if classifier.dtype_policy.name == "float32":
        return classifier
    previous = tf.keras.mixed_precision.global_policy()
    tf.keras.mixed_precision.set_global_policy("float32")
    try:
        copy = without_autograph(type(classifier)(classifier.config))
        copy(copy.dummy_inputs, training=False)
    finally:
        tf.keras.mixed_precision.set_global_policy(previous)
    trained = {weight_key(v.name): v for v in classifier.weights}
    for variable in copy.weights:  # by name: frozen weights change get_weights()' order
        variable.assign(tf.cast(trained[weight_key(variable.name)], variable.dtype))
    return copy


def weight_key(variable_name: str) -> str:
    """'tf_bert_for_sequence_classification_3/bert/...' -> 'bert/...'."""
    return variable_name.split("/", 1)[1]


class WarmupLinearDecay(tf.keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to ``peak``, then linear decay to 0 at ``total_steps``, as
    Hugging Face's ``get_linear_schedule_with_warmup``: with no warm-up steps, step 0
    has the full rate (not 0: a run of one step trained nothing)."""

    def __init__(self, peak: float, warmup_steps: int, total_steps: int):
        self.peak = peak
        self.warmup_steps = warmup_steps
        self.total_steps = max(total_steps, 1)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warmup = step / max(self.warmup_steps, 1)
        decay = (self.total_steps - step) / max(self.total_steps - self.warmup_steps, 1)
        return self.peak * tf.maximum(0.0, tf.where(step < self.warmup_steps, warmup, decay))

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps,
                "total_steps": self.total_steps}


def make_optimizer(hparams: ModelHParams, total_steps: int,
                   num_layers: int = 0) -> tf.keras.optimizers.Optimizer:
    """AdamW on the warm-up/linear-decay schedule; with ``model.layer_lr_decay`` below 1,
    each variable's rate scaled by its depth among ``num_layers`` encoder layers."""
    schedule = WarmupLinearDecay(hparams.learning_rate,
                                 int(hparams.warmup_fraction * total_steps), total_steps)
    settings = dict(learning_rate=schedule, weight_decay=hparams.weight_decay, epsilon=1e-6)
    if hparams.layer_lr_decay < 1:
        if num_layers < 1:
            raise ValueError("model.layer_lr_decay needs the encoder's number of layers")
        decay = hparams.layer_lr_decay
        optimizer = LayerwiseAdamW(
            lambda name: decay ** (num_layers + 1 - layer_depth(name, num_layers)),
            **settings)
    else:
        optimizer = tf.keras.optimizers.AdamW(**settings)
    optimizer.exclude_from_weight_decay(var_names=["bias", "LayerNorm", "layer_norm"])
    return optimizer


_ENCODER_LAYER = re.compile(r"/encoder/layer_\._(\d+)/")


def layer_depth(variable_name: str, num_layers: int) -> int:
    """0 for the embeddings, i + 1 for encoder layer i, ``num_layers`` + 1 for what sits
    above the encoder (pooler, classifier)."""
    if "/embeddings/" in variable_name:
        return 0
    layer = _ENCODER_LAYER.search(variable_name)
    return int(layer.group(1)) + 1 if layer else num_layers + 1


class LayerwiseAdamW(tf.keras.optimizers.AdamW):
    """AdamW whose learning rate (update and decoupled weight decay) is multiplied by
    ``rate_scale(variable name)`` for each variable: layer-wise learning-rate decay.

    Keras's AdamW reads ``learning_rate`` once per variable while it builds that
    variable's update; the scale applies only then, so schedules, logs and checkpoints
    see the unscaled rate."""

    def __init__(self, rate_scale: Callable[[str], float], **kwargs):
        self._rate_scale, self._scale = rate_scale, None
        super().__init__(**kwargs)

    @property
    def learning_rate(self):
        rate = tf.keras.optimizers.AdamW.learning_rate.fget(self)
        return rate if self._scale is None else rate * self._scale

    @learning_rate.setter
    def learning_rate(self, value):
        tf.keras.optimizers.AdamW.learning_rate.fset(self, value)

    @contextlib.contextmanager
    def _scaled(self, variable):
        scale = self._rate_scale(variable.name)
        self._scale = None if scale == 1 else float(scale)
        try:
            yield
        finally:
            self._scale = None

    def update_step(self, gradient, variable):
        with self._scaled(variable):
            super().update_step(gradient, variable)

    def _apply_weight_decay(self, variables):
        for variable in variables:
            with self._scaled(variable):
                super()._apply_weight_decay([variable])


def build_classifier(hparams: ModelHParams, num_labels: int, total_steps: int,
                     checkpoint_dir: str, multi_label: bool = False):
    """Loads the checkpoint, its head reading ``model.pooling`` (models/pooling.py), and
    compiles it for fine-tuning (call inside a strategy scope): softmax over the classes,
    or (``multi_label``) one sigmoid per label."""
    model = without_autograph(checkpoint.load_classifier(checkpoint_dir, num_labels,
                                                         hparams.dropout, hparams.pooling))
    model.bert.embeddings.trainable = not hparams.freeze_embeddings
    if multi_label:
        loss = tf.keras.losses.BinaryCrossentropy(from_logits=True)
        # on logits: model.threshold's probability as a logit (0.5 -> 0)
        metric = tf.keras.metrics.BinaryAccuracy(name="accuracy", threshold=math.log(
            hparams.threshold / (1 - hparams.threshold)))
    else:
        loss = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        metric = tf.keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    optimizer = make_optimizer(hparams, total_steps, model.config.num_hidden_layers)
    model.compile(optimizer=optimizer, loss=loss, metrics=[metric],
                  jit_compile=hparams.jit_compile)
    # Each replica's batch logs already hold the all-replica mean; Keras' "auto" sums
    # them (the loss in progress lines would read 2x with two workers).
    model.distribute_reduction_method = "first"
    return model
