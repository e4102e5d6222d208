"""tf.data input pipelines over Transform's output, with dynamic padding.

Tested end to end: tests/e2e/test_pipeline.py; batching: tests/unit/models/test_dataset.py.
"""
from __future__ import annotations

from typing import Iterable, Mapping, Optional

import tensorflow as tf

from models.tokenizer import segment_ids
from serving import contract

# Batches are padded to their longest text; texts are grouped by length first.
_BUCKET_BOUNDARIES = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384)


def list_files(patterns: Iterable[str]) -> list[str]:
    files = sorted(f for p in patterns for f in tf.io.gfile.glob(p))
    if not files:
        raise ValueError(f"no files match {list(patterns)}")
    return files


def _record_dataset(files: list[str]) -> tf.data.Dataset:
    compression = "GZIP" if files[0].endswith(".gz") else ""
    return tf.data.TFRecordDataset(files, compression_type=compression,
                                   num_parallel_reads=tf.data.AUTOTUNE)


def _dense(value: tf.Tensor) -> tf.Tensor:
    return tf.sparse.to_dense(value) if isinstance(value, tf.sparse.SparseTensor) else value


def multi_hot(label_ids: tf.Tensor, num_labels: int) -> tf.Tensor:
    """Label ids [n] (n >= 0) -> float32 [num_labels] with 1 for each label present."""
    return tf.minimum(tf.reduce_sum(tf.one_hot(label_ids, num_labels), axis=0), 1.0)


def profile_split(patterns: Iterable[str], feature_spec: Mapping, num_labels: int,
                  unknown_id: int, special_ids: Iterable[int]) -> dict:
    """One pass over a transformed split: rows, rows per label id, word pieces (special
    tokens aside) and how many of them are [UNK]."""
    spec = {k: feature_spec[k] for k in (contract.INPUT_IDS, contract.LABEL_ID)}
    specials = tf.constant(list(special_ids), tf.int64)

    def values(tensor):
        return tensor.values if isinstance(tensor, tf.sparse.SparseTensor) else tf.reshape(
            tensor, [-1])

    @tf.autograph.experimental.do_not_convert  # models/autograph.py says why
    def summarize(records):
        parsed = tf.io.parse_example(records, spec)
        ids, labels = values(parsed[contract.INPUT_IDS]), values(parsed[contract.LABEL_ID])
        special = tf.reduce_any(tf.equal(ids[:, tf.newaxis], specials), axis=1)
        return (tf.size(records, out_type=tf.int64),
                tf.cast(tf.reduce_sum(tf.one_hot(labels, num_labels), axis=0), tf.int64),
                tf.reduce_sum(tf.cast(~special, tf.int64)),
                tf.reduce_sum(tf.cast(tf.equal(ids, unknown_id), tf.int64)))

    start = (tf.constant(0, tf.int64), tf.zeros([num_labels], tf.int64),
             tf.constant(0, tf.int64), tf.constant(0, tf.int64))
    rows, counts, pieces, unknown = _record_dataset(list_files(patterns)).batch(1024).map(
        summarize).reduce(start, lambda total, part: tuple(a + b for a, b in zip(total, part)))
    return {"rows": int(rows), "label_counts": counts.numpy().tolist(),
            "word_pieces": int(pieces), "unknown_pieces": int(unknown)}


def make_dataset(patterns: Iterable[str], feature_spec: Mapping[str, tf.io.FixedLenFeature],
                 batch_size: int, pad_id: int, max_seq_length: int,
                 dynamic_padding: bool = True, shuffle: bool = False,
                 seed: int = 0, sep_id: Optional[int] = None,
                 multi_label_classes: int = 0, repeat: bool = False) -> tf.data.Dataset:
    """Batches of ({input_ids, attention_mask, token_type_ids}, label_id): token types
    from the first [SEP] (``sep_id``; sentence pairs), labels multi-hot over
    ``multi_label_classes`` labels when that is set. ``repeat``: without end, repeated
    before the length buckets batch, so every batch is full (repeated after, each pass
    ended with a part-batch per bucket: 2 epochs of 40 rows trained 37 rows)."""
    spec = {k: feature_spec[k] for k in (contract.INPUT_IDS, contract.LABEL_ID)}
    ds = _record_dataset(list_files(patterns))
    if shuffle:
        ds = ds.shuffle(20_000, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()

    @tf.autograph.experimental.do_not_convert  # models/autograph.py says why
    def parse(record):
        parsed = tf.io.parse_single_example(record, spec)
        label = _dense(parsed[contract.LABEL_ID])
        if multi_label_classes:
            label = multi_hot(tf.reshape(label, [-1]), multi_label_classes)
        else:
            label = tf.reshape(label, [])
        return _dense(parsed[contract.INPUT_IDS]), label

    no_label = tf.constant(0.0) if multi_label_classes else tf.constant(0, tf.int64)
    label_shape = [multi_label_classes] if multi_label_classes else []
    ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    if dynamic_padding:
        boundaries = [b for b in _BUCKET_BOUNDARIES if b < max_seq_length] + [max_seq_length]
        ds = ds.bucket_by_sequence_length(
            element_length_func=lambda ids, _: tf.shape(ids)[0],
            bucket_boundaries=[b + 1 for b in boundaries],
            bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
            padding_values=(tf.constant(pad_id, tf.int64), no_label),
            drop_remainder=False)
    else:
        ds = ds.padded_batch(batch_size, padded_shapes=([max_seq_length], label_shape),
                             padding_values=(tf.constant(pad_id, tf.int64), no_label))

    @tf.autograph.experimental.do_not_convert  # models/autograph.py says why
    def to_model_inputs(ids, label):
        mask = tf.cast(tf.not_equal(ids, pad_id), tf.int32)
        types = tf.zeros_like(ids) if sep_id is None else tf.cast(
            segment_ids(ids, sep_id, mask), ids.dtype)
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}, label

    return ds.map(to_model_inputs, num_parallel_calls=tf.data.AUTOTUNE).prefetch(
        tf.data.AUTOTUNE)
