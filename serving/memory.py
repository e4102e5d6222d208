"""Handing freed heap back to the system after a version loads or unloads, and while it
loads (after its weights are folded and after each signature's first warmup call).

Tested in a child process (tests/serving/test_faults.py) and, after a load, with a
model server (tests/e2e/test_precision.py).
"""
from __future__ import annotations

import ctypes
import gc


def release_memory() -> None:
    """After a load (and its warmup) or an unload: collects reference cycles, then
    returns the freed heap to the system (glibc's ``malloc_trim``). Without it RSS kept
    every swap's peak: 1.3 to 2.1 GB over 10 loads of a 656 MiB model
    (bench/serving_lifecycle.py); and a load's own peak: Grappler's copies of the folded
    weights (``--bfloat16_fold_weights``) held the main job's model (batching on) at 4.9
    GiB after its load instead of 3.1 GiB (bench/serving_memory.py)."""
    gc.collect()
    trim_heap()


def trim_heap() -> None:
    """Returns the heap freed so far to the system (glibc's ``malloc_trim``, every
    thread's arena), without a Python collection: for memory C++ freed (Grappler's copies
    of a graph). ``gc.collect`` holds the GIL, 0.16-0.2 s with the main job's folded
    model loaded (an ad-hoc measurement), while other versions may be serving."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        pass
