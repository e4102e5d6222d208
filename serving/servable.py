"""One loaded model version: its signatures, run directly or through a batcher.

Tested with a model server: tests/serving/test_server.py, tests/serving/test_deadlines.py.
"""
from __future__ import annotations

import dataclasses
import os
import re
import time
from typing import Dict, Iterator, List, Optional, Tuple

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

from serving import contract, deadlines, lengths, precision
from serving.batching import (CLOSE_TIMEOUT_SECONDS, BatchingParameters, BatchObserver,
                              Batcher, BatchSlots, QueueFull, shared_slots)
from serving.errors import ServingError, invalid
from serving.json_codec import type_name
from serving.memory import trim_heap

CLASSIFY_METHOD, REGRESS_METHOD = contract.CLASSIFY_METHOD, contract.REGRESS_METHOD
DEFAULT_SIGNATURE = "serving_default"
WARMUP_FILE = os.path.join(contract.ASSETS_EXTRA, contract.WARMUP_FILE)
MAX_WARMUP_RECORDS = 1000  # as TF Serving
# Rows per call of a run under a deadline: TensorFlow cancels loops and waiting ops at
# once, but a straight-line graph (a BERT) only stops between calls.
DEADLINE_SLICE_ROWS = 64


@dataclasses.dataclass
class LoadSettings:
    """How versions are loaded and called (TF Serving's flags of the same meaning)."""

    batching: Optional[BatchingParameters] = None
    tags: List[str] = dataclasses.field(default_factory=lambda: ["serve"])
    warmup: bool = True  # --enable_model_warmup
    warmup_iterations: int = 1  # --num_request_iterations_for_warmup
    method_name_check: bool = False  # --enable_signature_method_name_check
    by_length: bool = True  # --batch_by_length: rows run in groups of similar length
    observe_batch: Optional[BatchObserver] = None  # told of every server-side batch
    fold_weights: bool = False  # --mixed_precision=bfloat16: serving/precision.py
    # the server's batch threads, shared by the batchers of every version loaded with these
    # settings (made from ``batching`` when not given: batching.shared_slots)
    batch_slots: Optional[BatchSlots] = None

    def __post_init__(self):
        if self.batching is not None and self.batch_slots is None:
            self.batch_slots = shared_slots(self.batching)

Tensors = Dict[str, np.ndarray]


class SignatureNotFound(ServingError):
    """REST says INVALID_ARGUMENT; gRPC Predict says FAILED_PRECONDITION (as TF Serving)."""

    def __init__(self, key: str):
        super().__init__(grpc.StatusCode.INVALID_ARGUMENT,
                         f'Serving signature name: "{key}" not found in signature def')
        self.key = key


def read_signature_defs(path: str, tags: Optional[List[str]] = None
                        ) -> Dict[str, meta_graph_pb2.SignatureDef]:
    """The SignatureDefs of the MetaGraph with ``tags`` (binary or text saved_model.pb)."""
    saved_model = saved_model_pb2.SavedModel()
    binary = os.path.join(path, "saved_model.pb")
    if tf.io.gfile.exists(binary):
        saved_model.ParseFromString(tf.io.gfile.GFile(binary, "rb").read())
    else:
        from google.protobuf import text_format
        text_format.Parse(tf.io.gfile.GFile(binary + "txt").read(), saved_model)
    wanted = set(tags or ["serve"])
    matching = [m for m in saved_model.meta_graphs if set(m.meta_info_def.tags) == wanted]
    if not matching:
        raise ValueError(f"{path}: no MetaGraph with tags {sorted(wanted)} (found "
                         f"{[sorted(m.meta_info_def.tags) for m in saved_model.meta_graphs]})")
    return dict(matching[0].signature_def)


def read_warmup_logs(saved_model_dir: str) -> Iterator:
    """The ``PredictionLog`` records of a SavedModel's warmup file (none if it has none)."""
    from tensorflow_serving.apis import prediction_log_pb2

    path = os.path.join(saved_model_dir, WARMUP_FILE)
    if not tf.io.gfile.exists(path):
        return
    for record in tf.data.TFRecordDataset(path).take(MAX_WARMUP_RECORDS):
        yield prediction_log_pb2.PredictionLog.FromString(record.numpy())


