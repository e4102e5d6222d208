"""The train/eval split stratified by label (single-label data), in Beam.

Every class gets the eval fraction of its own rows: ``eval_rows(n, fraction)`` of its
``n`` rows, so at least one of each class with two rows or more (and one stays in
train), unless copies of one text stand in the way (below). Which rows: those with the
smallest hashes of their serialized example (SHA-256), so the same rows give the same
split on every run (warm starts and baselines compare on the same eval rows), a row's
place does not depend on the order of the files, and rows added later move few
others. Identical rows hash alike and stay on one side: a group of copies goes to eval
only when it fits in what the class still needs, and a class's last distinct row always
trains (a class of one repeated text trains whole, and DataGate says its eval split
lacks it).

Beam: one pass counts each class and keeps its ``keep`` smallest distinct hashes with
their copies (bounded memory); each class's eval hashes then go to the partition as a
side input. A class of more than ``EXACT_ROWS`` rows sends the rows whose hash falls
below the fraction of the hash range (the hash split within the class: its eval share
is within a few percent).

Whatever split the rows (this one, TFX's hash split, ``data.presplit``) and whatever
older spans join train, ``DropEvalTextsFromTrain`` then drops every train row whose
text is also in eval as the model reads texts alike (case folded, white space
collapsed, after redaction: two e-mail addresses are one placeholder): the same text
under another label, a copy with a trailing space, a span repeating an older one's
rows would otherwise be scored on what the model trained on.
"""
from __future__ import annotations

import hashlib
import heapq
from typing import Dict, Iterable, List, Tuple

import apache_beam as beam
import tensorflow as tf

from components.text_example_gen.parsing import read_alike
from serving import contract

HASH_RANGE = 2 ** 64
COUNTER = ("split", "train_rows_in_eval")  # Beam counter: train rows dropped as in eval
TRAIN_ROWS_IN_EVAL = "train_rows_in_eval"  # the examples artifact's custom property
EXACT_ROWS = 10_000  # classes up to this size get exactly eval_rows() eval rows
SPLITS = ("train", "eval")


def row_hash(example: tf.train.Example) -> int:
    """A stable 64-bit hash of the example's content."""
    return int.from_bytes(hashlib.sha256(example.SerializeToString(deterministic=True))
                          .digest()[:8], "big")


def text_key(example: tf.train.Example) -> int:
    """A 64-bit hash of the example's text and pair as the model reads them alike: case
    folded, white space collapsed (labels left out)."""
    parts = []
    for name in (contract.TEXT_FEATURE, contract.TEXT_PAIR_FEATURE):
        feature = example.features.feature.get(name)
        text = b"\n".join(feature.bytes_list.value) if feature is not None else b""
        parts.append(read_alike(text.decode("utf-8", "replace")))
    return int.from_bytes(hashlib.sha256("\0".join(parts).encode("utf-8")).digest()[:8],
                          "big")


def label_of(example: tf.train.Example) -> bytes:
    """The (single) label of an example."""
    return example.features.feature[contract.LABEL_FEATURE].bytes_list.value[0]


def eval_rows(rows: int, fraction: float) -> int:
    """Eval rows of a class of ``rows`` rows: the fraction, rounded, at least 1 and at
    most ``rows - 1`` (a class of one row trains)."""
    if rows < 2:
        return 0
    return min(rows - 1, max(1, round(rows * fraction)))


def keep(fraction: float) -> int:
    """How many of a class's smallest hashes the count keeps (enough for EXACT_ROWS)."""
    return eval_rows(EXACT_ROWS, fraction)


def eval_hashes(rows: int, groups: List[Tuple[int, int]], fraction: float) -> frozenset:
    """The hashes of a class (at most EXACT_ROWS rows) that go to eval: ``groups`` are its
    smallest distinct hashes with their copies, in hash order; groups are taken while
    they fit in ``eval_rows``, never the class's last one."""
    wanted, taken, chosen = eval_rows(rows, fraction), 0, []
    complete = sum(copies for _, copies in groups) == rows  # every distinct row is here
    for i, (hashed, copies) in enumerate(groups):
        if taken >= wanted or (complete and i == len(groups) - 1):
            break
        if taken + copies <= wanted:
            chosen.append(hashed)
            taken += copies
    return frozenset(chosen)


