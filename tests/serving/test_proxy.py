"""The HAProxy sidecar in front of stock TF Serving (serving/deploy/proxy/): the very
haproxy.cfg and wrapper scripts the Deployment ships, run by Debian's haproxy in front of
the project's server (the drop-in for tensorflow_model_server) on loopback ports, called
over real TLS: gRPC with tensorflow-serving-api's stubs, REST over https. Tokens, the
blocked reload RPC, the size cap, the probes' port, and the drain the pod's wrappers
order on SIGTERM (TF Serving's as PID 1 of its own PID namespace, as in a container).
One model server for the module; each HAProxy starts in milliseconds.

Needs Debian's ``haproxy`` (2.6): installed with apt-get when missing and this is root
(as CI is), else the tests fail saying so."""
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import (get_model_status_pb2, model_management_pb2, model_pb2,
                                     model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)

from serving.process import ServerProcess, free_port
from tests.support.certificates import make_pki
from tests.support.paths import REPO
from tests.support.gate_model import Gate, _started, _wait_for
from tests.support.serving_models import write_model_config

PROXY = os.path.join(REPO, "serving", "deploy", "proxy")
with open(os.path.join(PROXY, "haproxy.cfg")) as _cfg:
    CAP = int(re.search(r'"request over (\d+) bytes"', _cfg.read())[1])  # its cap
TOKENS = """# prediction tokens (the format of every token file: TOKEN [CALLER])
good-token alice

  bare-token
second-token bob
"""