def is_saved_model_dir(path: str) -> bool:
    return any(tf.io.gfile.exists(os.path.join(path, name))
               for name in ("saved_model.pb", "saved_model.pbtxt"))


class Servable:
    """A SavedModel version loaded with ``tf.saved_model.load``."""

    def __init__(self, name: str, version: int, path: str,
                 settings: Optional[LoadSettings] = None):
        self.name, self.version, self.path = name, version, path
        self.settings = settings or LoadSettings()
        self.signature_defs = read_signature_defs(path, self.settings.tags)
        self._module = tf.saved_model.load(path, tags=self.settings.tags)
        self._functions = dict(self._module.signatures)
        if self.settings.fold_weights:
            self._functions = precision.fold_weights(self._functions, f"{name} {version}")
        self._batchers: Dict[str, Batcher] = {}
        if self.settings.batching:
            for key, fn in self._functions.items():
                if _batchable(fn):
                    self._batchers[key] = Batcher(self._caller(key), self.settings.batching,
                                                  name=f"{name}-{version}-{key}",
                                                  observe=self._observer(f"{name}-{key}"),
                                                  slots=self.settings.batch_slots)

    # -- signatures -----------------------------------------------------------------------
    def signature(self, name: str) -> Tuple[str, meta_graph_pb2.SignatureDef]:
        key = name or DEFAULT_SIGNATURE
        if key not in self._functions:
            raise SignatureNotFound(key)
        return key, self.signature_defs[key]

    def run(self, signature_name: str, inputs: Tensors,
            output_filter: Optional[List[str]] = None,
            deadline: deadlines.Deadline = None) -> Tensors:
        """Runs a signature on batch-major numpy inputs (checked against the SignatureDef);
        a run still going at ``deadline`` is cancelled (DEADLINE_EXCEEDED)."""
        key, signature_def = self.signature(signature_name)
        _check_inputs(signature_def, inputs)
        _check_output_filter(signature_def, output_filter or [])
        batcher = self._batchers.get(key)  # once: close() replaces the dict
        if batcher and inputs and all(v.ndim >= 1 for v in inputs.values()):
            try:
                outputs = batcher(inputs, deadline)
            except QueueFull:
                raise ServingError(grpc.StatusCode.UNAVAILABLE,
                                   "The batch scheduling queue to which this task was "
                                   "submitted is full") from None
        else:
            with deadlines.scope(deadline):
                outputs = self._caller(key)(inputs)
        if output_filter:
            outputs = {k: outputs[k] for k in output_filter}
        return outputs

    def classify(self, signature_name: str, examples: List[bytes],
                 deadline: deadlines.Deadline = None):
        """[(label, score), ...] per example, from a classification signature."""
        key, signature_def = self._method(signature_name, CLASSIFY_METHOD, "classification",
                                          examples)
        outputs = self.run(key, {contract.CLASSIFY_INPUT: np.array(examples, dtype=object)},
                           deadline=deadline)
        scores, classes = outputs.get("scores"), outputs.get("classes")
        _check_classes(classes, scores, len(examples))
        rows = []
        for i in range(len(examples)):
            n = (scores if scores is not None else classes)[i].shape[-1]
            rows.append([((classes[i][j].decode("utf-8", "replace") if classes is not None
                           else ""),
                          float(scores[i][j]) if scores is not None else 0.0)
                         for j in range(n)])
        return rows

    def regress(self, signature_name: str, examples: List[bytes],
                deadline: deadlines.Deadline = None) -> List[float]:
        key, signature_def = self._method(signature_name, REGRESS_METHOD, "regression",
                                          examples)
        outputs = self.run(key, {contract.CLASSIFY_INPUT: np.array(examples, dtype=object)},
                           deadline=deadline)
        values = outputs["outputs"]
        _check_regression(values, len(examples))
        return [float(v) for v in values.reshape(len(examples))]

    def warm_up(self) -> int:
        """Replays ``assets.extra/tf_serving_warmup_requests`` as TF Serving does at load."""
        count, warmed = 0, set()
        if not self.settings.warmup:
            return count
        for log in [log for log in read_warmup_logs(self.path)
                    for _ in range(self.settings.warmup_iterations)]:
            kind = log.WhichOneof("log_type")
            if kind == "predict_log":
                request = log.predict_log.request
                self.run(request.model_spec.signature_name,
                         {k: tf.make_ndarray(v) for k, v in request.inputs.items()})
            elif kind in ("classify_log", "regress_log"):
                request = getattr(log, kind).request
                examples = [e.SerializeToString() for e in input_examples(request.input)]
                method = self.classify if kind == "classify_log" else self.regress
                method(request.model_spec.signature_name, examples)
            else:
                raise ValueError(f"{WARMUP_FILE}: unsupported warmup record {kind}")
            count += 1
            key = request.model_spec.signature_name or DEFAULT_SIGNATURE
            if key not in warmed:
                # Its first call ran Grappler on it: a transient of several copies of its
                # graph with folded weights, freed in the malloc arena of the thread that
                # ran it (a batch thread of its own with batching), which the next
                # signature's thread does not reuse. Without this, the main job's folded
                # model peaked at 1.9x what it keeps once loaded (4.8 GiB).
                warmed.add(key)
                trim_heap()
        return count

    def close(self, timeout: float = CLOSE_TIMEOUT_SECONDS) -> None:
        """Stops the batchers and waits up to ``timeout`` seconds in all for their threads
        to run what is queued; requests still coming run without a batcher. Dropping the
        batchers also breaks the reference cycle servable -> batcher -> caller ->
        servable, so the last request still running on this version frees it."""
        batchers, self._batchers = self._batchers, {}
        for batcher in batchers.values():
            batcher.stop()
        deadline = time.monotonic() + timeout
        for batcher in batchers.values():
            batcher.wait(deadline, timeout)

    # -- helpers --------------------------------------------------------------------------
    def _observer(self, label: str):
        """The batch observer, told ``label`` (model-signature: no version, so the metrics
        keep one series per signature however many versions come and go)."""
        observe = self.settings.observe_batch
        return observe and (lambda _name, rows, waits: observe(label, rows, waits))

    def _caller(self, key: str):
        """The signature as a function of numpy tensors. A call of several rows of a
        batch-major signature with text inputs runs them in groups of similar length
        (``--batch_by_length``, serving/lengths.py); else, under a deadline, a call of more
        than ``DEADLINE_SLICE_ROWS`` rows runs in slices of that many (as batching splits
        and merges them). The deadline is checked before each group or slice."""
        fn = self._functions[key]
        specs = fn.structured_input_signature[1]
        sliceable = _batchable(fn) and all(o.shape[1:].is_fully_defined()
                                           for o in fn.structured_outputs.values())

        def run(inputs: Tensors) -> Tensors:
            try:
                outputs = deadlines.call(fn, **{
                    k: tf.constant(v, dtype=specs[k].dtype) for k, v in inputs.items()})
            except tf.errors.InvalidArgumentError as error:
                raise invalid(op_error_text(error)) from None
            except (ValueError, TypeError) as error:
                raise invalid(first_line(error)) from None
            return {k: _array(v.numpy()) for k, v in outputs.items()}

        def call(inputs: Tensors) -> Tensors:
            if not sliceable:
                return run(inputs)
            sizes = lengths.row_lengths(inputs) if self.settings.by_length else None
            if sizes is not None and len(sizes) > 1:
                return lengths.run_by_length(run, inputs, sizes, DEADLINE_SLICE_ROWS)
            rows = {len(v) if v.ndim else -1 for v in inputs.values()}
            if deadlines.current() is None or len(rows) != 1 or rows.pop() <= DEADLINE_SLICE_ROWS:
                return run(inputs)
            parts = [run({k: v[start:start + DEADLINE_SLICE_ROWS] for k, v in inputs.items()})
                     for start in range(0, len(next(iter(inputs.values()))),
                                        DEADLINE_SLICE_ROWS)]
            return {k: np.concatenate([part[k] for part in parts]) for k in parts[0]}
        return call

    def _method(self, name: str, method: str, kind: str, examples: List[bytes]):
        """The signature for Classify/Regress, checked as TF Serving does: its method name
        with ``--enable_signature_method_name_check``, else its inputs and outputs; then
        that there are examples."""
        key, signature_def = self.signature(name)
        if self.settings.method_name_check and signature_def.method_name != method:
            raise invalid(f"Expected {kind} signature method_name to be {method}. "
                          f"Was: {signature_def.method_name}")
        outputs = set(signature_def.outputs)
        wanted = ({contract.CLASSIFY_CLASSES, contract.CLASSIFY_SCORES}
                  if method == CLASSIFY_METHOD else {"outputs"})
        if len(signature_def.inputs) != 1:
            raise invalid("Expected one input Tensor.")
        if method == REGRESS_METHOD and len(outputs) != 1:
            raise invalid("Expected one output Tensor.")
        if method == CLASSIFY_METHOD and len(outputs) not in (1, 2):
            raise invalid(f"Expected one or two output Tensors, found {len(outputs)}")
        if contract.CLASSIFY_INPUT not in signature_def.inputs:
            raise invalid(f"No {kind} inputs found in SignatureDef '{key}': expected an "
                          f"input named '{contract.CLASSIFY_INPUT}'")
        if not outputs & wanted:
            raise invalid(f"Expected {kind} signature outputs to contain "
                          f"{' or '.join(sorted(wanted))}; signature '{key}' has "
                          f"{sorted(outputs)}")
        if not examples:
            raise invalid("Input is empty.")
        return key, signature_def


