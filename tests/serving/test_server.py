"""The local model server over real sockets, on small SavedModels that are not this
project's: every endpoint on both transports, errors, hot swap, batching, config,
labels, auth and metrics. With ``tensorflow_model_server`` on PATH, the client tests
run against it too."""
import base64
import concurrent.futures
import json
import os
import shutil
import threading
import time

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_service_pb2_grpc

from serving.client import GrpcClient, RestClient, ServingClientError, Target
from serving.metrics import batching_figures
from serving.process import ServerProcess
from tests.support.paths import REPO
from tests.support.serving_models import export_half_plus_two

DEPLOY = os.path.join(REPO, "serving", "deploy")
X = [1.0, 2.0, 7.5]
SERVERS = ["local"] + (["tensorflow_model_server"]
                       if shutil.which("tensorflow_model_server") else [])


@pytest.fixture(scope="module", params=SERVERS)
def server(request, half_base):
    flags = ["--model_name", "half", "--model_base_path", half_base,
             "--monitoring_config_file", os.path.join(DEPLOY, "monitoring.config")]
    executable = None
    if request.param == "local":
        flags += ["--max_request_bytes", str(64 * 1024)]
    else:
        executable = ["tensorflow_model_server"]
    with ServerProcess(flags, executable=executable) as running:
        yield running


@pytest.fixture(scope="module")
def reference(half_base):
    """The same SavedModel called in-process."""
    return tf.saved_model.load(os.path.join(half_base, "1")).signatures


def _clients(server, **target):
    return [GrpcClient(server.grpc_address, Target("half", **target)),
            RestClient(server.rest_url, Target("half", **target))]


def test_predict_matches_in_process_on_both_transports_and_formats(server, reference):
    expected = reference["serving_default"](x=tf.constant(X))["y"].numpy()
    grpc_client, rest_client = _clients(server)
    got = {"grpc": grpc_client.predict({"x": np.array(X, np.float32)})["y"],
           "rest instances": rest_client.predict({"x": np.array(X)})["output"],
           "rest inputs": rest_client.predict({"x": np.array(X)}, row_format=False)["output"]}
    for name, value in got.items():
        np.testing.assert_allclose(value, expected, rtol=1e-6, err_msg=name)

    # Two inputs, a string output named *_bytes (base64 over REST).
    a, b = np.array([1.0, 2.0], np.float32), np.array([[1, 2], [3, 4]], np.int64)
    want = reference["two_inputs"](a=tf.constant(a), b=tf.constant(b))
    by_grpc = grpc_client.predict({"a": a, "b": b}, "two_inputs")
    for row_format in (True, False):
        by_rest = rest_client.predict({"a": a, "b": b}, "two_inputs", row_format=row_format)
        np.testing.assert_allclose(by_rest["sum"], want["sum"].numpy())
        assert list(by_rest["echo_bytes"]) == list(want["echo_bytes"].numpy())  # from b64
    raw = requests.post(f"{server.rest_url}/v1/models/half:predict", json={
        "signature_name": "two_inputs", "instances": [{"a": 1.0, "b": [1, 2]}]}).json()
    assert raw["predictions"][0]["sum"] == 4.0
    assert base64.b64decode(raw["predictions"][0]["echo_bytes"]["b64"]) == \
        want["echo_bytes"].numpy()[0]  # a *_bytes output travels as {"b64": ...}
    np.testing.assert_allclose(by_grpc["sum"], want["sum"].numpy())
    assert list(by_grpc["echo_bytes"]) == list(want["echo_bytes"].numpy())


def test_classify_regress_status_metadata_on_both_transports(server, reference):
    examples = [{"x": v} for v in X]
    y = reference["serving_default"](x=tf.constant(X))["y"].numpy()
    for client in _clients(server):
        rows = client.classify(examples, "classify")
        assert [[label for label, _ in row] for row in rows] == [["high", "low"]] * 3
        np.testing.assert_allclose([row[0][1] for row in rows], y, rtol=1e-6)
        np.testing.assert_allclose(client.regress(examples, "regress"), y, rtol=1e-6)
        status = client.status()
        assert status[0]["version"] == "1" and status[0]["state"] == "AVAILABLE"
        assert status[0]["status"]["error_code"] == "OK"
        metadata = client.metadata()
        assert metadata["model_spec"]["name"] == "half"
        assert metadata["model_spec"]["version"] == "1"
        signatures = metadata["metadata"]["signature_def"]["signature_def"]
        assert signatures["classify"]["method_name"] == "tensorflow/serving/classify"
        assert signatures["serving_default"]["inputs"]["x"]["dtype"] == "DT_FLOAT"


