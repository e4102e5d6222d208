"""TF Serving's REST JSON: request bodies to numpy inputs, outputs to JSON bodies.

Tested with a model server: tests/serving/test_compat.py, tests/serving/test_server.py.

Row format (``instances`` -> ``predictions``) and columnar format (``inputs`` ->
``outputs``); binary strings travel as ``{"b64": "..."}``; string outputs whose
name ends in ``_bytes`` are written base64-encoded, as TF Serving does.
"""
from __future__ import annotations

import base64
import binascii
import json
import math
import re
from typing import Any, Dict, List, Tuple

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2

from serving.errors import ServingError, invalid

Tensors = Dict[str, np.ndarray]
_INT64_MIN, _INT64_MAX, _UINT64_MAX = -2**63, 2**63 - 1, 2**64 - 1
# What TF Serving's JSON reader converts values to (json_tensor.cc AddValueToTensor);
# any other input type (half, bfloat16, uint16, complex) is UNIMPLEMENTED over REST.
_JSON_DTYPES = frozenset((tf.float32, tf.float64, tf.int32, tf.int16, tf.int8, tf.uint8,
                          tf.string, tf.int64, tf.bool, tf.uint32, tf.uint64))


def _double(text: str) -> float:
    """A JSON number with a fraction or an exponent; as rapidjson (kParseErrorNumberTooBig),
    one beyond a double's range is refused, not read as Infinity (which the model ran on)."""
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"Number too big to be stored in double: {text[:40]}")
    return value


_DECODER = json.JSONDecoder()  # C-speed: the body holds no number that could overflow
_CHECKED_DECODER = json.JSONDecoder(parse_float=_double)  # ~1.5x the time for floats
# What a double's overflow needs: an exponent of three digits or more, or 309 digits
_MAY_OVERFLOW = re.compile(r"[eE][+]?[0-9]{3}|[0-9]{309}")
_JSON_SPACE = " \t\n\r"
# How much of a request's value an error message quotes (json_tensor.cc
# kMaxJsonDebugStringBytes): a refused 500 KB value is not sent back whole.
QUOTE_LIMIT = 256
_QUOTER = json.JSONEncoder()


def parse_body(body: bytes, strict: bool = False) -> dict:
    """The request's JSON object. As TF Serving's parser (rapidjson, kParseStopWhenDone),
    what follows the first value is ignored, unless ``strict`` (this server's own
    endpoints)."""
    try:
        text = body.decode("utf-8").removeprefix("\ufeff")  # rapidjson's stream skips a BOM
        decoder = _CHECKED_DECODER if _MAY_OVERFLOW.search(text) else _DECODER
        parsed = (decoder.decode(text) if strict
                  else decoder.raw_decode(text.lstrip(_JSON_SPACE))[0])
    except (UnicodeDecodeError, ValueError) as error:  # ValueError: an int of > 4300 digits
        raise invalid(f"JSON Parse error: {error}") from None
    except RecursionError:
        raise invalid("JSON Parse error: the document is nested too deeply") from None
    if not isinstance(parsed, dict):
        raise invalid("JSON Parse error: the request body must be a JSON object")
    return parsed


# -- requests -----------------------------------------------------------------------------
def decode_predict(body: dict, signature_def) -> Tuple[Tensors, bool]:
    """``(inputs, row_format)`` of a ``:predict`` body for ``signature_def``."""
    if ("instances" in body) == ("inputs" in body):
        raise invalid("Missing 'inputs' or 'instances' key" if "instances" not in body else
                      "Not formatted correctly expecting only one of 'inputs' or "
                      "'instances' keys to exist")
    names = sorted(signature_def.inputs)
    dtypes = {k: tf.dtypes.as_dtype(signature_def.inputs[k].dtype) for k in names}
    if "instances" in body:
        instances = body["instances"]
        if not isinstance(instances, list):
            raise invalid("Excepting 'instances' to be an list/array")
        if not instances:
            raise invalid("No values in 'instances' array")
        columns: Dict[str, List[Any]] = {k: [] for k in names}
        objects = _is_object(instances[0])  # as TF Serving: the first sets the form
        for i, instance in enumerate(instances):
            if objects != _is_object(instance):
                raise invalid(f"Expecting object but got list at item {i} of input list"
                              if objects else f"Expecting value/list but got object at "
                                              f"item {i} of input list")
            if objects:
                missing = [k for k in names if k not in instance]
                extra = sorted(set(instance) - set(names))
                if missing or extra:
                    raise invalid(f"Failed to process element: {i} of 'instances' list. "
                                  f"JSON object: {quoted(instance)} must only have keys: "
                                  f"{','.join(names)}")
                values = instance
            elif len(names) == 1:
                values = {names[0]: instance}
            else:
                raise invalid("instances is a plain list, but expecting list of objects as "
                              "multiple input tensors required as per tensorinfo_map")
            for k in names:
                columns[k].append(values[k])
        return {k: _column(columns[k], dtypes[k], k) for k in names}, True
    inputs = body["inputs"]
    if _is_object(inputs):
        missing = sorted(set(names) - set(inputs))
        if missing:
            raise invalid(f"Missing named input: {missing[0]} in 'inputs' object.")
        return {k: to_array(inputs[k], dtypes[k], k) for k in names}, False
    if len(names) != 1:
        raise invalid("inputs is a plain value/list, but expecting an object as multiple "
                      "input tensors required as per tensorinfo_map")
    return {names[0]: to_array(inputs, dtypes[names[0]], names[0])}, False


