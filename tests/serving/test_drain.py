"""SIGTERM drains the server as Kubernetes expects: readiness turns false at once, the
listeners stay open for ``--drain_delay_seconds``, every request in flight gets its whole
answer within ``--drain_grace_seconds``, then the process exits 0 without a traceback.

A real server child process and a real SIGTERM. The requests in flight are held by the
model itself: its ``wait`` signature writes a marker file, then waits (50 ms sleeps, no
CPU spent) until a file named ``open`` exists. So the test knows every request is inside
the server when it sends the signal, and that none can finish before it releases them,
on any machine speed."""
import contextlib
import os
import signal
import threading
import time

import grpc
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_service_pb2_grpc

from serving.process import ServerProcess
from tests.support.gate_model import _started, _wait_for, export_gate

REST_CLIENTS, GRPC_CLIENTS = 10, 4  # as measured in the issue: 10 REST, 4 gRPC in flight
DELAY, GRACE = 8, 60  # --drain_delay_seconds (room for a busy CI), --drain_grace_seconds
# Each waiting request holds one of TensorFlow's inter-op threads (as many as cores).
GATE_FLAGS = ["--tensorflow_inter_op_parallelism", "32", "--model_name", "gate",
              "--model_base_path"]


@pytest.fixture
def gate(tmp_path):
    folder = tmp_path / "gate"
    folder.mkdir()
    base = tmp_path / "models" / "gate"
    export_gate(str(base), 1, str(folder))
    return folder, str(base)


def _release(folder, clients) -> None:
    (folder / "open").touch()
    _wait_for(clients.done, 120, "every answer after release")


class Clients:
    """REST and gRPC requests to the ``wait`` signature, each on its own thread; every
    answer or error is kept by its tag."""

    def __init__(self, server: ServerProcess):
        self.server = server
        self.results = {}
        self.threads = [threading.Thread(target=self._rest, args=(f"rest{i}",), daemon=True)
                        for i in range(REST_CLIENTS)]
        self.threads += [threading.Thread(target=self._grpc, args=(f"grpc{i}",), daemon=True)
                         for i in range(GRPC_CLIENTS)]
        for thread in self.threads:
            thread.start()

    def _rest(self, tag):
        try:
            response = requests.post(f"{self.server.rest_url}/v1/models/gate:predict",
                                     json={"instances": [tag]}, timeout=180)
            self.results[tag] = (response.status_code, response.json())
        except Exception as error:  # noqa: BLE001  a lost request: recorded, asserted
            self.results[tag] = ("lost", repr(error)[:300])

    def _grpc(self, tag):
        stub = prediction_service_pb2_grpc.PredictionServiceStub(
            grpc.insecure_channel(self.server.grpc_address))
        request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="gate"))
        request.inputs["tag"].CopyFrom(tf.make_tensor_proto([tag]))
        try:
            answer = stub.Predict(request, timeout=180)
            self.results[tag] = ("OK", [t.decode() for t in
                                        tf.make_ndarray(answer.outputs["tag"])])
        except grpc.RpcError as error:
            self.results[tag] = (error.code().name, error.details())

    def done(self) -> bool:
        return len(self.results) == len(self.threads)


def _probe(server, path: str, **kwargs):
    """The status code of a request, or None once the port refuses connections."""
    try:
        return requests.request(kwargs.pop("method", "GET"), f"{server.rest_url}{path}",
                                timeout=30, **kwargs).status_code
    except requests.ConnectionError:
        return None


def test_sigterm_answers_every_request_in_flight_then_exits_0(gate):
    folder, base = gate
    flags = [*GATE_FLAGS, base,
             "--drain_delay_seconds", str(DELAY), "--drain_grace_seconds", str(GRACE)]
    with ServerProcess(flags) as server:
        assert _probe(server, "/v1/models/gate/metadata") == 200  # ready
        clients = Clients(server)
        _wait_for(lambda: _started(folder) == REST_CLIENTS + GRPC_CLIENTS, 60,
                  "every request inside the model")
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)

        # Readiness (the manifests' probe path) fails at once; the port still answers.
        _wait_for(lambda: _probe(server, "/v1/models/gate/metadata") == 503, DELAY,
                  "readiness false")
        quick = _probe(server, "/v1/models/gate:predict", method="POST",
                       json={"signature_name": "quick", "instances": ["new"]})
        assert quick == 200  # new requests are still served during the delay
        _wait_for(lambda: _probe(server, "/v1/models/gate") is None, DELAY + 60,
                  "the REST listener closed")
        assert time.monotonic() - signalled >= DELAY, "the listener closed before the delay"
        stub = prediction_service_pb2_grpc.PredictionServiceStub(
            grpc.insecure_channel(server.grpc_address))
        request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(
            name="gate", signature_name="quick"))
        request.inputs["tag"].CopyFrom(tf.make_tensor_proto(["late"]))
        with pytest.raises(grpc.RpcError) as refused:  # gRPC stopped taking new calls too
            stub.Predict(request, timeout=30)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert not clients.results, f"answered before release: {clients.results}"
        assert server.process.poll() is None, "exited with requests in flight"

        _release(folder, clients)
        returncode = server.process.wait(timeout=GRACE)
        log = server.log()
    lost = {tag: result for tag, result in clients.results.items()
            if result not in ((200, {"predictions": [tag]}), ("OK", [tag]))}
    assert not lost, f"requests in flight at SIGTERM not answered: {lost}\n{log[-3000:]}"
    assert returncode == 0, log[-3000:]
    assert "Traceback" not in log and "CancelledError" not in log, log[-3000:]
    assert "draining" in log


