"""``--mixed_precision=bfloat16`` as TF Serving does it.

TF Serving turns on oneDNN's automatic bfloat16 rewrite when it loads a SavedModel
(``saved_model_bundle_factory.cc`` sets the Grappler option
``auto_mixed_precision_onednn_bfloat16``): matrix products and the ops around them run in
bfloat16, with casts at the edges, so every signature keeps its float32 inputs and
outputs. Here the same Grappler option is set once for the process, before any model
loads, so it applies to every signature of every version.

Where TF Serving would run the rewrite on a CPU without bfloat16 instructions (emulated:
slower than float32) or skip it silently (oneDNN off), this server refuses to start and
says why: asking for bfloat16 on such a machine is a configuration mistake.
"""
from __future__ import annotations

import logging
from typing import FrozenSet, Optional

MODES = ("", "bfloat16")  # TF Serving knows only bfloat16; "" is its default (float32)
# CPU flags (Linux /proc/cpuinfo) of bfloat16 arithmetic oneDNN uses: AMX tiles and
# AVX512-BF16's dot products. AVX-NE-CONVERT (which TensorFlow also counts as bfloat16
# support) only converts: left out, as unmeasured.
NATIVE_BFLOAT16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_flags(path: str = "/proc/cpuinfo") -> FrozenSet[str]:
    """The CPU's feature flags (empty where the file cannot be read)."""
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def bfloat16_refusal(flags: FrozenSet[str], onednn_enabled: bool) -> Optional[str]:
    """Why the bfloat16 rewrite cannot serve faster here, or None when it can."""
    if not onednn_enabled:
        return ("oneDNN is off in this process (TF_ENABLE_ONEDNN_OPTS=0, or a TensorFlow "
                "built without it), and the bfloat16 rewrite is oneDNN's")
    if not set(NATIVE_BFLOAT16_FLAGS) & flags:
        return (f"this CPU has no bfloat16 instructions (none of "
                f"{', '.join(NATIVE_BFLOAT16_FLAGS)} in /proc/cpuinfo): bfloat16 would be "
                f"emulated, slower than float32")
    return None


def bfloat16_refusal_here() -> Optional[str]:
    """``bfloat16_refusal`` for this machine and process (None: bfloat16 is faster here)."""
    from tensorflow.python.util import _pywrap_util_port

    return bfloat16_refusal(cpu_flags(), _pywrap_util_port.IsMklEnabled())


def check_mode(mode: str) -> None:
    """Refuses a ``--mixed_precision`` other than bfloat16 or unset (ValueError)."""
    if mode not in MODES:
        raise ValueError(f"--mixed_precision={mode!r}: the only mode is bfloat16 (as in TF "
                         f"Serving); leave it unset for float32")


def enable(mode: str) -> None:
    """Applies ``--mixed_precision`` to this process; raises ValueError when it cannot."""
    check_mode(mode)
    if not mode:
        return
    import tensorflow as tf

    reason = bfloat16_refusal_here()
    if reason:
        raise ValueError(f"--mixed_precision=bfloat16: {reason}; leave the flag unset to "
                         f"serve in float32")
    tf.config.optimizer.set_experimental_options(
        {"auto_mixed_precision_onednn_bfloat16": True})
    logging.getLogger("serving").info(
        "--mixed_precision=bfloat16: oneDNN's bfloat16 rewrite is on for every model")
