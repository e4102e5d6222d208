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

One step beyond TF Serving: the rewrite casts every float32 weight to bfloat16 on every
call (the weights are variables), which costs more than the matrix products gain for a
few rows. ``FoldedSignature`` folds a signature's variables into constants at load, so
Grappler casts them once. Grappler's remapper then sees constant layer-norm weights and
fuses them into oneDNN's layer norm, which moved SST-2 probabilities by up to 0.17 even
in float32 (measured); ``enable`` then turns the remapper off, so the answers stay those of
the rewrite on variables (SST-2 dev: the same labels, probabilities within 0.004).
"""
from __future__ import annotations

import itertools
import logging
import re
from typing import Dict, FrozenSet, Optional

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


def enable(mode: str, fold_weights: bool = False) -> None:
    """Applies ``--mixed_precision`` to this process; raises ValueError when it cannot.
    ``fold_weights``: the signatures will be ``FoldedSignature``s (the remapper goes off)."""
    check_mode(mode)
    if not mode:
        return
    import tensorflow as tf

    reason = bfloat16_refusal_here()
    if reason:
        raise ValueError(f"--mixed_precision=bfloat16: {reason}; leave the flag unset to "
                         f"serve in float32")
    tf.config.optimizer.set_experimental_options(
        {"auto_mixed_precision_onednn_bfloat16": True, "remapping": not fold_weights})
    logging.getLogger("serving").info(
        "--mixed_precision=bfloat16: oneDNN's bfloat16 rewrite is on for every model%s",
        "; weights folded into constants, Grappler's remapper off for every model"
        if fold_weights else "")


class FoldedSignature:
    """A SavedModel signature with its variables folded into constants: called and
    described like the signature (keyword tensors in, a dict of tensors out).

    Built with TensorFlow's own ``convert_variables_to_constants_v2`` (the TFLite
    converter's); lookup tables and other non-variable resources stay captured. Costs
    the weights' constants per signature that reads them, in the runtime's function and
    its optimized instantiation; Python keeps no copy (``_runtime_function``).
    """

    def __init__(self, fn):
        self.structured_input_signature = fn.structured_input_signature
        self.structured_outputs = fn.structured_outputs
        args = len(fn.inputs) - len(fn.captured_inputs)
        by_spec = {_placeholder_name(spec.name or key): key
                   for key, spec in fn.structured_input_signature[1].items()}
        keys = {t.name: by_spec.get(t.name.split(":")[0]) for t in fn.inputs[:args]}
        if None in keys.values() or len(keys) != len(by_spec):
            raise ValueError(f"inputs {sorted(keys)} do not match the signature's "
                             f"{sorted(by_spec)}")
        captured = {t.name: value for t, value in zip(fn.inputs[args:], fn.captured_inputs)}
        frozen = _freeze(fn)
        self._keys = [keys[t.name] for t in frozen.inputs[:args]]
        self._captured = [captured[t.name] for t in frozen.inputs[args:]]
        self._function = _runtime_function(frozen)

    def __call__(self, **inputs) -> Dict:
        import tensorflow as tf

        if not tf.executing_eagerly():  # a graph would need the FunctionDef's body
            raise RuntimeError("a folded signature is called eagerly only, not inside a "
                               "tf.function")
        flat = self._function(*(inputs[key] for key in self._keys), *self._captured)
        return tf.nest.pack_sequence_as(self.structured_outputs, flat or [],
                                        expand_composites=True)


def _freeze(fn):
    """``convert_variables_to_constants_v2(fn, lower_control_flow=False)``, with the functions
    of the frozen graph renamed for this signature alone. Grappler names the copies it
    specializes for each call site after the function called, so two signatures that run
    the same function (the redaction's tf.while_loop) each bring a different definition
    under one name: the runtime refused the second ('a duplicate function ... where the
    previous and current definitions differ'), and TensorFlow's converter removes an
    earlier one of that name, which another folded signature still runs."""
    from tensorflow.python.framework import convert_to_constants as convert

    build = getattr(convert, "_construct_concrete_function", None)
    data = getattr(convert, "_FunctionConverterDataInEager", None)
    replace = getattr(convert, "_replace_variables_by_constants", None)
    if None in (build, data, replace):  # not TensorFlow 2.16's internals: its own way
        return convert.convert_variables_to_constants_v2(fn, lower_control_flow=False)
    graph_def, converted = replace(converter_data=data(
        func=fn, lower_control_flow=False, aggressive_inlining=False))
    _rename_functions(graph_def, f"_folded_{next(_FOLDED)}")
    return build(fn, graph_def, converted)


_FOLDED = itertools.count()


def _rename_functions(graph_def, suffix: str) -> None:
    """Every function of ``graph_def``'s library renamed to its name + ``suffix``, in its
    definition, its gradient entries and every node that calls it (op or attribute)."""
    names = {f.signature.name: f.signature.name + suffix for f in graph_def.library.function}

    def calls(nodes):
        for node in nodes:
            node.op = names.get(node.op, node.op)
            for attr in node.attr.values():
                if attr.HasField("func"):
                    attr.func.name = names.get(attr.func.name, attr.func.name)
                for func in attr.list.func:
                    func.name = names.get(func.name, func.name)

    calls(graph_def.node)
    for function in graph_def.library.function:
        function.signature.name = names[function.signature.name]
        calls(function.node_def)
    for gradient in graph_def.library.gradient:
        gradient.function_name = names.get(gradient.function_name, gradient.function_name)
        gradient.gradient_func = names.get(gradient.gradient_func, gradient.gradient_func)


def _runtime_function(concrete):
    """``concrete``'s function as registered with the runtime (called with flat tensors),
    with no Python copy of its constants: the graphs that built it held two (180 MB per
    encoder signature of the main job's model), and the ``FunctionDef`` a call parses
    would be a third; the call reads only its signature and attributes. Where
    TensorFlow's internals differ from 2.16's, the concrete function itself (same
    answers, more memory). Eager calls only: tracing a call into a graph reads the
    definition's body."""
    from tensorflow.core.framework import function_pb2

    atomic = getattr(concrete, "_inference_function", None)
    slots = ("_cached_graph", "_generated_graph", "_cached_definition")
    if atomic is None or not all(hasattr(atomic, slot) for slot in slots) \
            or not callable(getattr(atomic, "call_flat", None)):
        logging.getLogger("serving").warning(
            "folded weights: this TensorFlow has no AtomicFunction as 2.16 has; the "
            "signature keeps its Python graphs (more copies of its weights)")
        return concrete
    definition = atomic.definition  # the runtime's, parsed once here
    slim = function_pb2.FunctionDef(signature=definition.signature)
    for key, value in definition.attr.items():
        slim.attr[key].CopyFrom(value)
    # TensorFlow 2.16's AtomicFunction caches; an eager call reads neither graph, and of
    # the definition only its signature (the number of inputs) and attributes.
    atomic._cached_graph = atomic._generated_graph = None
    atomic._cached_definition = slim
    return atomic.call_flat


def _placeholder_name(name: str) -> str:
    """An input's placeholder name as TensorFlow makes it from the argument name
    (lower case, characters other than [a-z0-9_] as '_')."""
    return re.sub(r"[^a-z0-9_]", "_", name.lower())


def fold_weights(signatures: Dict, log_name: str) -> Dict:
    """Each signature that reads variables folded (``FoldedSignature``); one that reads
    none (the project's redact_text) has nothing to fold and is kept as it is, and so is
    one that cannot be folded, with a warning (its answers are the same, only slower).
    The Python graphs the folding built (reference cycles) and the heap it freed go back to
    the system before the warmup, which may run on other threads (batching) whose malloc
    arenas cannot reuse it."""
    from serving.memory import release_memory

    folded = {}
    for key, fn in signatures.items():
        if not getattr(fn, "variables", True):  # nothing to fold: served as it is
            folded[key] = fn
            continue
        try:
            folded[key] = FoldedSignature(fn)
        except Exception as error:  # noqa: BLE001 - any failure: serve it unfolded
            logging.getLogger("serving").warning(
                "%s: signature %r cannot have its weights folded for bfloat16 (%s); "
                "it casts them on every call (slower, same answers)", log_name, key,
                str(error).splitlines()[0] if str(error) else type(error).__name__)
            folded[key] = fn
    release_memory()
    return folded