def _haproxy() -> str:
    """Debian's haproxy, installed here when missing and this is root."""
    found = shutil.which("haproxy")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "haproxy"], check=True, env=env,
                       stdout=subprocess.DEVNULL)
        found = shutil.which("haproxy")
    if found is None:
        pytest.fail("haproxy is missing: install Debian's package as root "
                    "(apt-get install haproxy); these tests run it as the proxy")
    return found


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA and the proxy's certificate, stored as the pod mounts the Secret's tls.crt
    and tls.key: ``server.pem`` and ``server.pem.key`` (HAProxy 2.6 reads the key from
    ``<crt>.key``); and the token file."""
    folder = tmp_path_factory.mktemp("pki")
    certs = make_pki(folder)  # writes server.pem and server.key
    shutil.copy(certs.server_key, certs.server_cert + ".key")
    (folder / "tokens").write_text(TOKENS)
    certs.tls_cert, certs.tokens = certs.server_cert, str(folder / "tokens")
    return certs


@pytest.fixture(scope="module")
def gate_folder(tmp_path_factory):
    return tmp_path_factory.mktemp("gate")


@pytest.fixture(scope="module")
def server(tmp_path_factory, half_base, gate_folder):
    """The project's server with two models: ``half`` (y = x/2 + 2) and ``gate`` (its
    default signature waits until ``<gate_folder>/open`` exists: a request held in
    flight)."""
    root = tmp_path_factory.mktemp("served")
    module = Gate(str(gate_folder))
    tf.saved_model.save(module, str(root / "gate" / "1"), signatures={
        "serving_default": module.wait.get_concrete_function()})
    config = write_model_config(root / "models.config",
                                {"half": half_base, "gate": root / "gate"})
    flags = ["--model_config_file", config, "--tensorflow_inter_op_parallelism", "8",
             "--monitoring_config_file",
             os.path.join(REPO, "serving", "deploy", "monitoring.config")]
    with ServerProcess(flags) as running:
        yield running


class Proxy:
    """run-haproxy.sh (HAProxy under the pod's signal wrapper) on free loopback ports,
    in front of ``server``; ``marker`` is the file it touches once HAProxy has exited."""

    def __init__(self, server, pki, folder):
        self.ports = {name: free_port() for name in ("grpc", "rest", "health")}
        self.marker = str(folder / "proxy-stopped")
        self.env = dict(
            os.environ, HAPROXY=_haproxy(),
            HAPROXY_CONFIG=os.path.join(PROXY, "haproxy.cfg"), DRAIN_MARKER=self.marker,
            TLS_CERT=pki.tls_cert, TOKENS_FILE=pki.tokens,
            GRPC_BIND=f"127.0.0.1:{self.ports['grpc']}",
            REST_BIND=f"127.0.0.1:{self.ports['rest']}",
            HEALTH_BIND=f"127.0.0.1:{self.ports['health']}",
            TF_SERVING_GRPC=server.grpc_address,
            TF_SERVING_REST=f"127.0.0.1:{server.rest_port}")
        self.ca = pki.ca
        self.log = open(folder / "haproxy.log", "w+b")
        self.process = subprocess.Popen(["sh", os.path.join(PROXY, "run-haproxy.sh")],
                                        env=self.env, stdout=self.log,
                                        stderr=subprocess.STDOUT)
        _wait_for(self._health_answers, 30, "HAProxy's probe port")

    def _health_answers(self) -> bool:
        assert self.process.poll() is None, f"HAProxy exited:\n{self.output()}"
        try:
            return requests.get(f"{self.health_url}/v1/models/half/metadata",
                                timeout=5).status_code == 200
        except requests.ConnectionError:
            return False

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode("utf-8", errors="replace")

    @property
    def rest_url(self) -> str:
        return f"https://127.0.0.1:{self.ports['rest']}"

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['health']}"

    def rest(self, method, path, token=None, **kwargs):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        headers.update(kwargs.pop("headers", {}))
        return requests.request(method, f"{self.rest_url}{path}", headers=headers,
                                verify=self.ca, timeout=60, **kwargs)

    def channel(self):
        with open(self.ca, "rb") as f:
            credentials = grpc.ssl_channel_credentials(f.read())
        return grpc.secure_channel(f"127.0.0.1:{self.ports['grpc']}", credentials,
                                   options=[("grpc.max_receive_message_length", -1)])

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


@pytest.fixture(scope="module")
def proxy(server, pki, tmp_path_factory):
    running = Proxy(server, pki, tmp_path_factory.mktemp("proxy"))
    yield running
    running.stop()


def _predict(x, model="half"):
    request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name=model))
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.asarray(x, np.float32)))
    return request


def _grpc_error(call, *args, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as refused:
        call(*args, timeout=60, **kwargs)
    return refused.value


def _bearer(token):
    return [("authorization", f"Bearer {token}")]


# -- tokens ----------------------------------------------------------------------------
def test_rest_needs_a_token_listed_in_the_token_file(proxy):
    for headers in [{}, {"Authorization": "Bearer wrong-token"},
                    {"Authorization": "Basic Z29vZC10b2tlbg=="},  # good-token, wrong scheme
                    {"Authorization": "Bearer #"},  # a comment line is no token
                    {"Authorization": "Bearer "}]:
        for method, path in [("POST", "/v1/models/half:predict"),
                             ("GET", "/v1/models/half"),
                             ("GET", "/monitoring/prometheus/metrics")]:
            refused = proxy.rest(method, path, headers=headers,
                                 json={"instances": [1.0]} if method == "POST" else None)
            assert refused.status_code == 401, (headers, path, refused.text)
            assert refused.json() == {"error": "missing or invalid bearer token"}
            assert refused.headers["WWW-Authenticate"] == "Bearer"
    # A token with a caller, one without (its line holds only the token), a second one
    # (rotation), and the scheme in any case: all accepted.
    for token in ["good-token", "bare-token", "second-token"]:
        answer = proxy.rest("POST", "/v1/models/half:predict", token,
                            json={"instances": [1.0, 3.0]})
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"predictions": [2.5, 3.5]}
    answer = proxy.rest("GET", "/v1/models/half", headers={
        "Authorization": "bearer   second-token"})
    assert answer.json()["model_version_status"][0]["state"] == "AVAILABLE"
    metrics = proxy.rest("GET", "/monitoring/prometheus/metrics", "good-token")
    assert metrics.status_code == 200 and ":tensorflow:" in metrics.text
    # The caller is named in HAProxy's request log (what the token file's name is for).
    _wait_for(lambda: "{alice}" in proxy.output() and "{bob}" in proxy.output(), 10,
              "the callers in HAProxy's log")


def test_grpc_needs_a_token_listed_in_the_token_file(proxy):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(proxy.channel())
    for metadata in [None, _bearer("wrong-token"), [("authorization", "good-token")]]:
        error = _grpc_error(stub.Predict, _predict([1.0]), metadata=metadata)
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED, metadata
        assert error.details() == "missing or invalid bearer token"
    for token in ["good-token", "bare-token", "second-token"]:
        answer = stub.Predict(_predict([1.0, 3.0]), metadata=_bearer(token), timeout=60)
        np.testing.assert_allclose(tf.make_ndarray(answer.outputs["y"]), [2.5, 3.5])
    models = model_service_pb2_grpc.ModelServiceStub(proxy.channel())
    status = models.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(
        model_spec=model_pb2.ModelSpec(name="half")), metadata=_bearer("good-token"),
        timeout=60)
    assert status.model_version_status[0].version == 1


# -- what a token does not allow -------------------------------------------------------
def test_reload_config_and_other_paths_are_refused_with_a_good_token(proxy):
    """HandleReloadConfigRequest would replace the served models (TF Serving applies any
    config sent to it): the proxy refuses it, like every path outside the read-only API,
    and the token does not help."""
    models = model_service_pb2_grpc.ModelServiceStub(proxy.channel())
    error = _grpc_error(models.HandleReloadConfigRequest,
                        model_management_pb2.ReloadConfigRequest(),
                        metadata=_bearer("good-token"))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error.details() == ("not allowed through this proxy: "
                               "/tensorflow.serving.ModelService/HandleReloadConfigRequest")
    logged = [line for line in proxy.output().splitlines()
              if "ModelService/HandleReloadConfigRequest" in line]
    assert logged and all("<NOSRV>" in line for line in logged)  # answered, not forwarded
    for path in ["/v1/feedback", "/v1/other", "/"]:
        refused = proxy.rest("GET", path, "good-token")
        assert refused.status_code == 403, path
        assert refused.json() == {"error": "not allowed through this proxy"}


# -- the size cap ----------------------------------------------------------------------
def _raw_https(proxy, head: bytes, body: bytes = b"") -> bytes:
    """Sends a request head (and ``body``, default none) over HTTP/1.1 and reads the
    answer: without a body, a client that waits for the answer before it sends the body,
    as ``Expect: 100-continue`` clients do."""
    context = ssl.create_default_context(cafile=proxy.ca)
    with socket.create_connection(("127.0.0.1", proxy.ports["rest"]), timeout=30) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(head + body)
            answer = b""
            while not answer.endswith(b"}"):
                chunk = tls.recv(4096)
                assert chunk, f"closed before the whole answer: {answer!r}"
                answer += chunk
            return answer


def test_requests_over_the_cap_are_refused_before_the_server(proxy):
    """The server's own cap (--max_request_bytes, 64 MiB) is above the proxy's, so a
    refusal here is the proxy's; a request of exactly the cap goes through."""
    at_cap = b"{" + b" " * (CAP - 2) + b"}"
    answer = proxy.rest("POST", "/v1/models/half:predict", "good-token", data=at_cap)
    assert answer.status_code == 400  # reached the server: a JSON object, no instances
    assert answer.json() == {"error": "Missing 'inputs' or 'instances' key"}
    head = ("POST /v1/models/half:predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Authorization: Bearer good-token\r\nContent-Type: application/json\r\n")
    answer = _raw_https(proxy, f"{head}Content-Length: {CAP + 1}\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 413 "), answer
    assert answer.endswith(b'\r\n\r\n{"error": "request over 4194304 bytes"}')
    # A body without a length (chunked) could grow past the cap unseen: refused.
    answer = _raw_https(proxy, f"{head}Transfer-Encoding: chunked\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 411 "), answer
    assert answer.endswith(b'\r\n\r\n{"error": "a request body needs a Content-Length"}')

    stub = prediction_service_pb2_grpc.PredictionServiceStub(proxy.channel())
    fits = _predict(np.ones(CAP // 4 - 16))
    assert fits.ByteSize() <= CAP
    answer = stub.Predict(fits, metadata=_bearer("good-token"), timeout=60)
    assert tf.make_ndarray(answer.outputs["y"]).shape == (CAP // 4 - 16,)
    over = _predict(np.ones(CAP // 4))
    assert over.ByteSize() > CAP
    error = _grpc_error(stub.Predict, over, metadata=_bearer("good-token"))
    # HAProxy answers RESOURCE_EXHAUSTED at once, then resets the stream the client is
    # still uploading: the client reports whichever it reads first.
    assert error.code() in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.CANCELLED)
    # A compressed message could inflate past the cap inside TF Serving: refused.
    error = _grpc_error(stub.Predict, _predict([1.0] * 1000), metadata=_bearer("good-token"),
                        compression=grpc.Compression.Gzip)
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED
    assert error.details() == "compressed requests are not accepted"


def _forwarded(proxy, method) -> list:
    """HAProxy's log lines of ``method`` requests that reached the server (HTTP/2's
    request line holds the whole URL)."""
    return [line for line in proxy.output().splitlines()
            if f'"{method} ' in line and "/v1/models/" in line and "<NOSRV>" not in line]


def test_rest_bodies_the_cap_cannot_measure_are_refused_before_the_server(proxy):
    """The 413 rule reads Content-Length: a body without one (chunked, or HTTP/2 DATA
    with no content-length) and methods other than GET and POST are refused, whatever
    the token, so no body reaches the server unmeasured."""
    head = ("{method} /v1/models/half:predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Authorization: Bearer good-token\r\nContent-Type: application/json\r\n"
            "{extra}\r\n")
    chunked = b"Transfer-Encoding: chunked\r\n", b"b\r\n{\"a\": 1.0}\r\n0\r\n\r\n"
    for method in ["PUT", "PATCH", "DELETE", "OPTIONS"]:
        answer = _raw_https(proxy, head.format(method=method, extra=chunked[0].decode())
                            .encode(), chunked[1])
        assert answer.startswith(b"HTTP/1.1 405 "), (method, answer)
        assert b"\r\nallow: GET, POST\r\n" in answer, answer  # HAProxy's header case
        assert answer.endswith(b'{"error": "method not allowed through this proxy"}')
        assert not _forwarded(proxy, method), method
    # A GET carries no body: chunked (411, as for any method) or with a length (400).
    answer = _raw_https(proxy, head.format(method="GET", extra=chunked[0].decode())
                        .encode(), chunked[1])
    assert answer.startswith(b"HTTP/1.1 411 "), answer
    answer = _raw_https(proxy, head.format(method="GET", extra="Content-Length: 11\r\n")
                        .encode(), chunked[1][4:15])
    assert answer.startswith(b"HTTP/1.1 400 "), answer
    assert answer.endswith(b'{"error": "a GET request carries no body"}')
    assert not any(" 200 " not in line and "/v1/models/half:predict" in line
                   for line in _forwarded(proxy, "GET")), proxy.output()
    # HTTP/2 (the REST port offers it): DATA frames carry the body, with no
    # content-length when the client does not know the size (curl uploading stdin).
    # HAProxy answers, then resets the stream still uploading (curl may report only
    # that): its log shows the status, and that no server was reached.
    for method, status, error in [
            ("PUT", 405, "method not allowed through this proxy"),
            ("GET", 400, "a GET request carries no body"),
            ("POST", 411, "a request body needs a Content-Length")]:
        answer = _curl_h2(proxy, method, b'{"instances": [1.0]}', stdin=True)
        assert answer in [(status, {"error": error}), "CANCEL"], (method, answer)
        request = f'"{method} {proxy.rest_url}/v1/models/half:predict HTTP/2.0"'
        _wait_for(lambda: any(request in line and f" {status} " in line
                              and "<NOSRV>" in line
                              for line in proxy.output().splitlines()),
                  10, f"HAProxy's {status} to an HTTP/2 {method} in its log")
    assert _curl_h2(proxy, "POST", b'{"instances": [1.0]}', stdin=False) == (
        200, {"predictions": [2.5]})  # a body with its length goes through
    assert not _forwarded(proxy, "PUT")


def _curl_h2(proxy, method, body, stdin) -> tuple:
    """curl over HTTP/2 (nghttp2): ``body`` uploaded from stdin (no content-length) or
    from the command line (with it); returns the status and the JSON answer, or
    "CANCEL" when curl read the stream's reset first."""
    curl = shutil.which("curl")
    if curl is None:
        pytest.fail("curl is missing (apt-get install curl): the HTTP/2 cases run it")
    data = ["--upload-file", "-"] if stdin else ["--data-binary", body.decode()]
    done = subprocess.run(
        [curl, "-sS", "--http2", "--cacert", proxy.ca, "-X", method, "-H",
         "Authorization: Bearer good-token", "-H", "Content-Type: application/json",
         *data, "-w", "\n%{http_version} %{http_code}",
         f"{proxy.rest_url}/v1/models/half:predict"],
        input=body, capture_output=True, timeout=60)
    if done.returncode == 92 and b"CANCEL" in done.stderr:
        return "CANCEL"  # the stream reset after HAProxy's answer, read first
    assert done.returncode == 0, done
    answer, version_status = done.stdout.rsplit(b"\n", 1)
    version, status = version_status.decode().split()
    assert version == "2", done
    return int(status), json.loads(answer)


# -- the probes' port ------------------------------------------------------------------
def test_the_probe_port_answers_model_metadata_only(proxy):
    """The kubelet's readiness probe needs no token (the NetworkPolicy does not admit this
    port; the node is always admitted); it reaches nothing else."""
    ready = requests.get(f"{proxy.health_url}/v1/models/half/metadata", timeout=30)
    assert ready.status_code == 200
    assert ready.json()["model_spec"]["name"] == "half"
    for method, path in [("GET", "/v1/models/half"), ("POST", "/v1/models/half:predict"),
                         ("GET", "/monitoring/prometheus/metrics"),
                         ("POST", "/v1/models/half/metadata")]:
        refused = requests.request(method, f"{proxy.health_url}{path}", timeout=30,
                                   json={"instances": [1.0]})
        assert refused.status_code == 403, (method, path)
    # The probe's own request with a body (chunked, or a length) is refused too.
    head = "GET /v1/models/half/metadata HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    for extra, body in [("Transfer-Encoding: chunked", b"1\r\nx\r\n0\r\n\r\n"),
                        ("Content-Length: 1", b"x")]:
        with socket.create_connection(("127.0.0.1", proxy.ports["health"]),
                                      timeout=30) as raw:
            raw.sendall(f"{head}{extra}\r\n\r\n".encode() + body)
            answer = b""
            while not answer.endswith(b"}"):
                chunk = raw.recv(4096)
                assert chunk, f"closed before the whole answer: {answer!r}"
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 400 "), (extra, answer)
        assert answer.endswith(b'{"error": "probes carry no body"}'), answer


# -- stopping the pod ------------------------------------------------------------------
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1])
def test_a_stop_signal_drains_the_proxy_then_marks_it_stopped(server, pki, gate_folder,
                                                              tmp_path, signum):
    """The container's stop signal to run-haproxy.sh (SIGTERM; SIGUSR1 where the runtime
    sends the HAProxy image's STOPSIGNAL): HAProxy stops accepting at once, answers the
    requests in flight, exits; only then the marker that lets TF Serving's wrapper stop
    the server appears."""
    for name in os.listdir(gate_folder):  # close the gate again
        os.remove(gate_folder / name)
    proxy = Proxy(server, pki, tmp_path)
    results = {}
    try:
        def rest():
            answer = proxy.rest("POST", "/v1/models/gate:predict", "good-token",
                                json={"instances": ["rest"]})
            results["rest"] = (answer.status_code, answer.json())

        request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="gate"))
        request.inputs["tag"].CopyFrom(tf.make_tensor_proto(["grpc"]))
        stub = prediction_service_pb2_grpc.PredictionServiceStub(proxy.channel())
        in_flight = stub.Predict.future(request, metadata=_bearer("good-token"), timeout=120)
        thread = threading.Thread(target=rest, daemon=True)
        thread.start()
        _wait_for(lambda: _started(gate_folder) == 2, 60, "both requests inside the model")

        proxy.process.send_signal(signum)
        _wait_for(lambda: _refused(proxy.ports["rest"]) and _refused(proxy.ports["grpc"]),
                  10, "the client ports closed")
        assert proxy.process.poll() is None, "exited with requests in flight"
        assert not os.path.exists(proxy.marker) and not results and not in_flight.done()

        (gate_folder / "open").touch()
        answer = in_flight.result(timeout=60)
        assert [t.decode() for t in tf.make_ndarray(answer.outputs["tag"])] == ["grpc"]
        thread.join(60)
        assert results == {"rest": (200, {"predictions": ["rest"]})}
        assert proxy.process.wait(timeout=30) == 0, proxy.output()
        assert os.path.exists(proxy.marker)
    finally:
        (gate_folder / "open").touch()
        proxy.stop()