def quoted(value: Any) -> str:
    """``value`` as JSON for an error message, cut after ``QUOTE_LIMIT`` characters."""
    text = ""
    for chunk in _QUOTER.iterencode(value):
        text += chunk
        if len(text) > QUOTE_LIMIT:
            return text[:QUOTE_LIMIT] + "..."
    return text


def _is_object(value: Any) -> bool:
    return isinstance(value, dict) and not _is_b64(value)


def to_array(value: Any, dtype: tf.DType, name: str) -> np.ndarray:
    """A (nested) JSON value as a numpy array of ``dtype``; wrong leaf types are named."""
    fast = _numeric_array(value, dtype, name)
    if fast is not None:
        return fast
    return _stack(_convert(value, dtype, name), dtype, name)


def _column(rows: List[Any], dtype: tf.DType, name: str) -> np.ndarray:
    """One input of the ``instances`` rows; a bad row is named by its index."""
    fast = _numeric_array(rows, dtype, name)
    if fast is not None:
        return fast
    leaves = []
    for i, row in enumerate(rows):
        try:
            leaves.append(_convert(row, dtype, name))
        except ServingError as error:
            raise invalid(f"Failed to process element: {i} of 'instances' list. "
                          f"Error: {error.code.name}: {error.message}") from None
    return _stack(leaves, dtype, name)


def _numeric_array(value: Any, dtype: tf.DType, name: str):
    """Numbers (or booleans) of the right kind converted by numpy at C speed; None when
    the value needs the leaf-by-leaf path (strings, mixed kinds, ragged, huge integers),
    which also names what is wrong."""
    if dtype == tf.string or dtype not in _JSON_DTYPES or not isinstance(value, list):
        return None
    try:
        if dtype != tf.bool and _has_bool(value):
            return None  # numpy would read true as 1: the leaf-by-leaf path refuses it
        array = np.asarray(value)
    except (ValueError, OverflowError, RecursionError):
        return None
    kind = array.dtype.kind
    if not ((dtype == tf.bool and kind == "b") or (dtype.is_floating and kind in "if")
            or (dtype.is_integer and kind == "i")):
        return None
    if kind == "i" and dtype.is_integer and array.size:
        low, high = dtype.min, dtype.max
        if array.min() < low or array.max() > high:
            raise invalid(f"input '{name}': a value is out of range for "
                          f"{type_name(dtype)} [{low}, {high}]")
    return array.astype(dtype.as_numpy_dtype, copy=False)


def _has_bool(value: list) -> bool:
    """Whether a (nested) list holds a JSON true or false (C-speed over each list)."""
    kinds = set(map(type, value))
    return bool in kinds or (list in kinds and any(
        _has_bool(item) for item in value if isinstance(item, list)))


def _convert(value: Any, dtype: tf.DType, name: str):
    try:
        return _map_leaves(value, lambda leaf: _leaf(leaf, dtype, name))
    except RecursionError:
        raise invalid(f"input '{name}': nested too deeply") from None


def _stack(leaves, dtype: tf.DType, name: str) -> np.ndarray:
    try:
        if dtype == tf.string:
            array = np.array(leaves, dtype=object)
            if array.dtype != object or any(not isinstance(x, bytes) for x in array.flat):
                raise ValueError
            return array
        return np.array(leaves, dtype=dtype.as_numpy_dtype)
    except OverflowError:
        raise invalid(f"input '{name}': a number is out of range for "
                      f"{type_name(dtype)}") from None
    except (ValueError, RecursionError):
        raise invalid(f"Encountered list at unexpected size for input '{name}': every "
                      "row must have the same shape") from None


