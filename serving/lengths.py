"""Length-aware grouping of text rows.

A BERT batch is padded to its longest text, so a 200-byte review in a batch of 20-byte
tweets makes every row cost ten times what it needs. Rows are run in groups of similar
length instead, and each caller gets its rows back in its own order.

Lengths are counted in bytes of the string inputs (a sentence pair: both texts; a
serialized tf.Example: its size), a stand-in for tokens that needs no tokenizer.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np

Tensors = Dict[str, np.ndarray]
MAX_GROUP_ROWS = 64  # the rows of one call, as the server's deadline slices
# What a call costs besides its rows, in padded bytes, so a group is cut off only when that
# saves more padding than the extra call costs. Measured on MiniLM-L6 (bench/call_cost.py,
# docs/performance.md): fitted, 280 padded bytes in float32 and 390 in bfloat16; on random
# 9-row batches 512 beat 256 by 7% in bfloat16 and lost 2% in float32 (even at 32 rows).
CALL_OVERHEAD_BYTES = 512


def row_lengths(inputs: Mapping[str, np.ndarray]) -> Optional[np.ndarray]:
    """Bytes per row over the string inputs; None when there is no string input or the
    inputs are not all batch-major with one number of rows (a scalar, which TensorFlow
    broadcasts, or a mismatch the signature refuses): nothing to group by."""
    strings = [v for v in inputs.values() if v.dtype.kind in "OSU"]
    counts = {len(v) if v.ndim else -1 for v in inputs.values()}
    if not strings or len(counts) != 1 or -1 in counts:
        return None
    rows = counts.pop()
    flat = [v.reshape(rows, -1) for v in strings] if rows else []
    return np.array([text_bytes(item for value in row for item in value)
                     for row in zip(*flat)], dtype=np.int64)


def text_bytes(texts) -> int:
    """The length of one row: bytes of its texts (str as UTF-8, or bytes), summed."""
    return sum(len(t.encode("utf-8")) if isinstance(t, str) else len(t) for t in texts)


def length_groups(lengths: Sequence[int], max_rows: int = MAX_GROUP_ROWS,
                  overhead: int = CALL_OVERHEAD_BYTES) -> List[np.ndarray]:
    """Row indices, shortest first, cut into groups of at most ``max_rows`` that cost the
    least in all: a group costs its rows x its longest row, plus ``overhead`` (dynamic
    programming over the sorted lengths)."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    sorted_lengths = np.maximum(np.asarray(lengths, dtype=np.float64)[order], 1.0)
    n = len(order)
    best = np.zeros(n + 1)
    cut = np.zeros(n + 1, dtype=np.int64)
    for end in range(1, n + 1):
        starts = np.arange(max(0, end - max_rows), end)
        costs = best[starts] + (end - starts) * sorted_lengths[end - 1] + overhead
        pick = int(np.argmin(costs))
        best[end], cut[end] = costs[pick], starts[pick]
    groups, end = [], n
    while end > 0:
        groups.append(order[cut[end]:end])
        end = cut[end]
    return groups[::-1]


def map_by_length(fn: Callable[[list], list], items: Sequence, lengths: Sequence[int],
                  max_rows: int = MAX_GROUP_ROWS) -> list:
    """``fn`` (a list of items in, one result per item out) on groups of items of similar
    length; the results in the items' order."""
    results = [None] * len(items)
    for rows in length_groups(lengths, max_rows):
        answers = fn([items[i] for i in rows])
        if len(answers) != len(rows):
            raise ValueError(f"{len(rows)} rows in, {len(answers)} answers out")
        for row, result in zip(rows, answers):
            results[row] = result
    return results


def run_by_length(fn: Callable[[Tensors], Tensors], inputs: Tensors,
                  lengths: Sequence[int], max_rows: int = MAX_GROUP_ROWS) -> Tensors:
    """``fn`` on groups of rows of similar length; the outputs in the inputs' row order."""
    groups = length_groups(lengths, max_rows)
    if len(groups) <= 1:
        return fn(inputs)
    outputs: Tensors = {}
    for rows in groups:
        part = fn({k: v[rows] for k, v in inputs.items()})
        for key, value in part.items():
            if key not in outputs:
                dtype = object if value.dtype.kind in "SU" else value.dtype  # no truncation
                outputs[key] = np.empty((len(lengths),) + value.shape[1:], dtype)
            outputs[key][rows] = value
    return outputs