def _refused(port) -> bool:
    """Whether nothing listens on ``port``: refused, or reset while connecting (the
    listener closed with this connection still in its backlog: seen in CI under load)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        return False
    except (ConnectionRefusedError, ConnectionResetError):
        return True


class PidOne:
    """``command`` as PID 1 of a new PID namespace (``unshare``; root, as CI runs), as a
    container runtime starts a container's command; ``pid`` is its PID out here, where
    the kubelet's SIGTERM comes from."""

    def __init__(self, command, env=None):
        if os.geteuid() != 0:
            pytest.fail("this test starts a PID namespace (unshare --pid): run it as root")
        self.process = subprocess.Popen(["unshare", "--pid", "--fork", *command], env=env)
        children = f"/proc/{self.process.pid}/task/{self.process.pid}/children"
        self.pid = int(_wait_for(lambda: open(children).read().split(), 10,
                                 "the namespace's PID 1")[0])

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self):
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


def _signal_handled(pid, signum) -> bool:
    with open(f"/proc/{pid}/status") as f:
        caught = next(line for line in f if line.startswith("SigCgt:")).split()[1]
    return bool(int(caught, 16) >> (signum - 1) & 1)


def test_a_server_without_a_sigterm_handler_stops_under_the_wrapper_after_the_proxy(
        tmp_path):
    """tensorflow/serving#1853: TF Serving sets no SIGTERM handler, and the kernel drops
    such a signal sent to a PID namespace's init, even from outside: as the container's
    PID 1 it runs on until the grace period ends and it is killed. ``sleep`` stands in for
    it (TF Serving is not installed here; the rule is the kernel's, for any process
    without a handler). Under run-tf-serving.sh as PID 1 it stops on SIGTERM, once the
    proxy's marker exists, or after DRAIN_WAIT_SECONDS without it."""
    bare = PidOne(["sleep", "600"])
    try:
        assert not _signal_handled(bare.pid, signal.SIGTERM)
        os.kill(bare.pid, signal.SIGTERM)
        with pytest.raises(subprocess.TimeoutExpired):  # ignored: still running
            bare.process.wait(timeout=1)
    finally:
        bare.stop()

    marker = tmp_path / "proxy-stopped"
    wrapper = [os.path.join(PROXY, "run-tf-serving.sh"), "sleep", "600"]
    env = dict(os.environ, DRAIN_MARKER=str(marker), DRAIN_WAIT_SECONDS="60")
    wrapped = PidOne(["sh", *wrapper], env=env)
    try:
        _wait_for(lambda: _signal_handled(wrapped.pid, signal.SIGTERM), 10, "the trap")
        os.kill(wrapped.pid, signal.SIGTERM)
        with pytest.raises(subprocess.TimeoutExpired):  # waits for the proxy's drain
            wrapped.process.wait(timeout=1.5)
        marker.touch()  # run-haproxy.sh: HAProxy has exited
        assert wrapped.process.wait(timeout=10) == 128 + signal.SIGTERM  # sleep's end
    finally:
        wrapped.stop()

    env["DRAIN_WAIT_SECONDS"] = "1"
    marker.unlink()
    bounded = PidOne(["sh", *wrapper], env=env)
    try:
        _wait_for(lambda: _signal_handled(bounded.pid, signal.SIGTERM), 10, "the trap")
        started = time.monotonic()
        os.kill(bounded.pid, signal.SIGTERM)
        assert bounded.process.wait(timeout=10) == 128 + signal.SIGTERM  # no marker ever
        assert time.monotonic() - started >= 1
    finally:
        bounded.stop()


def test_kserve_runtime_stops_tf_serving_on_sigterm():
    """The KServe ServingRuntime started TF Serving as the container's PID 1, where it
    ignores SIGTERM (tensorflow/serving#1853): every scale-down or rollout held the pod
    for Knative's grace period (300 s) and then killed it. Its command, as shipped, with
    ``sleep`` standing in for TF Serving, stops on SIGTERM with the server's status."""
    from tests.support.deploy_files import _by_kind

    [runtime] = _by_kind("kserve-inferenceservice.yaml")["ServingRuntime"]["spec"][
        "containers"]
    command = runtime["command"]
    assert command[-1] == "/usr/bin/tensorflow_model_server", command
    served = PidOne([*command[:-1], "sleep", "600"])
    try:
        _wait_for(lambda: _signal_handled(served.pid, signal.SIGTERM), 10, "the trap")
        os.kill(served.pid, signal.SIGTERM)
        assert served.process.wait(timeout=10) == 128 + signal.SIGTERM  # sleep's end
    finally:
        served.stop()
