"""The local server answers as TensorFlow Serving 2.x does where an acceptance run against
TF Serving found it different: CORS, gzip bodies, large gRPC answers, example features
(big integers, booleans), float text, version labels in status, paths and Etags. Real
server processes on real sockets, small SavedModels that are not this project's."""
import gzip
import http.client
import json
import math

import numpy as np
import pytest
import requests
import tensorflow as tf

from models.export import set_method_name
from serving.client import GrpcClient, RestClient, ServingClientError, Target
from serving.process import ServerProcess
from tests.support.process_memory import memory_bytes
from tests.support.serving_models import CLASSIFY, REGRESS, write_model_config

LIMIT = 64 * 1024  # --max_request_bytes of the servers here
TF_SERVING_CORS = {"Access-Control-Allow-Origin": "*",
                   "Access-Control-Allow-Methods": "POST, GET",
                   "Access-Control-Allow-Headers": "Content-Type"}


class Compat(tf.Module):
    """An answer far larger than its request, and a regression on an int64 feature."""

    @tf.function(input_signature=[tf.TensorSpec([1], tf.int32, name="n")])
    def zeros(self, n):
        return {"zeros": tf.zeros(tf.concat([[1], n], 0))}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def regress(self, inputs):
        n = tf.io.parse_example(inputs, {"n": tf.io.FixedLenFeature([], tf.int64)})["n"]
        return {"outputs": tf.cast(n, tf.float32)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def wide(self, inputs):
        """A regression output of three columns: not TF Serving's shape."""
        return {"outputs": tf.ones([tf.shape(inputs)[0], 3])}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def flat_scores(self, inputs):
        """Classification scores of rank 1: not TF Serving's shape."""
        return {"scores": tf.ones(tf.shape(inputs))}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float16, name="h")])
    def halves(self, h):
        """A float16 input: TF Serving's JSON reader has no conversion to it."""
        return {"doubled": h * 2}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int8, name="b")])
    def bytes_in(self, b):
        return {"b": b}

    @tf.function(input_signature=[tf.TensorSpec([], tf.string, name="s")])
    def echo(self, s):
        return {"y": s, "n": tf.strings.length(s)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def complex_out(self, x):
        """An output JSON cannot carry: TF Serving answers 400 naming its type."""
        return {"z": tf.complex(x, x)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def raw_classes(self, inputs):
        """Class names that are not UTF-8: TF Serving copies the bytes."""
        n = tf.shape(inputs)[0]
        return {"classes": tf.fill([n, 1], tf.constant(b"\xff\xfeok")),
                "scores": tf.ones([n, 1])}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def count(self, inputs):
        """Regress on a list feature that may be empty: how many values it has."""
        v = tf.io.parse_example(inputs, {"v": tf.io.VarLenFeature(tf.float32)})["v"]
        return {"outputs": tf.math.bincount(tf.cast(v.indices[:, 0], tf.int32),
                                            minlength=tf.shape(inputs)[0], dtype=tf.float32)}


@pytest.fixture(scope="module")
def compat_base(tmp_path_factory):
    base = tmp_path_factory.mktemp("compat") / "compat"
    module, path = Compat(), str(base / "1")
    tf.saved_model.save(module, path, signatures={
        "serving_default": module.zeros.get_concrete_function(),
        "regress": module.regress.get_concrete_function(),
        "echo": module.echo.get_concrete_function(),
        "halves": module.halves.get_concrete_function(),
        "bytes_in": module.bytes_in.get_concrete_function(),
        "count": module.count.get_concrete_function(),
        "wide": module.wide.get_concrete_function(),
        "complex_out": module.complex_out.get_concrete_function(),
        "raw_classes": module.raw_classes.get_concrete_function(),
        "flat_scores": module.flat_scores.get_concrete_function()})
    for signature in ("regress", "count", "wide"):
        set_method_name(path, signature, REGRESS)
    for signature in ("flat_scores", "raw_classes"):
        set_method_name(path, signature, CLASSIFY)
    return str(base)


@pytest.fixture(scope="module")
def server(half_base, compat_base, tmp_path_factory):
    """Both models, CORS on, requests limited to 64 KiB."""
    config = write_model_config(tmp_path_factory.mktemp("config") / "models.config",
                                {"half": half_base, "compat": compat_base})
    with ServerProcess(["--model_config_file", config, "--rest_api_enable_cors_support",
                        "--max_request_bytes", str(LIMIT)]) as running:
        yield running


def _cors(response) -> dict:
    return {k: v for k, v in response.headers.items() if k.startswith("Access-Control-")}


def test_cors_headers_on_every_answer_and_preflights(server, compat_base):
    url = f"{server.rest_url}/v1/models"
    origin = {"Origin": "http://a.com"}
    answers = {
        "status": requests.get(f"{url}/half", headers=origin),
        "classify": requests.post(f"{url}/half:classify", headers=origin, json={
            "signature_name": "classify", "examples": [{"x": 1.0}]}),
        "unknown model": requests.post(f"{url}/nope:predict", headers=origin, data="{}"),
        "outside /v1": requests.get(f"{server.rest_url}/nope", headers=origin),
        "preflight": requests.options(f"{url}/half:classify", headers={
            **origin, "Access-Control-Request-Method": "POST"}),
        "OPTIONS without Origin": requests.options(f"{url}/half:classify"),
    }
    assert {k: r.status_code for k, r in answers.items()} == {
        "status": 200, "classify": 200, "unknown model": 404, "outside /v1": 404,
        "preflight": 200, "OPTIONS without Origin": 400}
    for name, response in answers.items():
        assert _cors(response) == TF_SERVING_CORS, name
    assert "Origin header is missing" in answers["OPTIONS without Origin"].json()["error"]

    # CORS off: no CORS headers, but a preflight with an Origin still answers 200.
    with ServerProcess(["--model_name", "compat", "--model_base_path", compat_base]) as plain:
        model = f"{plain.rest_url}/v1/models/compat"
        for response in (requests.get(model, headers=origin),
                         requests.options(model, headers={"Origin": "https://b.org"})):
            assert response.status_code == 200 and not _cors(response)
        assert requests.options(model).status_code == 400


def test_grpc_answers_past_the_request_limit_are_sent(server):
    """--max_request_bytes bounds requests; answers may be larger (TF Serving: INT32_MAX)."""
    zeros = GrpcClient(server.grpc_address, Target("compat")).predict(
        {"n": np.array([200_000], np.int32)})["zeros"]  # 800 KB answer, a 64 KiB limit
    assert zeros.shape == (1, 200_000) and not zeros.any()
    with pytest.raises(ServingClientError, match="RESOURCE_EXHAUSTED"):
        GrpcClient(server.grpc_address, Target("half")).predict(
            {"x": np.zeros(LIMIT // 4 + 1, np.float32)})


def test_gzip_bodies_are_inflated_and_held_to_the_limit(server):
    url = f"{server.rest_url}/v1/models/half:predict"
    gzipped = {"Content-Encoding": "gzip"}
    answer = requests.post(url, headers=gzipped, data=gzip.compress(
        json.dumps({"instances": [1.0, 2.0]}).encode()))
    assert answer.status_code == 200 and answer.json() == {"predictions": [2.5, 3.0]}

    # A gzip bomb: 50 KB on the wire, 50 MiB inflated.
    bomb = gzip.compress(b'{"instances": [1.0]' + b" " * 50 * 2**20 + b"}", 9)
    assert len(bomb) < LIMIT
    before = memory_bytes(server.process.pid)[0]
    refused = requests.post(url, headers=gzipped, data=bomb)
    assert refused.status_code == 413
    assert f"larger than {LIMIT} bytes" in refused.json()["error"]
    assert memory_bytes(server.process.pid)[0] - before < 16 * 2**20  # never held inflated
    body = gzip.compress(b'{"instances": [2.0]}')
    for broken, message in ((b"not gzip", "gzip body: Error -3"),
                            (body[:-6], "gzip body is truncated")):
        answer = requests.post(url, headers=gzipped, data=broken)
        assert answer.status_code == 400 and message in answer.json()["error"]
    assert requests.post(url, json={"instances": [2.0]}).json() == {"predictions": [3.0]}


@pytest.mark.parametrize("chunks", [[b" " * 8192] * 16, [b" " * 2 * LIMIT]],
                         ids=["many chunks", "one huge chunk"])
def test_a_chunked_body_over_the_limit_gets_a_413_json_error(server, chunks):
    """As a body with a Content-Length over the limit (tornado's own check answered a
    bare 400 with no body)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=60)
    connection.putrequest("POST", "/v1/models/half:predict")
    connection.putheader("Transfer-Encoding", "chunked")
    connection.endheaders()
    try:
        for chunk in [b'{"instances": [1.0]', *chunks, b"}"]:
            connection.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        connection.send(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server answered and closed before the whole body was sent
    response = connection.getresponse()
    assert response.status == 413
    assert f"larger than {LIMIT} bytes" in json.loads(response.read())["error"]
    connection.close()
    assert requests.post(f"{server.rest_url}/v1/models/half:predict",
                         json={"instances": [2.0]}).json() == {"predictions": [3.0]}


def test_example_features_take_big_integers_and_booleans_as_tf_serving(server):
    url = f"{server.rest_url}/v1/models"

    def regress(model, examples, verb="regress"):
        return requests.post(f"{url}/{model}:{verb}", json={
            "signature_name": verb, "examples": examples})

    # Beyond int64 and uint64: a float feature (here unused by the model).
    for n in (99999999999999999999, -9223372036854775809):
        answer = regress("half", [{"x": 1.0, "n": n}])
        assert answer.status_code == 200 and answer.json() == {"results": [2.5]}, n
    # In uint64 but not int64: refused, with TF Serving's message.
    for n, verb in ((9223372036854775808, "regress"), (2**64 - 1, "classify")):
        refused = regress("half", [{"x": 1.0, "n": n}], verb)
        assert refused.status_code == 400
        assert "Feature: n has uint64_t element. Only int64_t is supported." in \
            refused.json()["error"]
    # Booleans are int64 1 and 0.
    answer = regress("compat", [{"n": True}, {"n": False}, {"n": -7}])
    assert answer.status_code == 200 and answer.json() == {"results": [1.0, 0.0, -7.0]}
    # The first value sets the feature's kind: no mixing ints, floats and strings.
    for mixed, kind in (([1, 2.5], "int64"), ([2.5, 1], "float"), (["a", 1], "bytes")):
        refused = regress("half", [{"x": 1.0, "n": mixed}])
        assert refused.status_code == 400, mixed
        assert f"Unexpected element type in feature: n expecting type: {kind}" in \
            refused.json()["error"]


def test_floats_are_written_as_tf_serving_writes_them(server):
    """float32 as its short text (2.2, not 2.200000047683716); NaN and Infinity bare in
    every answer; strings are not numbers in requests."""
    url = f"{server.rest_url}/v1/models/half"
    predicted = requests.post(f"{url}:predict", data='{"instances": [0.4, NaN, Infinity]}')
    assert predicted.text == '{"predictions": [2.2, NaN, Infinity]}'
    regressed = requests.post(f"{url}:regress", data='{"signature_name": "regress", '
                              '"examples": [{"x": 0.4}, {"x": NaN}]}')
    assert regressed.text == '{"results": [2.2, NaN]}'
    classified = requests.post(f"{url}:classify", json={"signature_name": "classify",
                                                        "examples": [{"x": 0.4}]})
    assert classified.text == '{"results": [[["high", 2.2], ["low", -2.2]]]}'
    refused = requests.post(f"{url}:predict", data='{"instances": ["NaN"]}')
    assert refused.status_code == 400
    assert 'JSON Value: "NaN" Type: String is not of expected type: float' in \
        refused.json()["error"]
    # The project's own client reads these answers.
    y = RestClient(server.rest_url, Target("half")).predict(
        {"x": np.array([0.4, math.nan])})["output"]
    assert y[0] == pytest.approx(2.2) and math.isnan(y[1])


def test_status_ignores_a_version_label_on_both_transports(server):
    for label in ("nope", "stable"):
        answer = requests.get(f"{server.rest_url}/v1/models/half/labels/{label}")
        assert answer.status_code == 200
        assert [s["version"] for s in answer.json()["model_version_status"]] == ["1"]
        status = GrpcClient(server.grpc_address, Target("half", label=label)).status()
        assert [s["version"] for s in status] == ["1"]


@pytest.mark.parametrize("method,path,status,message", [
    ("GET", "/V1/MODELS/half", 200, None),
    ("POST", "/V1/Models/half/VERSIONS/1:predict", 200, None),
    ("GET", "/v1/models/half/", 400, "Malformed request: GET /v1/models/half/"),
    ("GET", "/v1/models/half/metadata/", 400, "Malformed request"),
    ("GET", "/v1/models/half/versions/-1", 400, "Malformed request"),
    ("POST", "/v1/models/half:PREDICT", 400, "Malformed request"),
    ("GET", "/v1/models/half/versions/99999999999999999999999", 400,
     "Failed to convert version: 99999999999999999999999 to numeric."),
    # More digits than Python's int() converts (4300): the same 400, not a 500.
    ("GET", "/v1/models/half/versions/" + "9" * 5000, 400, "Failed to convert version"),
    ("POST", "/v1/models/half/versions/" + "0" * 5000 + "1:predict", 200, None),
])
def test_paths_are_matched_as_tf_serving_does(server, method, path, status, message):
    response = requests.request(method, server.rest_url + path,
                                data='{"instances": [1.0]}' if method == "POST" else None)
    assert response.status_code == status, response.text
    if message:
        assert message in response.json()["error"]


@pytest.mark.parametrize("method,path,status,message", [
    # TF Serving matches the path and query as sent (net_http's uri_path), then decodes
    # the model name and label (curl_easy_unescape); a POST with a query is malformed.
    ("POST", "/v1/models/half:predict?debug=1", 400,
     "Malformed request: POST /v1/models/half:predict?debug=1"),
    ("GET", "/v1/models/half/metadata?x=1", 400, "Malformed request"),
    ("GET", "/v1/models/half?x=1", 404, None),  # the model "half?x=1"
    ("POST", "/v1/models/half%3Apredict", 400, "Malformed request"),
    ("POST", "/v1/models/h%61lf:predict", 200, None),
    ("POST", "/v1/models/h%61lf/labels/%6eope:predict", 400,
     "Unrecognized servable version label: nope"),
    # The whole regex is case-insensitive there; only "metadata" is the metadata.
    ("GET", "/v1/models/half/METADATA", 200, None),
    ("POST", "/v1/models/half/METADATA:predict", 400, "Malformed request"),
    ("OPTIONS", "/v1/models/half?x=1", 400,
     "Malformed request: OPTIONS /v1/models/half?x=1: Origin header is missing"),
])
def test_raw_paths_and_queries_are_read_as_tf_serving_reads_them(server, method, path,
                                                                  status, message):
    """Sent as is (requests would decode %61 itself)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=60)
    try:
        connection.request(method, path, body='{"instances": [1.0]}' if method == "POST"
                           else None)
        response = connection.getresponse()
        body = json.loads(response.read())
    finally:
        connection.close()
    assert response.status == status, body
    if message:
        assert message in body["error"]
    if path.endswith("/METADATA") and method == "GET":
        assert "model_version_status" in body  # the status


def test_a_raw_utf8_model_name_in_the_path_is_read_as_utf8(server):
    """Sent unencoded (curl sends it so): tornado reads the request line as Latin-1, and
    'hälf' was looked up as 'hÃ¤lf'."""
    import socket
    with socket.create_connection(("127.0.0.1", server.rest_port), timeout=60) as sock:
        sock.sendall(b"GET /v1/models/h\xc3\xa4lf HTTP/1.1\r\nHost: x\r\n"
                     b"Connection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 404")
    assert "hälf" in json.loads(body)["error"]


def test_inputs_tf_servings_json_cannot_convert_are_unimplemented(server):
    """TF Serving's JSON reader converts to float, double, the integers but uint16, bool
    and string only (json_tensor.cc AddValueToTensor): a float16 input is 501 over REST
    (400 in the row format, which wraps it), and is served over gRPC."""
    url = f"{server.rest_url}/v1/models/compat:predict"
    columnar = requests.post(url, json={"signature_name": "halves", "inputs": [1.5, 2.0]})
    assert columnar.status_code == 501
    assert columnar.json()["error"] == "Conversion of JSON Value: 1.5 to type: half"
    rows = requests.post(url, json={"signature_name": "halves", "instances": [1.5]})
    assert rows.status_code == 400
    assert rows.json()["error"] == ("Failed to process element: 0 of 'instances' list. "
                                    "Error: UNIMPLEMENTED: Conversion of JSON Value: 1.5 to "
                                    "type: half")
    with GrpcClient(server.grpc_address, Target("compat")) as client:
        doubled = client.predict({"h": np.array([1.5], np.float16)}, "halves")["doubled"]
    assert doubled.dtype == np.float16 and doubled.tolist() == [3.0]


def test_where_this_server_is_stricter_than_tf_serving_on_purpose(server):
    """An int8 value out of range (TF Serving wraps 300 to 44) and a body that is not
    UTF-8 (TF Serving hands the bytes to the model) are refused, naming why."""
    url = f"{server.rest_url}/v1/models/compat:predict"
    fits = requests.post(url, json={"signature_name": "bytes_in", "inputs": [-128, 127]})
    assert fits.json() == {"outputs": [-128, 127]}
    wraps = requests.post(url, json={"signature_name": "bytes_in", "inputs": [300]})
    assert wraps.status_code == 400
    assert "out of range for int8 [-128, 127]" in wraps.json()["error"]
    latin1 = requests.post(url, data='{"signature_name": "echo", "inputs": "caf\xe9"}'
                           .encode("latin-1"))
    assert latin1.status_code == 400
    assert latin1.json()["error"].startswith("JSON Parse error: 'utf-8' codec can't decode")


def test_the_rest_client_encodes_the_model_name_as_the_server_decodes_it(server):
    """Unencoded, "half#x" asked for the model "half" (the rest, a fragment, is not
    sent), and the label "a/b" made a path of its own."""
    with pytest.raises(ServingClientError, match="half#x"):
        RestClient(server.rest_url, Target("half#x")).status()
    with RestClient(server.rest_url, Target("half", label="a/b")) as client:
        with pytest.raises(ServingClientError, match="Unrecognized servable version label: "
                                                     "a/b"):
            client.predict({"x": np.array([1.0], np.float32)})


def test_no_etag_and_no_304(server):
    url = f"{server.rest_url}/v1/models/half"
    first = requests.get(url)
    assert "Etag" not in first.headers
    again = requests.get(url, headers={"If-None-Match": "*"})
    assert again.status_code == 200 and again.json() == first.json()


def test_instances_are_all_objects_or_all_values_as_the_first(server):
    url = f"{server.rest_url}/v1/models/half:predict"
    for instances, message in (([{"x": 1.0}, 2.0], "Expecting object but got list at item 1"),
                               ([2.0, {"x": 1.0}],
                                "Expecting value/list but got object at item 1")):
        answer = requests.post(url, json={"instances": instances})
        assert answer.status_code == 400 and message in answer.json()["error"], instances
    assert requests.post(url, json={"instances": [{"x": 1.0}, {"x": 2.0}]}).json() == \
        {"predictions": [2.5, 3.0]}


# -- differences a review against TF Serving's source found (stop 35) -----------------------
def test_a_scalar_string_output_is_answered(server):
    """TensorFlow gives a scalar string as bytes: REST answered 500 (AttributeError)."""
    url = f"{server.rest_url}/v1/models/compat:predict"
    for value in ("abc", {"b64": "YWJj"}):
        answer = requests.post(url, json={"signature_name": "echo", "inputs": value})
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"outputs": {"n": 3, "y": "abc"}}


def test_booleans_are_not_numbers_even_among_numbers(server):
    """numpy read [true, 1.0] as [1.0, 1.0]; TF Serving refuses the true."""
    url = f"{server.rest_url}/v1/models/half:predict"
    for instances, first in (([True, 1.0], "true"), ([1.0, [False]], "false")):
        answer = requests.post(url, json={"instances": instances})
        assert answer.status_code == 400, answer.text
        assert f"JSON Value: {first} Type: {first.title()} is not of expected type: float" \
            in answer.json()["error"]


@pytest.mark.parametrize("b64", ["YWI", "YWI=", "YW\nI=", " YWI ", "YWI."])
def test_base64_is_read_as_tf_serving_reads_it(server, b64):
    """absl::Base64Unescape: whitespace skipped, padding optional; this server refused
    unpadded and line-wrapped base64 (Go's RawStdEncoding, MIME encoders)."""
    answer = requests.post(f"{server.rest_url}/v1/models/compat:predict",
                           json={"signature_name": "echo", "inputs": {"b64": b64}})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"outputs": {"n": 2, "y": "ab"}}


@pytest.mark.parametrize("b64", ["Y", "YWI===", "YW!I", "YWJj=="])
def test_broken_base64_is_still_refused(server, b64):
    answer = requests.post(f"{server.rest_url}/v1/models/compat:predict",
                           json={"signature_name": "echo", "inputs": {"b64": b64}})
    assert answer.status_code == 400
    assert answer.json()["error"] == "Unable to base64 decode (input 's')"


def test_an_empty_feature_list_is_an_empty_feature(server):
    """[] became an empty bytes list, which a float feature refused (400)."""
    answer = requests.post(f"{server.rest_url}/v1/models/compat:regress", json={
        "signature_name": "count", "examples": [{"v": []}, {"v": [1.0, 2.0]}]})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"results": [0.0, 2.0]}


def test_classify_and_regress_without_examples_are_refused_over_grpc(server):
    import grpc
    from tensorflow_serving.apis import (classification_pb2, input_pb2, model_pb2,
                                         prediction_service_pb2_grpc, regression_pb2)

    stub = prediction_service_pb2_grpc.PredictionServiceStub(
        grpc.insecure_channel(server.grpc_address))
    empty = input_pb2.Input(example_list=input_pb2.ExampleList())
    for call, request in ((stub.Regress, regression_pb2.RegressionRequest(
            model_spec=model_pb2.ModelSpec(name="half", signature_name="regress"),
            input=empty)), (stub.Classify, classification_pb2.ClassificationRequest(
                model_spec=model_pb2.ModelSpec(name="half", signature_name="classify")))):
        with pytest.raises(grpc.RpcError) as refused:
            call(request, timeout=30)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert refused.value.details() == "Input is empty."
        # after the model is looked up and its signature checked, as TF Serving
        request.model_spec.signature_name = "serving_default"
        with pytest.raises(grpc.RpcError) as refused:
            call(request, timeout=30)
        kind = "regression" if call == stub.Regress else "classification"
        assert refused.value.details().startswith(f"No {kind} inputs found")
        request.model_spec.name = "nope"
        with pytest.raises(grpc.RpcError) as refused:
            call(request, timeout=30)
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_label_of_an_unknown_model_is_an_unknown_label(server):
    answer = requests.post(f"{server.rest_url}/v1/models/nope/labels/stable:predict",
                           json={"instances": [1.0]})
    assert answer.status_code == 400
    assert answer.json()["error"] == "Unrecognized servable version label: stable"


def test_metadata_may_name_signature_def_twice(server):
    import grpc
    from tensorflow_serving.apis import (get_model_metadata_pb2, model_pb2,
                                         prediction_service_pb2_grpc)

    stub = prediction_service_pb2_grpc.PredictionServiceStub(
        grpc.insecure_channel(server.grpc_address))
    answer = stub.GetModelMetadata(get_model_metadata_pb2.GetModelMetadataRequest(
        model_spec=model_pb2.ModelSpec(name="half"),
        metadata_field=["signature_def", "signature_def"]), timeout=30)
    assert list(answer.metadata) == ["signature_def"]
    # "Missing ModelSpec" before the fields are checked, as TF Serving
    with pytest.raises(grpc.RpcError) as refused:
        stub.GetModelMetadata(get_model_metadata_pb2.GetModelMetadataRequest(
            metadata_field=["nope"]), timeout=30)
    assert refused.value.details() == "Missing ModelSpec"


def test_what_follows_the_json_body_is_ignored(server):
    """TF Serving's parser stops after the first value (kParseStopWhenDone)."""
    answer = requests.post(f"{server.rest_url}/v1/models/half:predict",
                           data=' {"instances": [1.0]} trailing')
    assert answer.status_code == 200 and answer.json() == {"predictions": [2.5]}


@pytest.mark.parametrize("model,verb,signature,message", [
    ("compat", "regress", "wide", "Expected output Tensor shape to be either [batch_size] "
                                  "or [batch_size, 1] but got [1,3]"),
    ("half", "regress", "two_inputs", "Expected one input Tensor."),
    ("half", "regress", "classify", "Expected one output Tensor."),
    ("compat", "classify", "flat_scores", "Expected Tensor shape: [batch_size num_classes] "
                                          "but got [1]"),
])
def test_classify_and_regress_answers_are_checked_as_tf_serving(server, model, verb,
                                                                 signature, message):
    """A [batch, 3] regression answered its first column; rank-1 scores a 500."""
    answer = requests.post(f"{server.rest_url}/v1/models/{model}:{verb}", json={
        "signature_name": signature, "examples": [{"n": 1}]})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == message


def test_grpc_predict_outputs_are_in_their_typed_fields(server):
    """TF Serving's Predict writes each output with Tensor::AsProtoField: the common
    client reads ``result.outputs["y"].float_val``, which was empty here (every output of
    more than one value went into tensor_content)."""
    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([1.0, 2.0, 4.0], np.float32)))
    with grpc.insecure_channel(server.grpc_address) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        y = stub.Predict(request, timeout=30).outputs["y"]
        assert list(y.float_val) == [2.5, 3.0, 4.0] and not y.tensor_content
        request = predict_pb2.PredictRequest()
        request.model_spec.name, request.model_spec.signature_name = "compat", "echo"
        request.inputs["s"].CopyFrom(tf.make_tensor_proto("Grüße"))
        echo = stub.Predict(request, timeout=30).outputs
        assert list(echo["y"].string_val) == ["Grüße".encode()]
        assert list(echo["n"].int_val) == [len("Grüße".encode())]


