"""Warm start: fine-tune from the latest blessed model instead of the base checkpoint.

Encoder weights are copied by name; the classifier's rows are matched by label
name, so a label vocabulary that gained, lost or reordered classes still starts
from what the previous model learnt (new labels keep their fresh initialisation).
"""
from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from models import export, model_info
from models.model import weight_key
from models.hparams import POOLING_WORDS
from models.pooling import pooling_of
from serving import contract

CLASSIFIER_PREFIX = "classifier/"


def read_base_labels(base_model_dir: str) -> list[str]:
    return export.read_label_names(os.path.join(base_model_dir, contract.ASSETS_EXTRA,
                                                contract.LABELS_FILE))


def _by_label(saved: np.ndarray, fresh: np.ndarray, base_labels: Sequence[str],
              label_names: Sequence[str]) -> np.ndarray:
    """Classifier kernel [hidden, classes] or bias [classes], columns moved by label."""
    value = fresh.copy()
    for column, label in enumerate(label_names):
        if label in base_labels:
            value[..., column] = saved[..., base_labels.index(label)]
    return value


def saved_weights(base) -> list:
    """The model weights of a loaded SavedModel: Keras's ``variables`` list where the model
    was saved with its Keras traces (before this project's export left them out), else
    every named variable reachable from the loaded object."""
    if hasattr(base, "variables"):
        return list(base.variables)
    found = {id(obj): obj for obj in tf.train.TrackableView(base).descendants()
             if isinstance(obj, tf.Variable) and "/" in obj.name}
    return list(found.values())


def _refuse_another_model(classifier, base_model_dir: str, info: dict,
                          tokenizer_sha256: Optional[str], multi_label: Optional[bool],
                          pipeline: Optional[str]) -> None:
    """A base model that reads other vectors (pooling), other word pieces (vocabulary),
    answers another task (single- or multi-label) or is another pipeline's does not fit
    this run, whatever its weights' shapes say."""
    base = info.get("pooling", "cls")  # models exported before model.pooling: BERT's pooler
    if base != pooling_of(classifier):
        raise ValueError(f"the base model {base_model_dir} reads {POOLING_WORDS[base]}, "
                         f"this run reads {POOLING_WORDS[pooling_of(classifier)]} (model.pooling)")
    if tokenizer_sha256 and info.get("tokenizer_sha256") not in (None, tokenizer_sha256):
        raise ValueError(f"the base model {base_model_dir} was trained on another vocabulary "
                         f"or casing (checkpoint {info.get('checkpoint')}) than this run's "
                         f"checkpoint: its embeddings would read other word pieces "
                         f"(model.checkpoint)")
    reason = model_info.other_run(base_model_dir, info, pipeline, multi_label)
    if reason:
        raise ValueError(reason)


def warm_start_from(classifier, base_model_dir: str, label_names: Sequence[str],
                    tokenizer_sha256: Optional[str] = None,
                    multi_label: Optional[bool] = None, pipeline: Optional[str] = None) -> str:
    """Loads ``base_model_dir``'s weights into ``classifier``; returns what was done.

    Raises ValueError (naming the weight or the setting), with ``classifier`` unchanged,
    when the base model does not fit: another architecture, pooling, vocabulary or casing
    (``tokenizer_sha256``: this run's checkpoint's; models exported before it was recorded
    are not checked), task (``multi_label``) or pipeline (``pipeline``: on Kubeflow the
    latest blessed model is queried by type alone).
    """
    import tensorflow_text  # noqa: F401  (ops of the saved tokenizer)

    _refuse_another_model(classifier, base_model_dir, model_info.read(base_model_dir),
                          tokenizer_sha256, multi_label, pipeline)
    saved = {weight_key(v.name): v for v in saved_weights(tf.saved_model.load(base_model_dir))}
    base_labels = read_base_labels(base_model_dir)
    values = []  # every weight checked before any is assigned: no half-warm model
    for variable in classifier.weights:
        key = weight_key(variable.name)
        if key not in saved:
            raise ValueError(f"the base model {base_model_dir} has no weight '{key}'")
        value = saved[key].numpy()
        if key.startswith(CLASSIFIER_PREFIX):
            value = _by_label(value, variable.numpy(), base_labels, label_names)
        if tuple(value.shape) != tuple(variable.shape):
            raise ValueError(f"weight '{key}' is {tuple(value.shape)} in the base model "
                             f"{base_model_dir}, {tuple(variable.shape)} here")
        values.append(value)
    for variable, value in zip(classifier.weights, values):
        variable.assign(tf.cast(value, variable.dtype))
    kept = [label for label in label_names if label in base_labels]
    new = [label for label in label_names if label not in base_labels]
    return (f"warm start from {base_model_dir} ({len(kept)} of {len(label_names)} labels "
            f"carried over" + (f"; new: {', '.join(new)}" if new else "") + ")")