def _shape_text(array: np.ndarray) -> str:
    """TensorShape::DebugString: [2,3]."""
    return "[" + ",".join(map(str, array.shape)) + "]"


def _check_classes(classes, scores, examples: int) -> None:
    """TF Serving's checks of a Classify answer (classifier.cc)."""
    for name, array, dtype in (("classes", classes, tf.string), ("scores", scores, tf.float32)):
        if array is None:
            continue
        if array.ndim != 2:
            raise invalid(f"Expected Tensor shape: [batch_size num_classes] but got "
                          f"{_shape_text(array)}")
        if _dtype(array) != dtype:
            raise invalid(f"Expected {name} Tensor of {_dtype_name(dtype)}. Got: "
                          f"{_dtype_name(_dtype(array))}")
        if array.shape[0] != examples:
            raise invalid(f"Expected {name} output batch size of {examples}. Got: "
                          f"{array.shape[0]}")
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise invalid(f"Tensors class and score should match in dim_size(1). Got "
                      f"{classes.shape[1]} vs. {scores.shape[1]}")


def _check_regression(values: np.ndarray, examples: int) -> None:
    """TF Serving's checks of a Regress answer (regressor.cc)."""
    if not (values.ndim == 1 or values.ndim == 2 and values.shape[1] == 1):
        raise invalid(f"Expected output Tensor shape to be either [batch_size] or "
                      f"[batch_size, 1] but got {_shape_text(values)}")
    if values.shape[0] != examples:
        raise invalid(f"Input batch size did not match output batch size: {examples} vs. "
                      f"{values.shape[0]}")
    if _dtype(values) != tf.float32:
        raise invalid(f"Expected output Tensor of DT_FLOAT.  Got: "
                      f"{_dtype_name(_dtype(values))}")


