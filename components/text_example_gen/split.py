"""The train/eval split stratified by label (single-label data), in Beam.

Every class gets the eval fraction of its own rows: ``eval_rows(n, fraction)`` of its
``n`` rows, and at least one of each class with two rows or more (one stays in train).
Which rows: those with the smallest hashes of their serialized example (SHA-256), so
the same rows give the same split on every run (warm starts and baselines compare on
the same eval rows), a row's place does not depend on the order of the files, rows
added later move few others, and duplicate rows never straddle the split.

Beam: one pass counts each class and keeps its ``keep`` smallest hashes (bounded
memory); each class's threshold then goes to the partition as a side input. A class of
more than ``EXACT_ROWS`` rows sends the rows whose hash falls below the fraction of the
hash range (the hash split within the class: its eval share is within a few percent).
"""
from __future__ import annotations

import hashlib
import heapq
from typing import Dict, Iterable, List, Tuple

import apache_beam as beam
import tensorflow as tf

from models import features

HASH_RANGE = 2 ** 64
EXACT_ROWS = 10_000  # classes up to this size get exactly eval_rows() eval rows
SPLITS = ("train", "eval")


def row_hash(example: tf.train.Example) -> int:
    """A stable 64-bit hash of the example's content."""
    return int.from_bytes(hashlib.sha256(example.SerializeToString(deterministic=True))
                          .digest()[:8], "big")


def label_of(example: tf.train.Example) -> bytes:
    """The (single) label of an example."""
    return example.features.feature[features.LABEL].bytes_list.value[0]


def eval_rows(rows: int, fraction: float) -> int:
    """Eval rows of a class of ``rows`` rows: the fraction, rounded, at least 1 and at
    most ``rows - 1`` (a class of one row trains)."""
    if rows < 2:
        return 0
    return min(rows - 1, max(1, round(rows * fraction)))


def keep(fraction: float) -> int:
    """How many of a class's smallest hashes the count keeps (enough for EXACT_ROWS)."""
    return eval_rows(EXACT_ROWS, fraction)


def threshold(rows: int, smallest: List[int], fraction: float) -> int:
    """The largest hash of a class that goes to eval (-1: none does)."""
    if rows > EXACT_ROWS:
        return int(fraction * HASH_RANGE) - 1
    wanted = eval_rows(rows, fraction)
    return smallest[wanted - 1] if wanted else -1


class _CountAndSmallest(beam.CombineFn):
    """(rows, sorted smallest ``size`` hashes) of one class."""

    def __init__(self, size: int):
        self._size = size

    def create_accumulator(self) -> Tuple[int, List[int]]:
        return 0, []

    def add_input(self, accumulator, value: int):
        rows, smallest = accumulator
        if len(smallest) < self._size:
            heapq.heappush(smallest, -value)  # a max-heap of the smallest hashes
        elif value < -smallest[0]:
            heapq.heapreplace(smallest, -value)
        return rows + 1, smallest

    def merge_accumulators(self, accumulators: Iterable):
        rows, merged = 0, []
        for count, smallest in accumulators:
            rows += count
            merged.extend(-h for h in smallest)
        return rows, [-h for h in heapq.nsmallest(self._size, merged)]

    def extract_output(self, accumulator):
        rows, smallest = accumulator
        return rows, sorted(-h for h in smallest)


def _thresholds(counted: Iterable, fraction: float) -> Dict[bytes, int]:
    return {label: threshold(rows, smallest, fraction)
            for label, (rows, smallest) in counted}


def _which(keyed: Tuple[bytes, int, tf.train.Example], num_partitions: int,
           thresholds: Dict[bytes, int]) -> int:
    label, hashed, _ = keyed
    return SPLITS.index("eval") if hashed <= thresholds[label] else SPLITS.index("train")


@beam.ptransform_fn
def StratifiedSplit(examples: beam.PCollection, fraction: float) -> Dict[str, beam.PCollection]:
    """Single-label tf.Examples -> {"train": ..., "eval": ...}, each class split by
    ``fraction`` (see the module)."""
    if not 0 < fraction < 1:
        raise ValueError(f"eval_fraction must be in (0, 1), got {fraction}")
    keyed = examples | "Hash" >> beam.Map(lambda e: (label_of(e), row_hash(e), e))
    thresholds = (keyed
                  | "LabelAndHash" >> beam.Map(lambda k: (k[0], k[1]))
                  | "CountPerClass" >> beam.CombinePerKey(_CountAndSmallest(keep(fraction)))
                  | "All" >> beam.combiners.ToList()
                  | "Thresholds" >> beam.Map(_thresholds, fraction))
    parts = keyed | "Partition" >> beam.Partition(
        _which, len(SPLITS), beam.pvalue.AsSingleton(thresholds))
    return {name: parts[i] | f"Examples[{name}]" >> beam.Map(lambda k: k[2])
            for i, name in enumerate(SPLITS)}
