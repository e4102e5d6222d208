"""tf.data input pipelines over Transform's output, with dynamic padding."""
from __future__ import annotations

from typing import Iterable, Mapping

import tensorflow as tf

from models import features

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


def count_records(patterns: Iterable[str]) -> int:
    return int(_record_dataset(list_files(patterns)).reduce(
        tf.constant(0, tf.int64), lambda n, _: n + 1))


def make_dataset(patterns: Iterable[str], feature_spec: Mapping[str, tf.io.FixedLenFeature],
                 batch_size: int, pad_id: int, max_seq_length: int,
                 dynamic_padding: bool = True, shuffle: bool = False,
                 seed: int = 0) -> tf.data.Dataset:
    """Batches of ({input_ids, attention_mask, token_type_ids}, label_id)."""
    spec = {k: feature_spec[k] for k in (features.INPUT_IDS, features.LABEL_ID)}
    ds = _record_dataset(list_files(patterns))
    if shuffle:
        ds = ds.shuffle(20_000, seed=seed, reshuffle_each_iteration=True)

    def parse(record):
        parsed = tf.io.parse_single_example(record, spec)
        ids = parsed[features.INPUT_IDS]
        if isinstance(ids, tf.sparse.SparseTensor):
            ids = tf.sparse.to_dense(ids)
        return ids, tf.reshape(parsed[features.LABEL_ID], [])

    ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    if dynamic_padding:
        boundaries = [b for b in _BUCKET_BOUNDARIES if b < max_seq_length] + [max_seq_length]
        ds = ds.bucket_by_sequence_length(
            element_length_func=lambda ids, _: tf.shape(ids)[0],
            bucket_boundaries=[b + 1 for b in boundaries],
            bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
            padding_values=(tf.constant(pad_id, tf.int64), tf.constant(0, tf.int64)),
            drop_remainder=False)
    else:
        ds = ds.padded_batch(batch_size, padded_shapes=([max_seq_length], []),
                             padding_values=(tf.constant(pad_id, tf.int64),
                                             tf.constant(0, tf.int64)))

    def to_model_inputs(ids, label):
        mask = tf.cast(tf.not_equal(ids, pad_id), tf.int32)
        return {"input_ids": ids, "attention_mask": mask,
                "token_type_ids": tf.zeros_like(ids)}, label

    return ds.map(to_model_inputs, num_parallel_calls=tf.data.AUTOTUNE).prefetch(
        tf.data.AUTOTUNE)