def _dtype(array: np.ndarray) -> tf.DType:
    """The TensorFlow type of an output (strings come back as objects or bytes)."""
    return tf.string if array.dtype.kind in "OS" else tf.as_dtype(array.dtype)


def _dtype_name(dtype: tf.DType) -> str:
    """DT_FLOAT, DT_STRING, ..."""
    return types_pb2.DataType.Name(dtype.as_datatype_enum)


def _batchable(fn) -> bool:
    specs = list(fn.structured_input_signature[1].values())
    outputs = list(fn.structured_outputs.values())
    return bool(specs) and all(s.shape.rank and s.shape[0] is None for s in specs) and all(
        o.shape.rank and o.shape[0] is None for o in outputs)


def _check_inputs(signature_def, inputs: Tensors) -> None:
    expected = set(signature_def.inputs)
    missing, extra = sorted(expected - set(inputs)), sorted(set(inputs) - expected)
    if missing or extra:
        raise invalid(f"input size does not match signature: {len(inputs)}!={len(expected)} "
                      f"len({{{','.join(sorted(inputs))}}}) != "
                      f"len({{{','.join(sorted(expected))}}}). Sent extra: "
                      f"{{{','.join(extra)}}}. Missing but required: {{{','.join(missing)}}}.")
    for i, (key, value) in enumerate(sorted(inputs.items())):
        want = tf.dtypes.as_dtype(signature_def.inputs[key].dtype)
        got = _dtype_of(value)
        if got is not None and got != want:  # REST decodes JSON to the signature's types
            raise invalid(f"Expects arg[{i}] to be {type_name(want)} but "
                          f"{type_name(got)} is provided")