class _CountAndSmallest(beam.CombineFn):
    """(rows, [(hash, copies)] of the ``size`` smallest distinct hashes) of one class.
    The accumulator: rows, {hash: copies}, and a max-heap (negated) of those hashes."""

    def __init__(self, size: int):
        self._size = size

    def create_accumulator(self):
        return 0, {}, []

    def add_input(self, accumulator, value: int):
        rows, counts, heap = accumulator
        if value in counts:
            counts[value] += 1
        elif len(counts) < self._size:
            counts[value] = 1
            heapq.heappush(heap, -value)
        elif value < -heap[0]:
            del counts[-heapq.heapreplace(heap, -value)]
            counts[value] = 1
        return rows + 1, counts, heap

    def merge_accumulators(self, accumulators: Iterable):
        rows, merged = 0, {}
        for count, counts, _ in accumulators:
            rows += count
            for hashed, copies in counts.items():
                merged[hashed] = merged.get(hashed, 0) + copies
        kept = heapq.nsmallest(self._size, merged)
        return rows, {hashed: merged[hashed] for hashed in kept}, [-h for h in reversed(kept)]

    def extract_output(self, accumulator):
        rows, counts, _ = accumulator
        return rows, sorted(counts.items())


def _eval_rule(counted: Iterable, fraction: float) -> Dict[bytes, object]:
    """{label: eval hashes (a frozenset), or the largest eval hash (big classes)}."""
    return {label: int(fraction * HASH_RANGE) - 1 if rows > EXACT_ROWS
            else eval_hashes(rows, groups, fraction) for label, (rows, groups) in counted}


def _which(keyed: Tuple[bytes, int, tf.train.Example], num_partitions: int,
           rules: Dict[bytes, object]) -> int:
    label, hashed, _ = keyed
    rule = rules[label]
    evaluated = hashed in rule if isinstance(rule, frozenset) else hashed <= rule
    return SPLITS.index("eval" if evaluated else "train")


@beam.ptransform_fn
def StratifiedSplit(examples: beam.PCollection, fraction: float) -> Dict[str, beam.PCollection]:
    """Single-label tf.Examples -> {"train": ..., "eval": ...}, each class split by
    ``fraction`` (see the module)."""
    if not 0 < fraction < 1:
        raise ValueError(f"eval_fraction must be in (0, 1), got {fraction}")
    keyed = examples | "Hash" >> beam.Map(lambda e: (label_of(e), row_hash(e), e))
    rules = (keyed
             | "LabelAndHash" >> beam.Map(lambda k: (k[0], k[1]))
             | "CountPerClass" >> beam.CombinePerKey(_CountAndSmallest(keep(fraction)))
             | "All" >> beam.combiners.ToList()
             | "EvalRules" >> beam.Map(_eval_rule, fraction))
    parts = keyed | "Partition" >> beam.Partition(
        _which, len(SPLITS), beam.pvalue.AsSingleton(rules))
    return {name: parts[i] | f"Examples[{name}]" >> beam.Map(lambda k: k[2])
            for i, name in enumerate(SPLITS)}


def _not_in_eval(example: tf.train.Example, eval_keys) -> bool:
    if text_key(example) in eval_keys:
        beam.metrics.Metrics.counter(*COUNTER).inc()
        return False
    return True


@beam.ptransform_fn
def DropEvalTextsFromTrain(splits: Dict[str, beam.PCollection]
                           ) -> Dict[str, beam.PCollection]:
    """``splits`` with every train row whose ``text_key`` is an eval row's dropped
    (counted: ``COUNTER``)."""
    eval_keys = (splits["eval"] | "EvalTexts" >> beam.Map(text_key)
                 | "EvalTextSet" >> beam.combiners.ToSet())
    train = splits["train"] | "DropEvalTexts" >> beam.Filter(
        _not_in_eval, beam.pvalue.AsSingleton(eval_keys))
    return {**splits, "train": train}


def train_rows_in_eval(result) -> int:
    """The train rows a finished pipeline dropped as in eval (``COUNTER``)."""
    from apache_beam.metrics.metric import MetricsFilter
    query = result.metrics().query(MetricsFilter().with_name(COUNTER[1]))
    return sum(int((c.committed if c.committed is not None else c.attempted) or 0)
               for c in query["counters"] if c.key.metric.namespace == COUNTER[0])