@pytest.mark.parametrize("method,path,body,status,message", [
    ("POST", ":predict", "{not json", 400, "JSON Parse error"),
    ("POST", ":predict", '{"instances": [1.0], "signature_name": "nope"}', 400,
     'Serving signature name: "nope" not found in signature def'),
    ("POST", ":predict", '{"instances": ["one"]}', 400,
     "Type: String is not of expected type: float"),
    ("POST", ":predict", '{"instances": []}', 400, "No values in 'instances' array"),
    ("POST", ":predict", '{"signature_name": ""}', 400, "Missing 'inputs' or 'instances' key"),
    ("POST", "/versions/9:predict", '{"instances": [1.0]}', 404,
     "Servable not found for request: Specific(half, 9)"),
    ("GET", "/versions/9", None, 404, "Could not find version 9 of model half"),
    ("POST", ":classify", '{"examples": [{"x": 1.0}]}', 400,
     "No classification inputs found in SignatureDef"),
    ("GET", ":predict", None, 400, "Malformed request: GET /v1/models/half:predict"),
])
def test_rest_errors_have_tf_serving_status_and_shape(server, method, path, body, status,
                                                      message):
    response = requests.request(method, f"{server.rest_url}/v1/models/half{path}", data=body)
    assert response.status_code == status
    assert message in response.json()["error"]
    assert requests.get(f"{server.rest_url}/v1/models/half").status_code == 200  # still up


def test_rest_unknown_model_and_oversized_body(server):
    response = requests.post(f"{server.rest_url}/v1/models/nope:predict",
                             data='{"instances": [1.0]}')
    assert response.status_code == 404
    assert response.json() == {"error": "Servable not found for request: Latest(nope)"}
    if "--max_request_bytes" in server.flags:  # this server's own limit
        big = json.dumps({"instances": [1.0] * 20000})
        response = requests.post(f"{server.rest_url}/v1/models/half:predict", data=big)
        assert response.status_code == 413 and "larger than" in response.json()["error"]
        with pytest.raises(ServingClientError, match="RESOURCE_EXHAUSTED"):
            _clients(server)[0].predict({"x": np.zeros(20000, np.float32)})
    assert RestClient(server.rest_url, Target("half")).predict({"x": np.array([2.0])})[
        "output"].tolist() == [3.0]


def test_grpc_errors_have_tf_serving_codes(server):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(
        grpc.insecure_channel(server.grpc_address))

    def predict(name="half", signature="", values=(1.0,), dtype=tf.float32, key="x"):
        request = predict_pb2.PredictRequest(
            model_spec=model_pb2.ModelSpec(name=name, signature_name=signature))
        request.inputs[key].CopyFrom(tf.make_tensor_proto(list(values), dtype=dtype))
        with pytest.raises(grpc.RpcError) as caught:
            stub.Predict(request, timeout=30)
        return caught.value.code(), caught.value.details()

    assert predict(name="nope") == (grpc.StatusCode.NOT_FOUND,
                                    "Servable not found for request: Latest(nope)")
    code, details = predict(signature="nope")
    assert code == grpc.StatusCode.FAILED_PRECONDITION and '"nope" not found' in details
    code, details = predict(values=[b"one"], dtype=tf.string)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "to be float" in details
    code, details = predict(key="y")
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "Missing but required: {x}" in details


def test_prometheus_metrics_count_requests(server):
    RestClient(server.rest_url, Target("half")).predict({"x": np.array([1.0])})
    text = requests.get(f"{server.rest_url}/monitoring/prometheus/metrics").text
    line = next(l for l in text.splitlines()
                if l.startswith(':tensorflow:serving:request_count{model_name="half",'
                                'status="OK"}'))
    assert float(line.split()[-1]) >= 1
    assert ":tensorflow:serving:request_latency_bucket" in text