def _leaf(leaf: Any, dtype: tf.DType, name: str):
    if dtype not in _JSON_DTYPES:
        raise ServingError(grpc.StatusCode.UNIMPLEMENTED, f"Conversion of JSON Value: "
                                                          f"{quoted(leaf)} to type: "
                                                          f"{type_name(dtype)}")
    if dtype == tf.string:
        if isinstance(leaf, str):
            try:
                return leaf.encode("utf-8")
            except UnicodeEncodeError:  # a lone UTF-16 surrogate ("\ud800")
                raise invalid(f"input '{name}': string is not valid Unicode (a lone "
                              "UTF-16 surrogate)") from None
        if _is_b64(leaf):
            return _b64decode(leaf["b64"], name)
    elif dtype == tf.bool:
        if isinstance(leaf, bool):
            return leaf
    elif isinstance(leaf, int) and not isinstance(leaf, bool):
        if dtype.is_integer and not dtype.min <= leaf <= dtype.max or \
                dtype.is_floating and abs(leaf) > np.finfo(dtype.as_numpy_dtype).max:
            raise invalid(f"JSON Value: an integer of {leaf.bit_length()} bits is out of "
                          f"range for {type_name(dtype)}")
        return leaf
    elif isinstance(leaf, float) and dtype.is_floating:
        return leaf  # bare NaN and Infinity included; TF Serving refuses them as strings
    raise invalid(f"JSON Value: {quoted(leaf)} Type: {_json_type(leaf)} is not of "
                  f"expected type: {type_name(dtype)}")


def _b64decode(text: Any, name: str) -> bytes:
    """As TF Serving (absl::Base64Unescape): whitespace is skipped, and the padding may be
    left out (or written with '.')."""
    try:
        if not isinstance(text, str):
            raise TypeError
        text = re.sub(r"[ \t\n\r\f\v]", "", text)
        bare = text.rstrip("=.")
        padded = len(text) > len(bare)
        if len(bare) % 4 == 1 or padded and (len(text) % 4 or len(text) - len(bare) > 2):
            raise ValueError  # padding, if any, completes the last group of four
        return base64.b64decode(bare + "=" * (-len(bare) % 4), validate=True)
    except (ValueError, TypeError, binascii.Error):
        raise invalid(f"Unable to base64 decode (input '{name}')") from None


def type_name(dtype: tf.DType) -> str:
    """TF's DataTypeString: DT_FLOAT -> 'float', DT_INT64 -> 'int64'."""
    return types_pb2.DataType.Name(dtype.as_datatype_enum)[3:].lower()


def decode_examples(body: dict) -> List[bytes]:
    """``:classify`` / ``:regress`` bodies: ``examples`` (+ ``context``) as tf.Examples."""
    examples = body.get("examples")
    if examples is None:
        raise invalid("key 'examples' is expected and was not found")
    if not isinstance(examples, list):
        raise invalid("Expecting 'examples' value to be an list/array")
    if not examples:
        raise invalid("'examples' value is an empty array")
    context = body.get("context", {})
    if not isinstance(context, dict):
        raise invalid("'context' must be a JSON object")
    serialized = []
    _check_names(context, "context")
    # read once, as TF Serving: every value checked, even one each example replaces
    shared = {key: _feature(value, "context", key) for key, value in context.items()}
    for i, example in enumerate(examples):
        if not isinstance(example, dict):
            raise invalid(f"example {i} is not a JSON object")
        _check_names(example, f"example {i}")
        feature = {**shared, **{key: _feature(value, f"example {i}", key)
                                for key, value in example.items()}}
        serialized.append(tf.train.Example(
            features=tf.train.Features(feature=feature)).SerializeToString())
    return serialized


def _check_names(features: dict, where: str) -> None:
    """Feature names protobuf can store: a lone UTF-16 surrogate ("\\ud800") is refused,
    as rapidjson refuses it while parsing (it was a 500 here)."""
    for key in features:
        try:
            key.encode("utf-8")
        except UnicodeEncodeError:
            raise invalid(f"JSON Parse error: The surrogate pair in string is invalid "
                          f"({where}, a feature name)") from None


