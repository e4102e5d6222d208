"""The data section: rows and classes per split, word-piece lengths, TFDV statistics,
anomalies and drift, read from the run's artifacts.

Tested end to end: tests/e2e/test_report.py.

TFDV's own view (Facets) loads its scripts from a CDN, so the statistics are read from
the ``DatasetFeatureStatisticsList`` protos and shown as tables and plots instead.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Callable, Optional

import numpy as np
from tfx.dsl.io import fileio

from models import redaction
from serving import contract

MAX_LENGTH_ROWS = 20_000  # word-piece lengths are read from this many rows per split


@dataclasses.dataclass
class Split:
    name: str
    rows: int
    classes: dict  # label -> rows (label values, for multi-label data)
    lengths: Optional[np.ndarray] = None  # word pieces per row ([CLS]/[SEP] included)
    lengths_of: int = 0  # rows the lengths were read from

    @property
    def has_lengths(self) -> bool:
        return self.lengths is not None and len(self.lengths) > 0


@dataclasses.dataclass
class FeatureStats:
    """One feature in one split, as TFDV computed it."""
    kind: str
    present: int
    missing: int
    figures: dict  # name -> number
    top: list  # (value, count), strings only


def split_folders(uri: str) -> dict:
    """{split name: folder} of an artifact with ``Split-<name>`` folders."""
    found = {os.path.basename(p.rstrip("/"))[len("Split-"):]: p
             for p in sorted(fileio.glob(os.path.join(uri, "Split-*")))}
    return dict(sorted(found.items(), key=lambda kv: kv[0] != "train"))


def read_statistics(uri: str) -> dict:
    """{split: DatasetFeatureStatistics} of a StatisticsGen artifact."""
    from tensorflow_metadata.proto.v0 import statistics_pb2

    stats = {}
    for split, folder in split_folders(uri).items():
        path = os.path.join(folder, contract.STATISTICS_FILE)
        if fileio.exists(path):
            with fileio.open(path, "rb") as f:
                parsed = statistics_pb2.DatasetFeatureStatisticsList.FromString(f.read())
            if parsed.datasets:
                stats[split] = parsed.datasets[0]
    return stats


def feature_name(feature) -> str:
    return ".".join(feature.path.step) or feature.name


TEXT_FEATURES = (contract.TEXT_FEATURE, contract.TEXT_PAIR_FEATURE)


def feature_stats(feature, shown: Optional[Callable[[list], list]] = None) -> FeatureStats:
    """One feature's figures; its top values through ``shown`` (by default
    ``redaction.text_redactor()``) where it is a text."""
    if feature.HasField("num_stats"):
        s = feature.num_stats
        return FeatureStats("number", s.common_stats.num_non_missing,
                            s.common_stats.num_missing,
                            {"mean": s.mean, "std": s.std_dev, "min": s.min,
                             "median": s.median, "max": s.max}, [])
    s = feature.string_stats
    return FeatureStats("string" if feature.type == feature.STRING else "bytes",
                        s.common_stats.num_non_missing, s.common_stats.num_missing,
                        {"unique": s.unique, "avg length (chars)": s.avg_length,
                         "values per row": s.common_stats.avg_num_values},
                        _top_values(feature_name(feature), s.top_values[:5], shown))


def _top_values(name: str, top_values, shown: Optional[Callable[[list], list]]) -> list:
    values = [v.value for v in top_values]
    if name in TEXT_FEATURES:
        values = (shown or redaction.text_redactor())(values)
    return list(zip(values, (v.frequency for v in top_values)))


def feature_table(stats: dict, shown: Optional[Callable[[list], list]] = None) -> dict:
    """{feature: {split: FeatureStats}}."""
    table: dict = {}
    for split, dataset in stats.items():
        for feature in dataset.features:
            table.setdefault(feature_name(feature), {})[split] = feature_stats(feature, shown)
    return table


def class_counts(dataset, label_feature: str = contract.LABEL_FEATURE) -> dict:
    for feature in dataset.features:
        if feature_name(feature) == label_feature:
            return {b.label: int(b.sample_count)
                    for b in feature.string_stats.rank_histogram.buckets}
    return {}


def word_piece_lengths(uri: str, limit: int = MAX_LENGTH_ROWS) -> dict:
    """{split: lengths} from Transform's transformed examples (the first ``limit`` rows)."""
    import tensorflow as tf

    spec = {contract.INPUT_IDS: tf.io.VarLenFeature(tf.int64)}
    lengths = {}
    for split, folder in split_folders(uri).items():
        files = sorted(fileio.glob(os.path.join(folder, "*")))
        if not files:
            continue
        records = tf.data.TFRecordDataset(files, compression_type="GZIP").take(limit)
        counts = []
        for batch in records.batch(4096):
            ids = tf.io.parse_example(batch, spec)[contract.INPUT_IDS]
            counts.append(tf.math.bincount(tf.cast(ids.indices[:, 0], tf.int32),
                                           minlength=int(ids.dense_shape[0])).numpy())
        lengths[split] = np.concatenate(counts) if counts else np.zeros(0, int)
    return lengths


def splits(stats: dict, transformed_uri: Optional[str]) -> list:
    """Rows, classes and word-piece lengths per split; ``stats`` from ``read_statistics``."""
    lengths = word_piece_lengths(transformed_uri) if transformed_uri else {}
    return [Split(name, int(dataset.num_examples), class_counts(dataset),
                  lengths.get(name), len(lengths.get(name, ())))
            for name, dataset in stats.items()]


def anomalies(uri: str, shown: Optional[Callable[[list], list]] = None) -> list:
    """(split, feature, short description, description) of every anomaly found; the
    descriptions through ``shown`` (by default ``redaction.text_redactor()``): TFDV's
    name values."""
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    from components.data_gate.component import anomaly_entries

    shown, found = shown or redaction.text_redactor(), []
    for split, folder in split_folders(uri).items():
        path = os.path.join(folder, contract.ANOMALIES_FILE)
        if not fileio.exists(path):
            continue
        with fileio.open(path, "rb") as f:
            parsed = anomalies_pb2.Anomalies.FromString(f.read())
        found += [(split, "(dataset)" if feature is None else feature, short, description)
                  for feature, short, description in anomaly_entries(parsed, shown)]
    return found


def drift(uri: str) -> Optional[dict]:
    """DriftCheck's ``drift.json``: span, the span compared with, problems and figures."""
    path = os.path.join(uri, contract.DRIFT_REPORT_FILE)
    if not fileio.exists(path):
        return None
    with fileio.open(path) as f:
        return json.load(f)