def test_latency_is_timed_for_answered_requests_under_tf_servings_api_names(server):
    """As TF Serving: gRPC's API label is Predict (REST's predict), and a failed request
    is counted by its status but not timed."""
    def latency_count(api: str, entrypoint: str) -> float:
        text = requests.get(f"{server.rest_url}/monitoring/prometheus/metrics").text
        prefix = (f':tensorflow:serving:request_latency_count{{API="{api}",'
                  f'entrypoint="{entrypoint}",model_name="half"}}')
        return next((float(l.split()[-1]) for l in text.splitlines()
                     if l.startswith(prefix)), 0.0)
    before = latency_count("Predict", "GRPC")
    GrpcClient(server.grpc_address, Target("half")).predict({"x": np.array([1.0], np.float32)})
    assert latency_count("Predict", "GRPC") == before + 1
    assert latency_count("predict", "GRPC") == 0.0
    rest_before = latency_count("predict", "REST")
    with pytest.raises(ServingClientError):
        RestClient(server.rest_url, Target("half", version=99)).predict({"x": np.array([1.0])})
    assert latency_count("predict", "REST") == rest_before


def test_client_reports_unreachable_server_after_retries():
    """Connection refused is retried (the libraries' backoff), then reported as
    UNAVAILABLE naming the server, once the retries are spent and before the deadline."""
    from serving.process import free_port
    address = f"127.0.0.1:{free_port()}"
    for client in (GrpcClient(address, Target("half"), timeout=10, retries=2,
                              backoff_seconds=0.05),
                   RestClient(f"http://{address}", Target("half"), timeout=10, retries=2,
                              backoff_seconds=0.05)):
        started = time.monotonic()
        with pytest.raises(ServingClientError) as caught:
            client.status()
        assert caught.value.code == "UNAVAILABLE" and address in str(caught.value)
        assert time.monotonic() - started < 5  # gave up after its retries, not at 10 s


def test_new_version_swaps_in_under_load_without_failed_requests(tmp_path):
    base = str(tmp_path / "half")
    os.makedirs(base)
    export_half_plus_two(base, 1)
    poll = 1
    with ServerProcess(["--model_name", "half", "--model_base_path", base,
                        "--file_system_poll_wait_seconds", str(poll)]) as server:
        failures, answers, stop = [], [], threading.Event()

        def client_loop(i):
            client = (GrpcClient(server.grpc_address, Target("half")) if i % 2 else
                      RestClient(server.rest_url, Target("half")))
            while not stop.is_set():
                try:
                    y = float(client.predict({"x": np.array([2.0], np.float32)})[
                        "y" if i % 2 else "output"][0])
                    answers.append((time.monotonic(), y))
                except Exception as error:  # noqa: BLE001  counted, not raised
                    failures.append(repr(error))

        with concurrent.futures.ThreadPoolExecutor(32) as pool:
            for i in range(32):
                pool.submit(client_loop, i)
            while len(answers) < 100 and not failures:
                time.sleep(0.05)
            pushed = time.monotonic()
            export_half_plus_two(base, 2, scale=10.0)  # y(2) = 30 instead of 3
            deadline = pushed + poll + 60
            while not any(y == 30.0 for _, y in answers) and time.monotonic() < deadline:
                time.sleep(0.05)
            first_new = min((t for t, y in answers if y == 30.0), default=None)
            time.sleep(0.5)  # keep the load on while the old version is unloaded
            stop.set()
        assert not failures, failures[:3]
        assert first_new is not None, "version 2 never answered"
        load_seconds = first_new - pushed
        assert load_seconds < poll + 15, load_seconds
        assert {y for _, y in answers} == {3.0, 30.0}
        status = RestClient(server.rest_url, Target("half")).status()
        assert {s["version"]: s["state"] for s in status} == {"2": "AVAILABLE", "1": "END"}
        with pytest.raises(ServingClientError, match="Specific\\(half, 1\\)"):
            GrpcClient(server.grpc_address, Target("half", version=1)).predict(
                {"x": np.array([2.0], np.float32)})


