"""The local model server keeps TF Serving's promise under faults: a model that answers
keeps answering. Real server processes, real SavedModels, 8 clients over real sockets
(raw requests and gRPC stubs, no client-side retries that could hide a failure)."""
import http.client
import json
import os
import shutil
import socket
import threading
import time

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_service_pb2_grpc

from serving.process import ServerProcess
from tests.support.paths import REPO
from tests.support.serving_models import export_half_plus_two, write_model_config

DEPLOY = os.path.join(REPO, "serving", "deploy")
FAST_RETRIES = ["--file_system_poll_wait_seconds", "1", "--max_num_load_retries", "2",
                "--load_retry_interval_micros", "200000"]


class Load:
    """``clients`` threads (half REST, half gRPC) asking y(2) of model ``half`` until
    stopped; every answer and every failure is recorded."""

    def __init__(self, server: ServerProcess, clients: int = 8):
        self.server, self.clients = server, clients
        self.answers, self.failures = [], []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, args=(i,), daemon=True)
                         for i in range(clients)]

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        self.wait(lambda answers: len(answers) >= 4 * self.clients)
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _loop(self, i: int):
        if i % 2:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(
                grpc.insecure_channel(self.server.grpc_address))
            request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="half"))
            request.inputs["x"].CopyFrom(tf.make_tensor_proto([2.0], dtype=tf.float32))
        while not self._stop.is_set():
            try:
                if i % 2:
                    y = float(tf.make_ndarray(stub.Predict(request, timeout=30).outputs["y"])[0])
                else:
                    response = requests.post(f"{self.server.rest_url}/v1/models/half:predict",
                                             json={"instances": [2.0]}, timeout=30)
                    response.raise_for_status()
                    y = response.json()["predictions"][0]
                self.answers.append(y)
            except Exception as error:  # noqa: BLE001  counted, not raised
                self.failures.append(repr(error)[:300])

    def wait(self, condition, timeout: float = 60.0):
        """Polls ``condition(answers)`` until it holds (fails the test after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while not condition(list(self.answers)):
            assert time.monotonic() < deadline, (
                f"condition not met in {timeout}s; failures: {self.failures[:3]}")
            time.sleep(0.05)  # polling a condition, not timing the test

    def mark(self) -> int:
        return len(self.answers)


def status(server) -> dict:
    versions = requests.get(f"{server.rest_url}/v1/models/half", timeout=10).json()
    return {int(v["version"]): v for v in versions["model_version_status"]}


def wait_status(server, version: int, state: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        entry = status(server).get(version)
        if entry and entry["state"] == state:
            return entry
        assert time.monotonic() < deadline, f"version {version} never {state}: {entry}"
        time.sleep(0.05)  # polling the server's state


def copy_broken(source: str, target: str, with_variables: bool = False) -> None:
    """A version folder that appears at once but holds only ``saved_model.pb`` (a
    half-finished copy); ``with_variables`` completes it."""
    staging = target + ".staging"
    os.makedirs(staging)
    shutil.copy(os.path.join(source, "saved_model.pb"), staging)
    if with_variables:
        shutil.copytree(os.path.join(source, "variables"), os.path.join(staging, "variables"))
    os.rename(staging, target)


def test_a_broken_new_version_never_takes_the_model_down(tmp_path):
    base, spare = str(tmp_path / "half"), str(tmp_path / "spare")
    export_half_plus_two(base, 1)  # y(2) = 3
    good_v2 = export_half_plus_two(spare, 2, scale=10.0)  # y(2) = 30
    with ServerProcess(["--model_name", "half", "--model_base_path", base, *FAST_RETRIES]
                       ) as server, Load(server) as load:
        # 1. A graph without its variables (a half-finished copy): retried, then END.
        copy_broken(good_v2, os.path.join(base, "2"))
        failed = wait_status(server, 2, "END")
        assert "variables" in failed["status"]["error_message"].lower() or \
            failed["status"]["error_message"], failed
        assert failed["status"]["error_code"] != "OK"
        assert status(server)[1]["state"] == "AVAILABLE"
        start = load.mark()
        load.wait(lambda answers: len(answers) >= start + 40)
        assert set(load.answers) == {3.0}, "version 1 must answer while 2 is broken"

        # 2. Fixing the folder (its content changes) loads it: version 2 takes over.
        shutil.copytree(os.path.join(good_v2, "variables"),
                        os.path.join(base, "2", "variables"))
        load.wait(lambda answers: 30.0 in answers)
        wait_status(server, 1, "END")
        assert wait_status(server, 2, "AVAILABLE")["status"]["error_code"] == "OK"

        # 3. A graph that cannot be parsed at all: version 2 serves on.
        os.makedirs(os.path.join(base, "3"))
        with open(os.path.join(base, "3", "saved_model.pb"), "wb") as f:
            f.write(b"\x08\x01 this is not a SavedModel")
        wait_status(server, 3, "END")
        start = load.mark()
        load.wait(lambda answers: len(answers) >= start + 40)
        assert set(load.answers[start:]) == {30.0}
    assert load.failures == [], load.failures[:5]


def test_deleting_versions_rolls_back_then_404_then_recovers(tmp_path):
    base = str(tmp_path / "half")
    export_half_plus_two(base, 1)
    with ServerProcess(["--model_name", "half", "--model_base_path", base, *FAST_RETRIES]
                       ) as server:
        with Load(server) as load:
            export_half_plus_two(base, 2, scale=10.0)  # version 1 is unloaded (END) ...
            wait_status(server, 1, "END")
            load.wait(lambda answers: answers[-1] == 30.0)
            shutil.rmtree(os.path.join(base, "2"))  # ... and comes back when 2 is deleted
            load.wait(lambda answers: answers[-1] == 3.0)
            start = load.mark()
            load.wait(lambda answers: len(answers) >= start + 40)
            assert set(load.answers[start:]) == {3.0}
        assert load.failures == [], load.failures[:5]
        assert wait_status(server, 1, "AVAILABLE") and status(server)[2]["state"] == "END"

        shutil.rmtree(os.path.join(base, "1"))  # no version left: TF Serving's 404
        url = f"{server.rest_url}/v1/models/half:predict"
        deadline = time.monotonic() + 30
        while (response := requests.post(url, json={"instances": [2.0]})).status_code == 200:
            assert time.monotonic() < deadline, "the deleted version still answers"
        assert response.status_code == 404
        assert response.json() == {"error": "Servable not found for request: Latest(half)"}

        export_half_plus_two(base, 7, scale=2.0)  # a version reappears: serving again
        while (response := requests.post(url, json={"instances": [2.0]})).status_code != 200:
            assert time.monotonic() < deadline + 30, response.text
        assert response.json() == {"predictions": [6.0]}


@pytest.fixture(scope="module")
def half_server(tmp_path_factory):
    base = str(tmp_path_factory.mktemp("faults") / "half")
    export_half_plus_two(base, 1)
    token = tmp_path_factory.mktemp("token") / "token"
    token.write_text("s3cret")
    with ServerProcess(["--model_name", "half", "--model_base_path", base,
                        "--auth_token_file", str(token), "--rest_api_timeout_in_ms", "1500",
                        "--monitoring_config_file", os.path.join(DEPLOY, "monitoring.config")],
                       token="s3cret") as server:
        yield server


AUTH = {"Authorization": "Bearer s3cret"}


def _healthy(server) -> None:
    response = requests.post(f"{server.rest_url}/v1/models/half:predict", headers=AUTH,
                             json={"instances": [2.0]}, timeout=10)
    assert response.json() == {"predictions": [3.0]}


@pytest.mark.parametrize("method,path,body,status_code,message", [
    ("POST", ":predict", '{"instances": [%s]}' % ("9" * 400), 400, "out of range"),
    ("POST", ":predict", '{"instances": [%s]}' % ("9" * 5000), 400, "JSON Parse error"),
    ("POST", ":predict", '{"instances": %s1%s}' % ("[" * 5000, "]" * 5000), 400,
     "nested too deeply"),
    # deep enough for the decoder's limit, but not for the input's conversion
    ("POST", ":predict", '{"instances": %s1.0%s}' % ("[" * 900, "]" * 900), 400,
     "nested too deeply"),
    ("POST", ":predict", '{"signature_name": "classify", "instances": ["\\ud800"]}', 400,
     "lone UTF-16 surrogate"),
    ("POST", ":predict", '{"instances": [[1.0], 2.0]}', 400, "unexpected size"),
    ("POST", ":predict", '[1.0]', 400, "must be a JSON object"),
    ("PUT", ":predict", '{"instances": [1.0]}', 400, "Malformed request: PUT"),
    ("DELETE", "", None, 400, "Malformed request: DELETE"),
    ("PATCH", "", "{}", 400, "Malformed request: PATCH"),
    ("OPTIONS", "", None, 400, "Malformed request: OPTIONS"),
    ("GET", "/versions/x", None, 400, "Malformed request"),
])
def test_malformed_rest_requests_get_json_errors(half_server, method, path, body,
                                                 status_code, message):
    response = requests.request(method, f"{half_server.rest_url}/v1/models/half{path}",
                                data=body, headers=AUTH, timeout=30)
    assert response.status_code == status_code, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    assert message in response.json()["error"]
    _healthy(half_server)


def test_bad_framing_and_unknown_paths_get_json_errors(half_server):
    connection = http.client.HTTPConnection("127.0.0.1", half_server.rest_port, timeout=30)
    connection.putrequest("POST", "/v1/models/half:predict")
    connection.putheader("Authorization", AUTH["Authorization"])
    connection.putheader("Content-Length", "ten")
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 400
    assert "Content-Length" in json.loads(response.read())["error"]
    connection.close()
    response = requests.get(f"{half_server.rest_url}/v2/anything", headers=AUTH)
    assert response.status_code == 404 and "Malformed request" in response.json()["error"]
    _healthy(half_server)


def test_a_body_sent_too_slowly_is_cut_off(half_server):
    """``--rest_api_timeout_in_ms`` (1.5 s here) bounds reading a body."""
    with socket.create_connection(("127.0.0.1", half_server.rest_port)) as sock:
        sock.sendall(b"POST /v1/models/half:predict HTTP/1.1\r\nHost: x\r\n"
                     b"Authorization: Bearer s3cret\r\nContent-Length: 100\r\n\r\n{")
        sock.settimeout(20)
        started = time.monotonic()
        assert sock.recv(1024) == b""  # the server closed the connection
        assert time.monotonic() - started < 15
    _healthy(half_server)


def _grpc_error(server, tensor_proto, key="x"):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(
        grpc.insecure_channel(server.grpc_address))
    request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="half"))
    request.inputs[key].CopyFrom(tensor_proto)
    with pytest.raises(grpc.RpcError) as caught:
        stub.Predict(request, timeout=30, metadata=[("authorization", "Bearer s3cret")])
    return caught.value.code(), caught.value.details()


def test_malformed_grpc_tensors_are_refused_before_allocation(half_server):
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

    def proto(dtype, dims, **values):
        return tensor_pb2.TensorProto(dtype=dtype, tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims]), **values)

    code, details = _grpc_error(half_server, proto(types_pb2.DT_RESOURCE, [1]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "DT_RESOURCE" in details
    started = time.monotonic()
    code, details = _grpc_error(half_server, proto(types_pb2.DT_FLOAT, [10**10],
                                                   float_val=[1.0]))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "10000000000" in details
    assert time.monotonic() - started < 10  # refused, not attempted
    code, _ = _grpc_error(half_server, proto(types_pb2.DT_FLOAT, [3],
                                             tensor_content=b"\x00" * 5))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, _ = _grpc_error(half_server, proto(types_pb2.DT_FLOAT, [-1], float_val=[1.0]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    _healthy(half_server)


def test_every_endpoint_needs_the_token_metrics_included(half_server):
    metrics = f"{half_server.rest_url}/monitoring/prometheus/metrics"
    assert requests.get(metrics).status_code == 401
    assert requests.get(f"{half_server.rest_url}/v1/models/half/metadata").status_code == 401
    answer = requests.get(metrics, headers=AUTH)
    assert answer.status_code == 200 and ":tensorflow:serving:request_count" in answer.text
    # As TF Serving, which compares the path and query with its metrics path.
    queried = requests.get(metrics + "?name=x", headers=AUTH)
    assert queried.status_code == 400 and queried.text == (
        "Unexpected path: /monitoring/prometheus/metrics?name=x. Should be "
        "/monitoring/prometheus/metrics")


def test_metadata_json_prints_default_valued_fields_as_tf_serving(half_server):
    metadata = requests.get(f"{half_server.rest_url}/v1/models/half/metadata",
                            headers=AUTH).json()
    assert metadata["model_spec"] == {"name": "half", "signature_name": "", "version": "1"}
    signature = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]
    x = signature["inputs"]["x"]
    assert x["tensor_shape"] == {"dim": [{"size": "-1", "name": ""}], "unknown_rank": False}
    assert signature["defaults"] == {} and signature["method_name"]
    assert x["dtype"] == "DT_FLOAT" and x["name"]


def _config(path, base, labels, policy="all { }"):
    text = (f'model_config_list {{ config {{ name: "half" base_path: "{base}" '
            f'model_platform: "tensorflow" model_version_policy {{ {policy} }} ' +
            "".join(f'version_labels {{ key: "{k}" value: {v} }} ' for k, v in labels.items())
            + "} }")
    staging = str(path) + ".new"
    with open(staging, "w") as f:
        f.write(text)
    os.replace(staging, path)  # the server never reads a half-written file


def test_labels_at_start_need_the_flag_as_in_tf_serving(tmp_path):
    """TF Serving checks labels before it loads anything, so a config with a label refuses
    its start even when the version is on disk (this server started; stock TF Serving
    crash-looped on the same config after `bert-pipeline labels set`)."""
    base = str(tmp_path / "half")
    export_half_plus_two(base, 1)
    config = tmp_path / "models.config"
    _config(config, base, {"stable": 1})
    with pytest.raises(RuntimeError) as refused:
        with ServerProcess(["--model_config_file", str(config)], timeout=120):
            pass
    assert ("Request to assign label to version 1 of model half, which is not currently "
            "available for inference") in str(refused.value)
    assert "--allow_version_labels_for_unavailable_models" in str(refused.value)
    _config(config, base, {"stable": 7})
    with ServerProcess(["--model_config_file", str(config),
                        "--allow_version_labels_for_unavailable_models"]) as server:
        response = requests.post(f"{server.rest_url}/v1/models/half/labels/stable:predict",
                                 json={"instances": [2.0]})
        assert response.status_code == 404 and "Specific(half, 7)" in response.text


def test_config_file_is_polled_labels_move_without_restart(tmp_path):
    base = str(tmp_path / "half")
    export_half_plus_two(base, 1)
    export_half_plus_two(base, 2, scale=10.0)
    config = tmp_path / "models.config"
    _config(config, base, {"stable": 1})
    with ServerProcess(["--model_config_file", str(config),
                        "--allow_version_labels_for_unavailable_models",
                        "--model_config_file_poll_wait_seconds", "1"]) as server:
        url = f"{server.rest_url}/v1/models/half/labels/stable:predict"

        def stable():
            return requests.post(url, json={"instances": [2.0]}).json()["predictions"][0]
        assert stable() == 3.0
        _config(config, base, {"stable": 2})
        deadline = time.monotonic() + 30
        while stable() != 30.0:
            assert time.monotonic() < deadline, "label not moved"
        _config(config, base, {"stable": 2, "canary": 1})
        while requests.post(url.replace("stable", "canary"),
                            json={"instances": [2.0]}).status_code != 200:
            assert time.monotonic() < deadline, "label not added"
        # a label moved to a version not available (the flag allows new labels only):
        # the reload is refused whole, logged; the labels stay
        _config(config, base, {"stable": 9})
        while "model config not reloaded (version labels)" not in server.log():
            assert time.monotonic() < deadline + 30, server.log()[-2000:]
            time.sleep(0.05)  # polling the server's log
        assert stable() == 30.0
        _config(config, base, {"stable": 2}, policy="specific { versions: 2 }")
        while status(server)[1]["state"] != "END":
            assert time.monotonic() < deadline + 60, status(server)
            time.sleep(0.05)  # polling the server's state
        assert stable() == 30.0


def test_tf_serving_command_lines_run_unchanged(caplog):
    from serving.server import TF_SERVING_FLAGS, parse_flags

    args = parse_flags(["--port=8500", "--rest_api_port=8501", "--model_name=m",
                        "--model_base_path=/models/m", "--enable_model_warmup=false",
                        "--num_load_threads=4", "--enable_profiler=false",
                        "--tensorflow_intra_op_parallelism=2", "--saved_model_tags=serve,gpu",
                        "--max_num_load_retries=1", "--load_retry_interval_micros=5"])
    assert (args.enable_model_warmup, args.max_num_load_retries, args.saved_model_tags) == (
        False, 1, "serve,gpu")
    warned = caplog.text
    assert "--enable_profiler is accepted for compatibility and ignored" in warned
    assert "--max_num_load_retries" not in warned and "--num_load_threads" not in warned
    assert args.num_load_threads == 4
    names = {name for name, *_ in TF_SERVING_FLAGS}
    assert {"ssl_config_file", "model_config_file_poll_wait_seconds",
            "allow_version_labels_for_unavailable_models", "grpc_channel_arguments",
            "enable_grpc_healthcheck_service", "enable_serialization_as_tensor_content"} <= names
    # every flag of tensorflow_model_server 2.18's main.cc, and 2.19's
    # --enable_serialization_as_tensor_content
    assert len(names) == 48
    assert parse_flags(["--enable_serialization_as_tensor_content=true",
                        "--model_base_path=/m"]).enable_serialization_as_tensor_content


def test_grpc_on_a_unix_socket_with_channel_arguments(tmp_path):
    base = str(tmp_path / "half")
    export_half_plus_two(base, 1)
    socket_path = str(tmp_path / "grpc.sock")
    with ServerProcess(["--model_name", "half", "--model_base_path", base,
                        "--grpc_socket_path", socket_path,
                        "--grpc_channel_arguments",
                        "grpc.max_connection_age_ms=60000,grpc.http2.max_pings_without_data=0"]
                       ) as server:
        from serving.client import GrpcClient, Target
        with GrpcClient(f"unix:{socket_path}", Target("half")) as client:
            assert client.predict({"x": np.array([2.0], np.float32)})["y"].tolist() == [3.0]
        assert "unix:" in server.log()
    from serving.server import parse_flags
    with pytest.raises(SystemExit):
        parse_flags(["--model_base_path=/m", "--grpc_channel_arguments=no_equals_sign"])


@pytest.mark.parametrize("taken,message", [
    ("grpc", "cannot bind gRPC to 127.0.0.1:{port}: the port is in use"),
    ("rest", "cannot listen for REST on 127.0.0.1:{port}: Address already in use "
             "(--rest_api_port)"),
])
def test_a_port_in_use_is_a_clear_error_not_a_traceback(half_server, tmp_path, taken, message):
    import subprocess
    import sys

    from serving.process import free_port
    base = str(tmp_path / "half")
    export_half_plus_two(base, 1)
    port = half_server.grpc_port if taken == "grpc" else half_server.rest_port
    ports = ([port, free_port()] if taken == "grpc" else [free_port(), port])
    done = subprocess.run([sys.executable, "-m", "serving.server", "--model_name", "half",
                           "--model_base_path", base, "--host", "127.0.0.1",
                           "--port", str(ports[0]), "--rest_api_port", str(ports[1])],
                          cwd=REPO, capture_output=True, text=True, timeout=180)
    assert done.returncode == 1, done.stderr[-2000:]
    assert message.format(port=port) in done.stderr
    assert "Traceback" not in done.stderr


def test_a_base_path_without_versions_is_logged_with_where_it_looked(tmp_path, half_base):
    """``serve`` on a missing, empty or wrong-level base path said nothing and answered 404
    per request; now the log says, at start, where it looked and what is there."""
    empty, nested = tmp_path / "empty", tmp_path / "nested"
    empty.mkdir()
    shutil.copytree(half_base, nested / "half")  # the model's folder, not its base path
    cases = {"missing": (str(tmp_path / "missing"), "the folder does not exist"),
             "empty": (str(empty), "the folder is empty"),
             "flat": (os.path.join(half_base, "1"),
                      "found a SavedModel directly under the base path; move it into a "
                      "numbered version folder"),
             "nested": (str(nested), f"found versions one level down, under {nested}/half"),
             "renamed": (str(tmp_path / "renamed"),
                         "found SavedModels in folders not named by a number (v1)")}
    shutil.copytree(os.path.join(half_base, "1"), tmp_path / "renamed" / "v1")
    config = write_model_config(tmp_path / "models.config", {
        **{name: base for name, (base, _) in cases.items()}, "half": half_base})
    with ServerProcess(["--model_config_file", config], wait_for=["half"]) as server:
        log = server.log()
        assert requests.post(f"{server.rest_url}/v1/models/empty:predict",
                             json={"instances": [1.0]}).status_code == 404
    for name, (base, hint) in cases.items():
        assert (f"No versions of servable {name} found under base path {base} (looked for "
                f"{base}/<version number>/saved_model.pb): {hint}") in log, log[-3000:]
    assert "No versions of servable half" not in log


def test_no_versions_is_repeated_while_none_appear(tmp_path, caplog):
    """Every ``no_versions_log_seconds`` (60 s in the server) until a version appears."""
    from serving.model_store import LoadOptions, ModelSpec, ModelStore

    base = tmp_path / "half"
    base.mkdir()
    store = ModelStore([ModelSpec("half", str(base))], LoadOptions(
        file_system_poll_seconds=0.05, no_versions_log_seconds=0.3))
    caplog.set_level("INFO", logger="serving.model_store")

    def said(text):
        return sum(text in r.getMessage() for r in caplog.records)

    store.start()
    try:
        deadline = time.monotonic() + 60
        while said("No versions of servable half") < 3:
            assert time.monotonic() < deadline, caplog.text
            time.sleep(0.05)  # polling the store's poller
        export_half_plus_two(str(base), 1)
        while not store.loaded_versions("half"):
            assert time.monotonic() < deadline, caplog.text
            time.sleep(0.05)
        repeated = said("No versions of servable half")
        assert said("model half: versions found under") == 1
    finally:
        store.stop()
    assert said("No versions of servable half") == repeated  # silent once one is there



def test_release_memory_hands_freed_heap_back_to_the_system():
    """What the store runs after each load and unload. A heap freed below a live allocation is
    kept by glibc (RSS stayed at every swap's peak: 1.3 to 2.1 GB over 10 loads of the
    BERT, bench/serving_lifecycle.py); ``release_memory`` returns it. A child process, so
    the measure is not this test process's own heap."""
    script = """
import sys
sys.path.insert(0, ".")
from serving.memory import release_memory
def rss():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1])
blocks = [bytes(1024) + bytes([i % 256]) for i in range(200_000)]  # 200 MiB of 1 KiB mallocs
pinned = blocks[-1]
del blocks
before = rss()
release_memory()
print(before, rss())
"""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                         text=True, timeout=120, check=True).stdout.split()
    before, after = int(out[-2]), int(out[-1])
    assert before - after > 100 * 1024, (before, after)  # KiB: most of the 200 MiB


