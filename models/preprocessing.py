"""Transform's ``preprocessing_fn``: redaction, tokenization and label vocabulary, in-graph."""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional

import tensorflow as tf
import tensorflow_transform as tft

from models import checkpoint, features, redaction
from models.hparams import ModelHParams, Task
from models.tokenizer import BertTextTokenizer
from serving import contract

# The model settings preprocessing_fn reads (its tokenizer's): the only ones Transform gets.
TOKENIZER_SETTINGS = ("checkpoint", "max_seq_length", "truncation", "head_tokens")


def transform_config(hparams: ModelHParams, task: Task, privacy: Optional[dict]) -> dict:
    """Transform's ``custom_config``: what ``preprocessing_fn`` reads, and nothing else.

    TFX keys a component's cache on its execution properties, this dictionary included,
    so with ``enable_cache`` a run that changes only training settings (``model.epochs``,
    the learning rate...) reuses Transform's outputs.

    Args:
      hparams: the model settings; only ``TOKENIZER_SETTINGS`` are kept.
      task: text pairs or not, one label or several per text, the source columns.
      privacy: the redaction settings (``models.redaction.from_settings``).

    Returns:
      {"model": the tokenizer's settings, "task": ``task`` as a dict, "privacy": privacy}.
    """
    return {"model": {name: getattr(hparams, name) for name in TOKENIZER_SETTINGS},
            "task": dataclasses.asdict(task), "privacy": privacy}


def dense_column(value) -> tf.Tensor:
    """A raw string feature (dense [batch, 1] or sparse) as a [batch] tensor."""
    if isinstance(value, tf.sparse.SparseTensor):
        value = tf.sparse.to_dense(value, default_value="")
    return tf.reshape(value, [-1])


def length_bucket_names() -> list[str]:
    """Slice names for ``contract.LENGTH_BUCKET``: '<=16', '17-32', ..., '>256'."""
    bounds = features.LENGTH_BUCKET_BOUNDARIES
    names = [f"<={bounds[0]}"]
    names += [f"{lo + 1}-{hi}" for lo, hi in zip(bounds, bounds[1:])]
    return names + [f">{bounds[-1]}"]


def length_bucket(lengths: tf.Tensor) -> tf.Tensor:
    """Word-piece counts -> slice name (core ops only)."""
    bounds = tf.constant(features.LENGTH_BUCKET_BOUNDARIES, dtype=lengths.dtype)
    index = tf.searchsorted(bounds, lengths, side="left")
    return tf.gather(tf.constant(length_bucket_names()), index)


def make_tokenizer(settings: Mapping[str, Any]) -> BertTextTokenizer:
    """The tokenizer of ``settings``: the model settings named in ``TOKENIZER_SETTINGS``."""
    checkpoint_dir = checkpoint.resolve_checkpoint_dir(settings["checkpoint"])
    checkpoint.check_max_seq_length(checkpoint_dir, settings["max_seq_length"])
    return BertTextTokenizer(checkpoint.read_vocab(checkpoint_dir),
                             checkpoint.is_lower_case(checkpoint_dir),
                             settings["max_seq_length"], truncation=settings["truncation"],
                             head_tokens=settings["head_tokens"])


def preprocessing_fn(inputs: Mapping[str, Any], custom_config: Mapping[str, Any]):
    """Raw ``text`` (and ``text_pair``) and ``label`` -> ``input_ids`` (variable length),
    ``label_id`` (one id, or a variable-length list of ids for multi-label tasks), length
    slice. Texts are redacted (``custom_config["privacy"]``) before they are tokenized,
    here and so in every serving signature, which runs this graph.

    Args:
      inputs: the raw features (``serving.contract``'s ``text``, ``text_pair``, ``label``).
      custom_config: ``transform_config``'s dictionary (Transform's custom_config).

    Returns:
      {``input_ids``, ``text_length_bucket``, ``label_id``} (``serving.contract``'s names).
    """
    task = Task.from_custom_config(custom_config)
    tokenizer = make_tokenizer(custom_config["model"])
    redactor = redaction.from_settings(custom_config.get("privacy"))

    def text(name: str) -> tf.Tensor:
        return redactor(dense_column(inputs[name]))[0]

    pairs = None
    if task.text_pair:
        if contract.TEXT_PAIR_FEATURE not in inputs:
            raise ValueError(f"data.text_pair_column is set but the schema has no "
                             f"'{contract.TEXT_PAIR_FEATURE}' feature: infer one "
                             f"(data.schema_path '') or regenerate it with "
                             f"`bert-pipeline schema`")
        pairs = text(contract.TEXT_PAIR_FEATURE)
    ids = tokenizer(text(contract.TEXT_FEATURE), pairs)
    if task.multi_label:  # every label of a row: label ids stay a variable-length list
        labels = inputs[contract.LABEL_FEATURE]
        if not isinstance(labels, tf.sparse.SparseTensor):
            labels = tf.sparse.from_dense(labels)
        label = tf.sparse.map_values(tf.strings.strip, labels)
    else:
        label = tf.strings.strip(dense_column(inputs[contract.LABEL_FEATURE]))
    return {
        contract.INPUT_IDS: ids.to_sparse(),
        contract.LENGTH_BUCKET: length_bucket(ids.row_lengths()),
        contract.LABEL_ID: tft.compute_and_apply_vocabulary(
            label, vocab_filename=contract.LABEL_VOCAB, num_oov_buckets=0,
            default_value=-1),
    }