def test_config_file_policy_labels_batching_and_token(tmp_path):
    base = str(tmp_path / "half")
    os.makedirs(base)
    for version in (1, 2, 3):
        export_half_plus_two(base, version, scale=float(version))
    config = tmp_path / "models.config"
    config.write_text(f"""model_config_list {{ config {{
        name: "half" base_path: "{base}" model_platform: "tensorflow"
        model_version_policy {{ latest {{ num_versions: 2 }} }}
        version_labels {{ key: "stable" value: 2 }}
        version_labels {{ key: "canary" value: 3 }} }} }}""")
    (tmp_path / "token").write_text("s3cret\n")
    with ServerProcess(["--model_config_file", str(config), "--enable_batching",
                        "--allow_version_labels_for_unavailable_models",  # as TF Serving
                        "--batching_parameters_file",
                        os.path.join(DEPLOY, "batching_parameters.txt"),
                        "--auth_token_file", str(tmp_path / "token"),
                        "--monitoring_config_file", os.path.join(DEPLOY, "monitoring.config")],
                       token="s3cret") as server:
        # Without the token: refused on both transports.
        assert requests.get(f"{server.rest_url}/v1/models/half").status_code == 401
        with pytest.raises(ServingClientError, match="UNAUTHENTICATED"):
            GrpcClient(server.grpc_address, Target("half")).status()

        def y(**target):  # y(2) = 3 * version
            return [float(c.predict({"x": np.array([2.0], np.float32)})[k][0])
                    for c, k in zip([GrpcClient(server.grpc_address, Target("half", **target),
                                                token="s3cret"),
                                     RestClient(server.rest_url, Target("half", **target),
                                                token="s3cret")], ["y", "output"])]
        assert y() == [9.0, 9.0]  # latest
        assert y(label="stable") == [6.0, 6.0] and y(label="canary") == [9.0, 9.0]
        assert y(version=2) == [6.0, 6.0]
        with pytest.raises(ServingClientError, match="Specific\\(half, 1\\)"):
            y(version=1)  # latest 2: version 1 is not loaded
        with pytest.raises(ServingClientError, match="Unrecognized servable version label"):
            y(label="nope")
        # One request over max_batch_size (32): refused as TF Serving's batch scheduler
        # does (it ran alone here; TF Serving in production would refuse it).
        rows = np.arange(33, dtype=np.float32)
        for client in (GrpcClient(server.grpc_address, Target("half"), token="s3cret"),
                       RestClient(server.rest_url, Target("half"), token="s3cret")):
            with pytest.raises(ServingClientError, match="(INVALID_ARGUMENT|HTTP 400).*Task "
                                                         "size 33 is larger than maximum "
                                                         "input batch size 32"):
                client.predict({"x": rows})
            assert len(client.predict({"x": rows[:32]})["y" if isinstance(
                client, GrpcClient) else "output"]) == 32

        # 32 concurrent clients through the batcher: every caller gets its own rows.
        client = GrpcClient(server.grpc_address, Target("half"), token="s3cret")
        inputs = [np.arange(i % 5 + 1, dtype=np.float32) + i for i in range(96)]
        before = _batching_metrics(server, "s3cret")
        with concurrent.futures.ThreadPoolExecutor(32) as pool:
            outputs = list(pool.map(lambda x: client.predict({"x": x})["y"], inputs))
        for x, out in zip(inputs, outputs):
            np.testing.assert_allclose(out, (x / 2 + 2) * 3)
        # The batches are counted: every row once, every request's wait once.
        after = _batching_metrics(server, "s3cret")
        runs = after["wrapped_run_count"] - before["wrapped_run_count"]
        assert after["processed_batch_size_sum"] - before["processed_batch_size_sum"] == sum(
            len(x) for x in inputs)
        assert after["processed_batch_size_count"] - before["processed_batch_size_count"] \
            == runs and 0 < runs <= len(inputs)
        assert after["queuing_latency_count"] - before["queuing_latency_count"] == len(inputs)
        # One series per model and signature, whatever the version (versions 2 and 3 are
        # loaded): retraining does not pile up series.
        text = requests.get(f"{server.rest_url}/monitoring/prometheus/metrics",
                            headers={"Authorization": "Bearer s3cret"}).text
        names = {line.split('thread_pool_name="')[1].split('"')[0] for line in text.splitlines()
                 if "processed_batch_size_count{" in line}
        assert "half-serving_default" in names and not any(
            name.startswith(("half-2-", "half-3-")) for name in names), names


def _batching_metrics(server, token):
    """The batching-session figures of the ``serving_default`` batchers."""
    return batching_figures(requests.get(f"{server.rest_url}/monitoring/prometheus/metrics",
                                         headers={"Authorization": f"Bearer {token}"}).text,
                            "serving_default")


