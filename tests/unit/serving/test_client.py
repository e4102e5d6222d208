"""Client retries and deadlines (serving/client.py) against fault injectors on 127.0.0.1: a
tiny gRPC server and a tiny HTTP server that fail as asked; and the REST form of
tf.Example dicts."""
import collections
import contextlib
import http.server
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (get_model_status_pb2, model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)

from serving.client import GrpcClient, RestClient, ServingClientError, Target

MARGIN = 0.3  # seconds a call may overrun its timeout (scheduling, the last socket read)


class FlakyGrpc(prediction_service_pb2_grpc.PredictionServiceServicer,
                model_service_pb2_grpc.ModelServiceServicer):
    """Fails the first ``failures`` attempts of each method with ``code`` (after
    ``delay`` seconds of injected latency), then answers y = [3.0] / version 1 AVAILABLE."""

    def __init__(self, failures: float, code=grpc.StatusCode.UNAVAILABLE, delay: float = 0.0):
        self.failures, self.code, self.delay = failures, code, delay
        self.attempts = collections.Counter()
        self.release = threading.Event()  # ends injected latency at teardown
        self._lock = threading.Lock()

    def _attempt(self, method, context):
        with self._lock:
            self.attempts[method] += 1
            attempt = self.attempts[method]
        self.release.wait(self.delay)
        if attempt <= self.failures:
            context.abort(self.code, f"injected failure {attempt}")

    def Predict(self, request, context):
        self._attempt("Predict", context)
        response = predict_pb2.PredictResponse()
        response.outputs["y"].CopyFrom(tf.make_tensor_proto([3.0], dtype=tf.float32))
        return response

    def GetModelStatus(self, request, context):
        self._attempt("GetModelStatus", context)
        response = get_model_status_pb2.GetModelStatusResponse()
        response.model_version_status.add(version=1, state=30)  # AVAILABLE
        return response


@contextlib.contextmanager
def grpc_server(servicer: FlakyGrpc):
    server = grpc.server(ThreadPoolExecutor(8))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        servicer.release.set()
        server.stop(0)


def _predict(client):
    return client.predict({"x": np.array([1.0], np.float32)})


def test_grpc_retries_unavailable_then_succeeds():
    flaky = FlakyGrpc(failures=2)
    with grpc_server(flaky) as address, \
            GrpcClient(address, Target("m"), retries=3, backoff_seconds=0.05) as client:
        assert _predict(client)["y"].tolist() == [3.0]
        assert client.status()[0]["state"] == "AVAILABLE"  # ModelService is retried too
    assert flaky.attempts == {"Predict": 3, "GetModelStatus": 3}


def test_grpc_gives_up_after_its_retries_and_retries_only_unavailable():
    for code, attempts in ((grpc.StatusCode.UNAVAILABLE, 3),
                           (grpc.StatusCode.INVALID_ARGUMENT, 1)):
        flaky = FlakyGrpc(failures=float("inf"), code=code)
        with grpc_server(flaky) as address, \
                GrpcClient(address, Target("m"), retries=2, backoff_seconds=0.05) as client:
            with pytest.raises(ServingClientError) as caught:
                _predict(client)
        assert caught.value.code == code.name and "injected failure" in caught.value.message
        assert flaky.attempts["Predict"] == attempts


def test_grpc_timeout_is_one_deadline_across_attempts():
    """Every attempt takes 0.3 s and fails: 5 attempts would take 1.5 s, the call 1 s."""
    flaky = FlakyGrpc(failures=float("inf"), delay=0.3)
    with grpc_server(flaky) as address, \
            GrpcClient(address, Target("m"), timeout=1.0, retries=4,
                       backoff_seconds=0.05) as client:
        started = time.monotonic()
        with pytest.raises(ServingClientError) as caught:
            _predict(client)
        elapsed = time.monotonic() - started
    assert caught.value.code == "DEADLINE_EXCEEDED"
    assert 1.0 - 0.05 <= elapsed < 1.0 + MARGIN, elapsed
    assert flaky.attempts["Predict"] >= 2  # it did retry inside the deadline


class Scripted(http.server.ThreadingHTTPServer):
    """Answers request n (1-based) to a path with ``script(path, n)``: (status, headers,
    JSON body, seconds of injected latency); records every (method, path) it gets."""

    daemon_threads = True

    def __init__(self, script):
        self.script, self.seen = script, []
        self.release, self.lock = threading.Event(), threading.Lock()
        super().__init__(("127.0.0.1", 0), _ScriptedHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def count(self, method: str, path: str) -> int:
        return self.seen.count((method, path))


class _ScriptedHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self._answer()

    def do_POST(self):
        self._answer()

    def _answer(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.server.lock:
            self.server.seen.append((self.command, self.path))
            n = self.server.count(self.command, self.path)
        status, headers, body, delay = self.server.script(self.path, n)
        self.server.release.wait(delay)
        data = json.dumps(body).encode()
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(data))}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def http_server(script):
    server = Scripted(script)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()


PREDICT = "/v1/models/m:predict"
STATUS = "/v1/models/m"
FEEDBACK = "/v1/feedback"
UNAVAILABLE = (503, {}, {"error": "injected: overloaded"}, 0.0)


def test_rest_retries_503_then_succeeds():
    def script(path, n):
        if n <= 2:
            return UNAVAILABLE
        if path == PREDICT:
            return 200, {}, {"predictions": [3.0]}, 0.0
        return 200, {}, {"model_version_status": [{"version": "1", "state": "AVAILABLE"}]}, 0.0

    with http_server(script) as server, \
            RestClient(server.url, Target("m"), retries=3, backoff_seconds=0.05) as client:
        assert _predict(client)["output"].tolist() == [3.0]
        assert client.status()[0]["state"] == "AVAILABLE"
    assert server.count("POST", PREDICT) == 3 and server.count("GET", STATUS) == 3