def test_a_server_dies_with_the_process_that_started_it(tmp_path, half_base):
    """ServingCheck killed outright (kill -9, an OOM kill) left its child server running,
    holding two ports and the model's memory. The child now goes with its parent."""
    import signal
    import subprocess
    import sys

    from serving.process import free_ports
    ports = free_ports(3)
    assert len(set(ports)) == 3  # held together while chosen: never one port twice
    pid_file = tmp_path / "server.pid"
    parent = subprocess.Popen([sys.executable, "-c", f"""
import sys, time
from serving.process import ServerProcess
with ServerProcess(["--model_name", "half", "--model_base_path", {half_base!r}]) as server:
    open({str(pid_file)!r}, "w").write(str(server.process.pid))
    time.sleep(600)  # killed long before
"""], cwd=REPO)
    try:
        deadline = time.monotonic() + 180
        while not pid_file.exists() or not pid_file.read_text():
            assert parent.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)  # polling the parent's start, not timing the test
        child = int(pid_file.read_text())
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 60
        while os.path.exists(f"/proc/{child}") and "zombie" not in _state(child):
            assert time.monotonic() < deadline, "the server outlived its parent"
            time.sleep(0.1)  # polling the child's exit
    finally:
        parent.kill()


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as status:
            return next(line for line in status if line.startswith("State:")).lower()
    except (OSError, StopIteration):
        return "zombie"
