"""Warm start: fine-tune from the latest blessed model instead of the base checkpoint.

Encoder weights are copied by name; the classifier's rows are matched by label
name, so a label vocabulary that gained, lost or reordered classes still starts
from what the previous model learnt (new labels keep their fresh initialisation).
"""
from __future__ import annotations

import json
import os
from typing import Sequence

import numpy as np
import tensorflow as tf

from models import export
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


def _refuse_other_pooling(classifier, base_model_dir: str) -> None:
    """A classifier trained on another pooling's vectors does not fit this one's."""
    info_path = os.path.join(base_model_dir, contract.ASSETS_EXTRA, contract.MODEL_INFO_FILE)
    base = "cls"  # models exported before model.pooling read BERT's pooler
    if tf.io.gfile.exists(info_path):
        with tf.io.gfile.GFile(info_path) as f:
            base = json.load(f).get("pooling", "cls")
    if base != pooling_of(classifier):
        raise ValueError(f"the base model {base_model_dir} reads {POOLING_WORDS[base]}, "
                         f"this run reads {POOLING_WORDS[pooling_of(classifier)]} (model.pooling)")


def warm_start_from(classifier, base_model_dir: str, label_names: Sequence[str]) -> str:
    """Loads ``base_model_dir``'s weights into ``classifier``; returns what was done.

    Raises ValueError (naming the weight) when the base model's architecture differs,
    e.g. after a change of checkpoint.
    """
    import tensorflow_text  # noqa: F401  (ops of the saved tokenizer)

    _refuse_other_pooling(classifier, base_model_dir)
    saved = {weight_key(v.name): v for v in saved_weights(tf.saved_model.load(base_model_dir))}
    base_labels = read_base_labels(base_model_dir)
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
        variable.assign(tf.cast(value, variable.dtype))
    kept = [label for label in label_names if label in base_labels]
    new = [label for label in label_names if label not in base_labels]
    return (f"warm start from {base_model_dir} ({len(kept)} of {len(label_names)} labels "
            f"carried over" + (f"; new: {', '.join(new)}" if new else "") + ")")