def test_bodies_and_paths_tf_serving_reads_are_not_internal_errors(server):
    """Each was a 500 (or tornado's bare 400) here; TF Serving's answer is named."""
    import grpc
    from tensorflow_serving.apis import classification_pb2, prediction_service_pb2_grpc

    models = f"{server.rest_url}/v1/models"
    # A UTF-8 byte order mark before the JSON (rapidjson's stream skips it): 200
    body = '\ufeff{"instances": [1.0, 2.0]}'.encode()
    answer = requests.post(f"{models}/half:predict", data=body)
    assert answer.status_code == 200 and answer.json() == {"predictions": [2.5, 3.0]}
    # A lone surrogate as a feature or context name: rapidjson refuses it while parsing
    for body in ('{"examples": [{"\\ud800": 1}]}', '{"context": {"\\udc00": 1}, '
                 '"examples": [{"n": 1}]}'):
        answer = requests.post(f"{models}/compat:regress", data=body)
        assert answer.status_code == 400 and "surrogate" in answer.json()["error"], answer.text
    # An output of a type JSON cannot carry: 400 naming it, as TF Serving
    answer = requests.post(f"{models}/compat:predict", json={
        "signature_name": "complex_out", "instances": [1.0]})
    assert answer.status_code == 400 and answer.json() == {
        "error": "Failed to write JSON value for tensor type: complex64"}
    # Class names that are not UTF-8: answered (REST replaces what is not UTF-8)
    answer = requests.post(f"{models}/compat:classify", json={
        "signature_name": "raw_classes", "examples": [{"n": 1}]})
    assert answer.status_code == 200 and answer.json() == {"results": [[["\ufffd\ufffdok", 1.0]]]}
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name, request.model_spec.signature_name = "compat", "raw_classes"
    request.input.example_list.examples.add()
    with grpc.insecure_channel(server.grpc_address) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        classes = stub.Classify(request, timeout=30).result.classifications[0].classes
        assert [c.label for c in classes] == ["\ufffd\ufffdok"]
    # A Content-Length of a digit that is not ASCII: 400, not a traceback
    host, port = server.rest_url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.putrequest("POST", "/v1/models/half:predict", skip_accept_encoding=True)
        connection.putheader("Content-Length", "\u00b2".encode("latin-1"))
        connection.endheaders()
        answer = connection.getresponse()
        assert answer.status == 400 and b"Content-Length" in answer.read()
    finally:
        connection.close()
    # A percent escape that is not UTF-8 in the model name: decoded and not found (404)
    answer = requests.get(f"{models}/%ff")
    assert answer.status_code == 404 and "Could not find any versions of model" in \
        answer.json()["error"]