def _dtype_of(value: np.ndarray):
    if value.dtype.kind in "OSU":
        return tf.string
    try:
        return tf.dtypes.as_dtype(value.dtype)
    except TypeError:
        return None


def _check_output_filter(signature_def, output_filter: List[str]) -> None:
    seen = set()
    for alias in output_filter:
        if alias not in signature_def.outputs:
            raise invalid(f"output tensor alias not found in signature: {alias} "
                          f"Outputs expected to be in the set {{"
                          f"{','.join(sorted(signature_def.outputs))}}}.")
        if alias in seen:
            raise invalid(f"duplicate output tensor alias: {alias}")
        seen.add(alias)


_TRACE_HEADER = re.compile(r"Detected at node .* \(most recent call last\):")
_OP_SUFFIX = re.compile(r"\s*\[Op:[^\]]*\]\s*$")


def op_error_text(error: tf.errors.OpError) -> str:
    """The op's own message, as TF Serving returns it ("Name: <unknown>, Feature: v ...
    [[{{node ParseExample/ParseExampleV2}}]]"): without eager's "Graph execution error:"
    header, the Python stack traces of where nodes were defined and the function name."""
    lines = error.message.strip().splitlines()
    if lines and lines[0].strip() == "Graph execution error:":
        lines = lines[1:]
    kept, in_trace = [], False
    for line in lines:
        if _TRACE_HEADER.fullmatch(line.strip()):
            in_trace = True
            continue
        if in_trace and (line.startswith(" ") or line.startswith("Node: ") or
                         line.strip() == "<stack traces unavailable>"):
            continue
        in_trace = False
        if line.strip():
            kept.append(line)
    return _OP_SUFFIX.sub("", "\n".join(kept)) or first_line(error)


def first_line(error: Exception) -> str:
    message = getattr(error, "message", None) or str(error)
    return message.strip().splitlines()[0] if message.strip() else type(error).__name__


def input_examples(model_input) -> List[tf.train.Example]:
    """The examples of a Classify/Regress ``tensorflow.serving.Input`` (gRPC requests and
    warmup records), each ``example_list_with_context`` example merged into its context."""
    kind = model_input.WhichOneof("kind")
    if kind == "example_list":
        return list(model_input.example_list.examples)
    examples = []
    if kind == "example_list_with_context":
        context = model_input.example_list_with_context.context
        for example in model_input.example_list_with_context.examples:
            full = tf.train.Example()
            full.CopyFrom(context)
            full.MergeFrom(example)
            examples.append(full)
    return examples


def _array(value) -> np.ndarray:
    """A tensor's value as an array: TensorFlow gives a scalar string as ``bytes``."""
    return np.array(value, dtype=object) if isinstance(value, bytes) else np.asarray(value)
