"""Refused requests answer TF Serving's INVALID_ARGUMENT with its message: the model op's
own error text, a wrong tensor type, a repeated output alias. Real server, real sockets."""
import grpc
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_service_pb2_grpc

from serving.process import ServerProcess

PARSE_NODE = "[[{{node ParseExample/ParseExampleV2}}]]"
MISSING_X = "Name: <unknown>, Feature: x (data type: float) is required but could not be found."


@pytest.fixture(scope="module")
def server(half_base):
    with ServerProcess(["--model_name", "half", "--model_base_path", half_base]) as running:
        yield running


@pytest.fixture(scope="module")
def stub(server):
    return prediction_service_pb2_grpc.PredictionServiceStub(
        grpc.insecure_channel(server.grpc_address))


def grpc_predict(stub, signature: str, inputs: dict, output_filter=()):
    request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(
        name="half", signature_name=signature), output_filter=list(output_filter))
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    return stub.Predict(request, timeout=60)


def refused(call) -> str:
    """The INVALID_ARGUMENT message of a gRPC call that must fail."""
    with pytest.raises(grpc.RpcError) as error:
        call()
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, error.value.details()
    return error.value.details()


def assert_op_text(message: str, expected: str) -> None:
    assert expected in message and PARSE_NODE in message, message
    for python_side in ("Graph execution error", "Detected at node", "[Op:", "File \""):
        assert python_side not in message, message


def test_model_errors_carry_the_op_message(server, stub):
    response = requests.post(f"{server.rest_url}/v1/models/half:predict", timeout=60,
                             json={"signature_name": "classify",
                                   "instances": ["not an example"]})
    assert response.status_code == 400
    assert_op_text(response.json()["error"],
                   "Could not parse example input, value: 'not an example'")

    # b"junk" decodes as an Example (unknown fields are skipped) that lacks x.
    message = refused(lambda: grpc_predict(stub, "classify", {"inputs": [b"junk"]}))
    assert_op_text(message, MISSING_X)

    response = requests.post(f"{server.rest_url}/v1/models/half:regress", timeout=60,
                             json={"signature_name": "regress", "examples": [{"y": 1.0}]})
    assert response.status_code == 400
    assert_op_text(response.json()["error"], MISSING_X)


def test_a_double_tensor_for_a_float_input_is_refused_over_grpc_only(server, stub):
    message = refused(lambda: grpc_predict(stub, "", {"x": tf.constant([1.0], tf.float64)}))
    assert message == "Expects arg[0] to be float but double is provided"
    # JSON numbers are converted to the signature's type: REST keeps working.
    response = requests.post(f"{server.rest_url}/v1/models/half:predict", timeout=60,
                             json={"instances": [1.0, 3]})
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": [2.5, 3.5]}
    answer = grpc_predict(stub, "", {"x": tf.constant([1.0], tf.float32)})
    assert tf.make_ndarray(answer.outputs["y"]).tolist() == [2.5]


def test_a_repeated_output_alias_is_refused(stub):
    inputs = {"a": tf.constant([1.0]), "b": tf.constant([[1, 2]], tf.int64)}
    message = refused(lambda: grpc_predict(stub, "two_inputs", inputs, ["sum", "sum"]))
    assert message == "duplicate output tensor alias: sum"
    message = refused(lambda: grpc_predict(stub, "two_inputs", inputs, ["sum", "nope"]))
    assert message.startswith("output tensor alias not found in signature: nope")
    answer = grpc_predict(stub, "two_inputs", inputs, ["echo_bytes", "sum"])
    assert sorted(answer.outputs) == ["echo_bytes", "sum"]