def test_requests_still_running_at_the_end_of_the_grace_period_are_named(gate):
    """A request that outlives ``--drain_grace_seconds`` does not hold the pod: the
    server exits (status 1), saying how many requests it cut."""
    folder, base = gate
    flags = [*GATE_FLAGS, base,
             "--drain_delay_seconds", "0", "--drain_grace_seconds", "2"]
    with ServerProcess(flags) as server:
        clients = Clients(server)
        _wait_for(lambda: _started(folder) == REST_CLIENTS + GRPC_CLIENTS, 60,
                  "every request inside the model")
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        try:
            returncode = server.process.wait(timeout=60)
        finally:
            _release(folder, clients)
        log = server.log()
    assert time.monotonic() - signalled < 60
    assert returncode == 1, log[-3000:]
    assert "10 REST and 4 gRPC requests still running" in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]


def _raw_request(sock, body: bytes, path: str = "/v1/models/gate:predict") -> None:
    """An HTTP/1.1 POST on a kept-alive socket (HTTP/1.1 keeps connections by default)."""
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(body)}\r\n\r\n".encode() + body)


def test_a_kept_alive_connection_gets_no_new_work_once_the_ports_are_closed(gate):
    """A request on a connection opened before the listeners closed was run during the
    grace period (and could push the exit into a cut): it is answered 503 with
    Connection: close, while the request in flight still gets its answer."""
    import socket
    folder, base = gate
    with ServerProcess([*GATE_FLAGS, base, "--drain_delay_seconds", "0",
                        "--drain_grace_seconds", "120"]) as server:
        with socket.create_connection(("127.0.0.1", server.rest_port), timeout=30) as sock:
            _raw_request(sock, b'{"signature_name": "quick", "instances": ["before"]}')
            sock.settimeout(30)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")  # kept alive
            held = threading.Thread(target=requests.post, daemon=True, kwargs=dict(
                url=f"{server.rest_url}/v1/models/gate:predict",
                json={"instances": ["held"]}, timeout=180))
            held.start()
            _wait_for(lambda: _started(folder) == 1, 60, "the held request inside the model")
            server.process.send_signal(signal.SIGTERM)
            _wait_for(lambda: "ports closed" in server.log(), 60, "the ports closed")
            _raw_request(sock, b'{"signature_name": "quick", "instances": ["after"]}')
            received = b""
            while chunk := sock.recv(65536):  # b"" once the server closes it
                received += chunk
            (folder / "open").touch()
            held.join(60)
            returncode = server.process.wait(timeout=60)
    assert received.startswith(b"HTTP/1.1 503"), received[:300]
    assert b"connection: close" in received.lower() and b"ports are closed" in received
    assert b'"after"' not in received
    assert returncode == 0, server.log()[-3000:]


def test_a_run_whose_client_went_away_holds_the_exit_until_it_ends(gate):
    """A REST client that disconnects leaves its model run going in the worker pool; the
    drain waits for the run (it holds the servable the exit unloads) instead of counting
    the request done when its connection closed."""
    import socket
    folder, base = gate
    flags = [*GATE_FLAGS, base, "--drain_delay_seconds", "0",
             "--drain_grace_seconds", str(GRACE)]
    with ServerProcess(flags) as server:
        with socket.create_connection(("127.0.0.1", server.rest_port), timeout=30) as sock:
            _raw_request(sock, b'{"instances": ["gone"]}')
            _wait_for(lambda: _started(folder) == 1, 60, "the request inside the model")
        server.process.send_signal(signal.SIGTERM)
        _wait_for(lambda: "ports closed; waiting for" in server.log(), 60, "ports closed")
        assert "waiting for 1 REST and 0 gRPC requests" in server.log(), server.log()[-3000:]
        assert server.process.poll() is None, "exited with a model run going"
        (folder / "open").touch()
        returncode = server.process.wait(timeout=GRACE)
        log = server.log()
    assert returncode == 0 and "Traceback" not in log, log[-3000:]