def _feature(value: Any, place: str, key: str) -> tf.train.Feature:
    """As TF Serving: the first value sets the feature's kind (bytes, int64, float) and
    every other value must be of it; booleans are int64 1/0, integers beyond uint64 (or
    below int64) are floats, integers in uint64 but not int64 are refused. ``place``:
    "context" or "example N", for the messages."""
    where = f"{place}, feature '{key}'"
    items, kind = [], None
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, str) or _is_b64(item):
            item, item_kind = _leaf(item, tf.string, where), "bytes"
        else:
            item = _feature_number(item, where, key)
            item_kind = "int64" if isinstance(item, int) else "float"
        if kind not in (None, item_kind):
            raise invalid(f"{where}: Unexpected element type in feature: {key} expecting "
                          f"type: {kind}")
        items.append(item)
        kind = item_kind
    if kind is None:  # [] : a feature of no kind, which parses as empty (as TF Serving)
        return tf.train.Feature()
    if kind == "int64":
        return tf.train.Feature(int64_list=tf.train.Int64List(value=items))
    if kind == "float":
        return tf.train.Feature(float_list=tf.train.FloatList(value=items))
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=items))


def _feature_number(value: Any, where: str, key: str):
    """An int64 (as int) or a float (as float) of a feature, or a clear error."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        if _INT64_MIN <= value <= _INT64_MAX:
            return value
        if 0 < value <= _UINT64_MAX:
            raise invalid(f"{where}: Feature: {key} has uint64_t element. Only int64_t "
                          "is supported.")
        try:
            return float(value)  # as JSON parsers read numbers beyond 64 bits: a double
        except OverflowError:
            raise invalid(f"{where}: the number is too big for a double") from None
    if isinstance(value, float):
        return value
    raise invalid(f"{where}: values must be all strings, all integers or all numbers")


# -- responses ----------------------------------------------------------------------------
def encode_predict(outputs: Tensors, row_format: bool) -> dict:
    names = sorted(outputs)
    if not row_format:
        columns = {k: _json_value(outputs[k], k) for k in names}
        return {"outputs": columns[names[0]] if len(names) == 1 else columns}
    sizes = {len(outputs[k]) if outputs[k].ndim else -1 for k in names}
    if len(sizes) != 1 or -1 in sizes:
        raise invalid("Tensor name: outputs have different or no batch sizes; "
                      "use the columnar format ('inputs')")
    if len(names) == 1:
        return {"predictions": _json_value(outputs[names[0]], names[0])}
    columns = {k: _json_value(outputs[k], k) for k in names}
    return {"predictions": [{k: columns[k][i] for k in names} for i in range(sizes.pop())]}


def _json_value(array: np.ndarray, name: str):
    if array.dtype.kind in "OSU":
        as_b64 = name.endswith("_bytes")
        return _map_leaves(array.tolist(), lambda b: _string_out(b, as_b64))
    if array.dtype.kind == "f" and array.dtype.itemsize <= 4:
        return float32_values(array)
    if array.dtype.kind == "c":  # TF Serving's AddSingleValueAndAdvance writes no complex
        raise invalid(f"Failed to write JSON value for tensor type: "
                      f"{tf.dtypes.as_dtype(array.dtype).name}")
    return array.tolist()  # doubles: Python's repr round-trips them, as TF Serving's text


def _string_out(value, as_b64: bool):
    if isinstance(value, str):
        value = value.encode("utf-8")
    if as_b64:
        return {"b64": base64.b64encode(value).decode("ascii")}
    return value.decode("utf-8", errors="replace")


def float32_values(values) -> Any:
    """float32 values as the Python floats whose JSON text is the number TF Serving
    writes (json_tensor.cc WriteDecimal): 6 significant digits when they round-trip the
    float32, else 9; so 0.2 and not 0.20000000298023224. NaN and Infinity stay floats,
    which json.dumps writes bare, as TF Serving does. Nested lists keep their shape."""
    array = np.asarray(values, dtype=np.float32)
    flat = array.ravel()
    six = np.array([float(f"{v:.6g}") for v in flat.tolist()], dtype=np.float64)
    with np.errstate(over="ignore"):
        redo = np.flatnonzero((six.astype(np.float32) != flat) & np.isfinite(flat))
    for i in redo.tolist():
        six[i] = float(f"{float(flat[i]):.9g}")
    return six.reshape(array.shape).tolist()


def encode_classify(rows) -> dict:
    """``:classify`` results: per example, ``[label, score]`` pairs."""
    return {"results": [[[label, score] for (label, _), score in
                         zip(row, float32_values([s for _, s in row]))] for row in rows]}


def encode_regress(values) -> dict:
    return {"results": float32_values(values)}


def _map_leaves(value: Any, fn):
    if isinstance(value, list):
        return [_map_leaves(v, fn) for v in value]
    return fn(value)


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"b64"}


def _json_type(value: Any) -> str:
    """rapidjson's name of the value's type, as TF Serving's messages give it."""
    if isinstance(value, bool):
        return "True" if value else "False"
    return {str: "String", int: "Number", float: "Number", dict: "Object",
            list: "Array", type(None): "Null"}[type(value)]