def test_grpc_finds_the_model_and_signature_before_reading_tensors(server):
    """As TF Serving's Predict (PredictWithModelSpec, then RunPredict): an unknown model
    is NOT_FOUND and an unknown signature FAILED_PRECONDITION whatever the tensors; a bad
    tensor was INVALID_ARGUMENT (or RESOURCE_EXHAUSTED) first here. A tensor type with no
    name is INVALID_ARGUMENT (it was INTERNAL)."""
    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    def predict(model, signature, tensor):
        request = predict_pb2.PredictRequest()
        request.model_spec.name, request.model_spec.signature_name = model, signature
        request.inputs["x"].CopyFrom(tensor)
        with pytest.raises(grpc.RpcError) as error:
            stub.Predict(request, timeout=30)
        return error.value.code()

    broken = tf.make_tensor_proto(np.array([1.0, 2.0, 3.0], np.float32))
    broken.tensor_content = broken.tensor_content[:5]
    huge = tf.make_tensor_proto(np.array([1.0], np.float32))
    huge.tensor_shape.dim[0].size = 2**40
    unnamed = tf.make_tensor_proto(np.array([1.0], np.float32))
    unnamed.dtype = 999
    with grpc.insecure_channel(server.grpc_address) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for tensor in (broken, huge, unnamed):
            assert predict("nope", "", tensor) == grpc.StatusCode.NOT_FOUND
            assert predict("half", "nosig", tensor) == grpc.StatusCode.FAILED_PRECONDITION
        assert predict("half", "", broken) == grpc.StatusCode.INVALID_ARGUMENT
        assert predict("half", "", huge) == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert predict("half", "", unnamed) == grpc.StatusCode.INVALID_ARGUMENT


def test_rest_refuses_numbers_beyond_a_double_and_quotes_little(server):
    """1e400 was read as Infinity and run (200); TF Serving's rapidjson refuses it (400).
    A refused value is quoted up to 256 characters, as TF Serving (it was sent back
    whole)."""
    models = f"{server.rest_url}/v1/models"
    answer = requests.post(f"{models}/half:predict", data=b'{"instances": [1e400, 1.0]}')
    assert answer.status_code == 400 and "Number too big" in answer.json()["error"]
    answer = requests.post(f"{models}/half:predict",
                           json={"instances": [{"x": 1.0, "z": ["text " * 20] * 500}]})
    assert answer.status_code == 400 and len(answer.content) < 1000, answer.content[:200]