def test_a_kept_alive_connection_is_closed_after_its_answer_while_draining(gate):
    """While draining, an answer on a kept-alive connection says Connection: close and
    the server closes it, so the client's next request goes to another replica (and a
    busy client cannot hold the drain)."""
    import socket
    _, base = gate
    # The listeners stay open 600 s: the connection can only close because of the answer.
    with ServerProcess([*GATE_FLAGS, base, "--drain_delay_seconds", "600"]) as server:
        with socket.create_connection(("127.0.0.1", server.rest_port), timeout=30) as sock:
            server.process.send_signal(signal.SIGTERM)
            _wait_for(lambda: _probe(server, "/v1/models/gate/metadata") == 503, 30,
                      "readiness false")
            _raw_request(sock, b'{"signature_name": "quick", "instances": ["kept"]}')
            sock.settimeout(10)  # well before the server's idle timeout (30 s) closes it
            received = b""
            while chunk := sock.recv(65536):  # returns b"" once the server closes
                received += chunk
    assert received.startswith(b"HTTP/1.1 200"), received[:300]
    assert b"connection: close" in received.lower() and b'"kept"' in received


def test_a_second_signal_stops_at_once(gate):
    """Ctrl-C twice: the second one ends the drain delay's wait (exit 1, said so)."""
    _, base = gate
    flags = [*GATE_FLAGS, base,
             "--drain_delay_seconds", "600"]
    with ServerProcess(flags) as server:
        server.process.send_signal(signal.SIGINT)
        _wait_for(lambda: _probe(server, "/v1/models/gate/metadata") == 503, 30,
                  "readiness false")
        server.process.send_signal(signal.SIGINT)
        returncode = server.process.wait(timeout=60)
        log = server.log()
    assert returncode == 1, log[-3000:]
    assert "second signal" in log and "Traceback" not in log, log[-3000:]


def test_drain_flags_are_checked():
    from serving.server import parse_flags

    for flag in ("--drain_delay_seconds", "--drain_grace_seconds"):
        with pytest.raises(SystemExit):
            parse_flags(["--model_base_path", "/m", flag, "-1"])


def test_sigterm_during_the_first_load_ends_the_start_when_the_server_is_pid_1(tmp_path):
    """In a container the server is PID 1, and PID 1 ignores a signal it has no handler
    for: a SIGTERM while the first version loaded (its warmup held here) was lost, and the
    server then served until Kubernetes killed it. Run as PID 1 of a new PID namespace
    (unshare, as root: CI's user); the signal now ends the start once that load returns."""
    import shutil
    import subprocess
    import sys

    folder = tmp_path / "gate"
    folder.mkdir()
    export_gate(str(tmp_path / "models" / "gate"), 1, str(folder), held_load=True)
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [shutil.which("unshare"), "--pid", "--fork", "--mount-proc", sys.executable, "-m",
             "serving.server", *GATE_FLAGS, str(tmp_path / "models" / "gate"),
             "--port", "0", "--rest_api_port", "0", "--grpc_socket_path",
             str(tmp_path / "grpc.sock")],
            stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ, TF_USE_LEGACY_KERAS="1"))
    server = None
    try:
        _wait_for(lambda: _started(folder) == 1, 120, "the warmup inside the model")
        [server] = map(int, open(f"/proc/{process.pid}/task/{process.pid}/children").read()
                       .split())
        os.kill(server, signal.SIGTERM)
        (folder / "open").touch()  # the load returns
        try:
            code = process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            code = None
        assert code == 128 + signal.SIGTERM, log.read_text()[-3000:]
        assert "Running gRPC ModelServer" not in log.read_text()
    finally:
        for pid in (server, process.pid):  # unshare's death does not end its child
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        process.wait()


def test_the_grpc_health_service_serves_without_a_token_and_fails_while_draining(gate,
                                                                                 tmp_path):
    """--enable_grpc_healthcheck_service was accepted and ignored (UNIMPLEMENTED), so
    Kubernetes' gRPC probes never passed. As TF Serving: the server, ModelService and
    PredictionService are SERVING; a probe carries no token; draining turns them
    NOT_SERVING with readiness."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    _, base = gate
    (tmp_path / "token").write_text("s3cret\n")
    with ServerProcess([*GATE_FLAGS, base, "--enable_grpc_healthcheck_service",
                        "--auth_token_file", str(tmp_path / "token"),
                        "--drain_delay_seconds", "600"], token="s3cret") as server:
        stub = health_pb2_grpc.HealthStub(grpc.insecure_channel(server.grpc_address))

        def status(service: str) -> int:
            return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=30).status
        for service in ("", "ModelService", "PredictionService"):
            assert status(service) == health_pb2.HealthCheckResponse.SERVING, service
        server.process.send_signal(signal.SIGTERM)
        _wait_for(lambda: status("") == health_pb2.HealthCheckResponse.NOT_SERVING, 30,
                  "the health service NOT_SERVING")
        assert status("PredictionService") == health_pb2.HealthCheckResponse.NOT_SERVING
        server.process.send_signal(signal.SIGTERM)  # a second signal: stop now
        server.process.wait(timeout=60)
