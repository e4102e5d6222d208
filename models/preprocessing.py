"""Transform's ``preprocessing_fn``: redaction, tokenization and label vocabulary, in-graph."""
from __future__ import annotations

from typing import Any, Mapping

import tensorflow as tf
import tensorflow_transform as tft

from models import checkpoint, features, redaction
from models.hparams import ModelHParams, Task
from models.tokenizer import BertTextTokenizer


def dense_column(value) -> tf.Tensor:
    """A raw string feature (dense [batch, 1] or sparse) as a [batch] tensor."""
    if isinstance(value, tf.sparse.SparseTensor):
        value = tf.sparse.to_dense(value, default_value="")
    return tf.reshape(value, [-1])


def length_bucket_names() -> list[str]:
    """Slice names for ``features.LENGTH_BUCKET``: '<=16', '17-32', ..., '>256'."""
    bounds = features.LENGTH_BUCKET_BOUNDARIES
    names = [f"<={bounds[0]}"]
    names += [f"{lo + 1}-{hi}" for lo, hi in zip(bounds, bounds[1:])]
    return names + [f">{bounds[-1]}"]


def length_bucket(lengths: tf.Tensor) -> tf.Tensor:
    """Word-piece counts -> slice name (core ops only)."""
    bounds = tf.constant(features.LENGTH_BUCKET_BOUNDARIES, dtype=lengths.dtype)
    index = tf.searchsorted(bounds, lengths, side="left")
    return tf.gather(tf.constant(length_bucket_names()), index)


def make_tokenizer(hparams: ModelHParams) -> BertTextTokenizer:
    checkpoint_dir = checkpoint.resolve_checkpoint_dir(hparams.checkpoint)
    return BertTextTokenizer(checkpoint.read_vocab(checkpoint_dir),
                             checkpoint.is_lower_case(checkpoint_dir),
                             hparams.max_seq_length, truncation=hparams.truncation,
                             head_tokens=hparams.head_tokens)


def preprocessing_fn(inputs: Mapping[str, Any], custom_config: Mapping[str, Any]):
    """Raw ``text`` (and ``text_pair``) and ``label`` -> ``input_ids`` (variable length),
    ``label_id`` (one id, or a variable-length list of ids for multi-label tasks), length
    slice. Texts are redacted (``custom_config["privacy"]``) before they are tokenized,
    here and so in every serving signature, which runs this graph."""
    hparams = ModelHParams.from_dict(custom_config["model"])
    task = Task.from_custom_config(custom_config)
    tokenizer = make_tokenizer(hparams)
    redactor = redaction.from_settings(custom_config.get("privacy"))

    def text(name: str) -> tf.Tensor:
        return redactor(dense_column(inputs[name]))[0]

    pairs = None
    if task.text_pair:
        if features.TEXT_PAIR not in inputs:
            raise ValueError(f"data.text_pair_column is set but the schema has no "
                             f"'{features.TEXT_PAIR}' feature: infer one (data.schema_path "
                             f"'') or regenerate it with `bert-pipeline schema`")
        pairs = text(features.TEXT_PAIR)
    ids = tokenizer(text(features.TEXT), pairs)
    if task.multi_label:  # every label of a row: label ids stay a variable-length list
        labels = inputs[features.LABEL]
        if not isinstance(labels, tf.sparse.SparseTensor):
            labels = tf.sparse.from_dense(labels)
        label = tf.sparse.map_values(tf.strings.strip, labels)
    else:
        label = tf.strings.strip(dense_column(inputs[features.LABEL]))
    return {
        features.INPUT_IDS: ids.to_sparse(),
        features.LENGTH_BUCKET: length_bucket(ids.row_lengths()),
        features.LABEL_ID: tft.compute_and_apply_vocabulary(
            label, vocab_filename=features.LABEL_VOCAB, num_oov_buckets=0,
            default_value=-1),
    }
