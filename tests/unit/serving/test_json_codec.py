"""TF Serving's REST JSON where callers leave the happy path (serving/json_codec.py);
the server around it: tests/serving/test_compat.py."""
import grpc
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2

from serving import json_codec
from serving.errors import ServingError


def _signature(**inputs) -> meta_graph_pb2.SignatureDef:
    signature = meta_graph_pb2.SignatureDef()
    for name, dtype in inputs.items():
        signature.inputs[name].dtype = dtype.as_datatype_enum
    return signature


@pytest.mark.parametrize("number", ["1e400", "-1e400", "1.5e309", "1234567890e300",
                                    "9" * 320 + ".5", "1E+400"])
def test_numbers_too_big_for_a_double_are_refused_as_rapidjson_refuses_them(number):
    """Python's parser made them +-Infinity and the model ran on it (200); TF Serving's
    rapidjson answers 400 (kParseErrorNumberTooBig). NaN and Infinity written as such
    stay values."""
    for body in (f'{{"inputs": [{number}, 1]}}', f'{{"examples": [{{"f": {number}}}]}}'):
        for strict in (False, True):
            with pytest.raises(ServingError) as error:
                json_codec.parse_body(body.encode(), strict=strict)
            assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
            assert "Number too big to be stored in double" in error.value.message
    assert json_codec.parse_body(b'{"inputs": [1e308, 2.5e-400, NaN, -Infinity]}')[
        "inputs"][:2] == [1e308, 0.0]


def _refusal(call) -> str:
    with pytest.raises(ServingError) as error:
        call()
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
    return error.value.message


def test_a_refusal_quotes_at_most_256_bytes_of_the_request_as_tf_serving():
    """A 500 KB value was quoted whole in the error body (json_tensor.cc's
    JsonValueToDebugString stops at kMaxJsonDebugStringBytes, 256)."""
    big = ["personal text " * 8] * 5000
    signature = _signature(x=tf.float32, s=tf.string)
    messages = [
        _refusal(lambda: json_codec.decode_predict(
            {"instances": [{"x": 1.0, "s": "a", "z": big}]}, signature)),
        _refusal(lambda: json_codec.decode_predict(
            {"inputs": {"x": [1.0], "s": [{"text": big}]}}, signature)),
        _refusal(lambda: json_codec.decode_predict(
            {"inputs": {"x": [big[0]], "s": ["a"]}}, signature)),
    ]
    for message in messages:
        assert len(message.encode()) < 700, message[:100]
        assert "personal text" in message  # the start of the value is still shown


def test_the_context_is_converted_once_and_checked_as_tf_serving():
    """TF Serving reads ``context`` once (MakeExampleFromJsonObject): a bad context value
    is refused even where every example has its own; here it was converted again for
    each example (1.1 s for a 10,000-value context and 200 examples) and never checked
    when overridden. Example values still win over the context's."""
    message = _refusal(lambda: json_codec.decode_examples(
        {"context": {"f": None}, "examples": [{"f": 1.0}]}))
    assert "context" in message and "'f'" in message
    serialized = json_codec.decode_examples(
        {"context": {"f": [0.5] * 3, "g": "x"}, "examples": [{"g": "y"}, {}]})
    examples = [tf.train.Example.FromString(s).features.feature for s in serialized]
    assert [list(e["f"].float_list.value) for e in examples] == [[0.5] * 3] * 2
    assert [list(e["g"].bytes_list.value) for e in examples] == [[b"y"], [b"x"]]

    calls = []
    original = json_codec._feature
    try:
        json_codec._feature = lambda *args: calls.append(args) or original(*args)
        json_codec.decode_examples({"context": {"f": [0.5] * 10_000},
                                    "examples": [{"n": i} for i in range(200)]})
    finally:
        json_codec._feature = original
    assert len(calls) == 1 + 200