def test_rest_request_past_its_deadline_gets_504_and_the_server_keeps_answering(
        half_base, tmp_path):
    """A request still queued for a batch when --rest_api_timeout_in_ms runs out gets
    TF Serving's DEADLINE_EXCEEDED as a JSON 504; the next one within the deadline works."""
    params = tmp_path / "batching.txt"
    params.write_text("max_batch_size { value: 64 }\n"
                      "batch_timeout_micros { value: 3000000 }\n")  # a lone request waits 3 s
    with ServerProcess(["--model_name", "half", "--model_base_path", half_base,
                        "--enable_batching", "--batching_parameters_file", str(params),
                        "--rest_api_timeout_in_ms", "500"]) as server:
        url = f"{server.rest_url}/v1/models/half:predict"
        late = requests.post(url, json={"instances": [2.0]}, timeout=30)
        assert late.status_code == 504
        assert "Deadline exceeded" in late.json()["error"]
        assert requests.get(f"{server.rest_url}/v1/models/half", timeout=30).json()[
            "model_version_status"][0]["state"] == "AVAILABLE"
    with ServerProcess(["--model_name", "half", "--model_base_path", half_base,
                        "--rest_api_timeout_in_ms", "500"]) as server:  # no batch wait
        answer = requests.post(f"{server.rest_url}/v1/models/half:predict",
                               json={"instances": [2.0]}, timeout=30)
        assert answer.status_code == 200 and answer.json()["predictions"] == [3.0]


def test_an_empty_host_serves_every_interface_ipv6_included(tmp_path):
    """docs/security.md names '' and '::' for every interface: gRPC refused both at start
    ('::' became '::8500', the port blamed). Both transports answer on IPv4 and IPv6."""
    base = str(tmp_path / "half")
    export_half_plus_two(base, 1)
    with ServerProcess(["--host", "", "--model_name", "half", "--model_base_path", base]) \
            as server:  # the helper reaches it at 127.0.0.1
        assert GrpcClient(f"[::1]:{server.grpc_port}", Target("half")).status()[0][
            "state"] == "AVAILABLE"
        answer = requests.get(f"http://[::1]:{server.rest_port}/v1/models/half", timeout=30)
        assert answer.status_code == 200, answer.text


def test_request_count_holds_every_request_and_its_status(server):
    """A body that did not parse, a value of the wrong type, an unknown version: refused
    before the model ran, and never counted (an error-rate alert saw none of them)."""
    def counts() -> dict:
        text = requests.get(f"{server.rest_url}/monitoring/prometheus/metrics").text
        found = {}
        for line in text.splitlines():
            if line.startswith(':tensorflow:serving:request_count{model_name="half"'):
                status = line.split('status="')[1].split('"')[0]
                found[status] = float(line.split()[-1])
        return found

    before = counts()
    models = f"{server.rest_url}/v1/models"
    assert requests.post(f"{models}/half:predict", data=b"{broken").status_code == 400
    assert requests.post(f"{models}/half:predict", json={"instances": ["x"]}).status_code == 400
    assert requests.post(f"{models}/half/versions/9:predict",
                         json={"instances": [1.0]}).status_code == 404
    assert requests.post(f"{models}/half:predict", json={"instances": [1.0]}).status_code == 200
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(["x"]))
    with grpc.insecure_channel(server.grpc_address) as channel:
        with pytest.raises(grpc.RpcError):
            prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request,
                                                                                timeout=30)
    after = counts()
    assert after.get("INVALID_ARGUMENT", 0) - before.get("INVALID_ARGUMENT", 0) == 3
    assert after.get("NOT_FOUND", 0) - before.get("NOT_FOUND", 0) == 1
    assert after["OK"] - before.get("OK", 0) == 1


def test_request_count_labels_stay_bounded_whatever_callers_send(tmp_path, half_base):
    """A caller refused for its token was counted under the model name it sent, and any
    caller's made-up names each made a series: 200 KB names grew the scrape without end.
    Refused tokens count nothing; names no configured model has count as ''."""
    (tmp_path / "tokens").write_text("s3cret\n")
    with ServerProcess(["--model_name", "half", "--model_base_path", half_base,
                        "--auth_token_file", str(tmp_path / "tokens"),
                        "--monitoring_config_file",
                        os.path.join(DEPLOY, "monitoring.config")], token="s3cret") as server:
        name = "x" * 100_000
        request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name=name))
        request.inputs["x"].CopyFrom(tf.make_tensor_proto([1.0]))
        with grpc.insecure_channel(server.grpc_address) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            for metadata in ((), (("authorization", "Bearer s3cret"),)):
                with pytest.raises(grpc.RpcError):
                    stub.Predict(request, timeout=30, metadata=metadata)
        text = requests.get(f"{server.rest_url}/monitoring/prometheus/metrics",
                            headers={"Authorization": "Bearer s3cret"}).text
    assert name not in text
    assert ':tensorflow:serving:request_count{model_name="",status="NOT_FOUND"} 1.0' in text
    assert "UNAUTHENTICATED" not in text