def test_rest_feedback_post_is_sent_once_while_inference_is_retried():
    with http_server(lambda path, n: UNAVAILABLE) as server, \
            RestClient(server.url, Target("m"), retries=2, backoff_seconds=0.05) as client:
        with pytest.raises(ServingClientError, match="injected: overloaded") as caught:
            client.correct([{"id": "p1", "label": "1"}])
        assert caught.value.code == "HTTP 503"
        assert server.count("POST", FEEDBACK) == 1  # its body reached the server: never again
        with pytest.raises(ServingClientError, match="HTTP 503"):
            _predict(client)
        assert server.count("POST", PREDICT) == 3  # pure inference: retried


@pytest.mark.parametrize("delay", [0.4, 30.0], ids=["slow 503s", "hanging"])
def test_rest_timeout_is_one_deadline_across_attempts(delay):
    """Each attempt is slow (0.4 s, then 503) or hangs: the call still ends at its 1 s."""
    with http_server(lambda path, n: (503, {}, {"error": "slow"}, delay)) as server, \
            RestClient(server.url, Target("m"), timeout=1.0, retries=10,
                       backoff_seconds=0.05) as client:
        started = time.monotonic()
        with pytest.raises(ServingClientError) as caught:
            _predict(client)
        elapsed = time.monotonic() - started
    assert elapsed < 1.0 + MARGIN, elapsed
    if delay < 1.0:
        assert caught.value.code in ("HTTP 503", "DEADLINE_EXCEEDED")
        assert server.count("POST", PREDICT) >= 2  # retried inside the deadline
    else:
        assert caught.value.code == "DEADLINE_EXCEEDED" and elapsed >= 1.0 - 0.05
        assert server.count("POST", PREDICT) == 1  # no time left for a second attempt


def test_rest_deadline_holds_while_the_answer_drips_in():
    """Headers at once, then the body a byte every 0.2 s (6 s in all): urllib3's timeout
    holds each read, so a 1 s call waited the 6 s and succeeded."""
    import socket

    body = b'{"model_version_status": []}'
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)

        def drip():
            connection, _ = listener.accept()
            with connection:
                connection.recv(65536)
                connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                   b"Content-Length: %d\r\n\r\n" % len(body))
                try:
                    for byte in body:
                        time.sleep(0.2)  # the slow server: what the deadline must cut off
                        connection.sendall(bytes([byte]))
                except OSError:
                    pass  # the client gave up
        server = threading.Thread(target=drip, daemon=True)
        server.start()
        with RestClient(f"http://127.0.0.1:{listener.getsockname()[1]}", Target("m"),
                        timeout=1.0, retries=0) as client:
            started = time.monotonic()
            with pytest.raises(ServingClientError) as caught:
                client.status()
            elapsed = time.monotonic() - started
        server.join(timeout=30)
    assert caught.value.code == "DEADLINE_EXCEEDED", caught.value
    assert elapsed < 1.0 + MARGIN, elapsed  # not once the whole body had come


def test_rest_honours_retry_after_within_the_deadline():
    def script(seconds):
        return lambda path, n: ((503, {"Retry-After": str(seconds)}, {"error": "later"}, 0.0)
                                if n == 1 else (200, {}, {"predictions": [3.0]}, 0.0))

    # Retry-After 1 s fits a 5 s timeout: waited for, then answered.
    with http_server(script(1)) as server, \
            RestClient(server.url, Target("m"), timeout=5.0, backoff_seconds=0.05) as client:
        started = time.monotonic()
        assert _predict(client)["output"].tolist() == [3.0]
        assert time.monotonic() - started >= 1.0
        assert server.count("POST", PREDICT) == 2
    # Retry-After 30 s does not fit: the 503 is the answer, at once.
    with http_server(script(30)) as server, \
            RestClient(server.url, Target("m"), timeout=5.0, backoff_seconds=0.05) as client:
        started = time.monotonic()
        with pytest.raises(ServingClientError, match="later"):
            _predict(client)
        assert time.monotonic() - started < 1.0
        assert server.count("POST", PREDICT) == 1


def test_retry_settings_are_checked():
    with pytest.raises(ValueError, match="gRPC makes at most 5 attempts"):
        GrpcClient("127.0.0.1:1", Target("m"), retries=5)
    with pytest.raises(ValueError, match="backoff_seconds must be > 0"):
        RestClient("http://127.0.0.1:1", Target("m"), backoff_seconds=0)
    with pytest.raises(ValueError, match="timeout must be > 0"):
        GrpcClient("127.0.0.1:1", Target("m"), timeout=0)
    # inf: an OverflowError traceback over REST, an instant DEADLINE_EXCEEDED over gRPC
    for timeout in (float("inf"), float("nan")):
        with pytest.raises(ValueError, match="timeout must be a finite number"):
            RestClient("http://127.0.0.1:1", Target("m"), timeout=timeout)


def test_example_dicts_take_rest_b64_bytes():
    from serving.client import make_example

    example = make_example({"text": [{"b64": "aMOpbGxv"}, "x"], "n": 3, "f": [0.5, 1]})
    features = example.features.feature
    assert list(features["text"].bytes_list.value) == ["héllo".encode(), b"x"]
    assert list(features["n"].int64_list.value) == [3]
    assert list(features["f"].float_list.value) == [0.5, 1.0]
