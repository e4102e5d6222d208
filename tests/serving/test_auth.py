"""Rights on the local server, over real sockets: the refusal to start with a clear-text
token or open feedback on a non-loopback address, feedback tokens limited per caller and
attributed in the store, config reloads over gRPC."""
import hashlib
import os
import signal
import subprocess
import sys

import grpc
import pytest
import requests
from tensorflow_serving.apis import model_management_pb2, model_service_pb2_grpc

from cli.main import main as cli_main
from local.feedback_span import export_span
from serving.client import GrpcClient, RestClient, ServingClientError, Target
from serving.feedback import CORRECTIONS, read_jsonl
from serving.process import ServerProcess, free_port
from tests.support.feedback_models import export_redacting, feedback_data
from tests.support.paths import REPO

MONITORING = os.path.join(REPO, "serving", "deploy", "monitoring.config")


def _serve(flags, timeout=60):
    """The server's command line run to its end (it refuses before loading anything)."""
    return subprocess.run([sys.executable, "-m", "serving.server", "--port", str(free_port()),
                           "--rest_api_port", str(free_port()), *flags], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def test_refuses_to_start_with_a_clear_text_token_or_open_feedback_on_a_remote_address(
        half_base, tmp_path):
    (tmp_path / "predict").write_text("p app\n")
    (tmp_path / "feedback").write_text("f labeler\n")
    (tmp_path / "same").write_text("p labeler\n")
    model = ["--model_name", "half", "--model_base_path", half_base]
    cases = [
        (["--host", "0.0.0.0", "--auth_token_file", str(tmp_path / "predict")],
         ["--host 0.0.0.0", "--ssl_config_file", "--allow_plaintext_token"]),
        (["--host", "10.1.2.3", "--feedback_token_file", str(tmp_path / "feedback"),
          "--feedback_dir", str(tmp_path / "fb")],
         ["--host 10.1.2.3", "--ssl_config_file", "--allow_plaintext_token"]),
        (["--host", "0.0.0.0", "--feedback_dir", str(tmp_path / "fb")],
         ["--feedback_dir on --host 0.0.0.0 without --feedback_token_file"]),
        (["--host", "", "--auth_token_file", str(tmp_path / "predict")],  # all interfaces
         ["--host '' (every interface)", "--ssl_config_file"]),
        (["--host", "", "--feedback_dir", str(tmp_path / "fb")],
         ["--feedback_dir on --host '' (every interface) without --feedback_token_file"]),
        (["--host", "::", "--auth_token_file", str(tmp_path / "predict")],
         ["--host ::", "--ssl_config_file"]),
        (["--auth_token_file", str(tmp_path / "predict"), "--feedback_token_file",
          str(tmp_path / "same")], ["share 1 token", "give feedback its own"]),
    ]
    for flags, words in cases:
        done = _serve(model + flags)
        assert done.returncode == 1, (flags, done.stderr[-2000:])
        [line] = [l for l in done.stderr.splitlines() if l.startswith("error:")]
        assert all(w in line for w in words), line
        assert "Running gRPC" not in done.stdout
    assert not os.path.exists(tmp_path / "fb")  # refused before anything was created


def test_loopback_names_pass_the_exposure_check(tmp_path):
    """``::1``, ``[::1]`` and ``localhost`` with a token and feedback but no TLS get past
    the check and the token files: the next step, reading a missing monitoring config,
    is what stops them (before any model loads)."""
    (tmp_path / "predict").write_text("p app\n")
    missing = str(tmp_path / "no-monitoring.config")
    for host in ("::1", "[::1]", "localhost", "LocalHost"):
        done = _serve(["--model_name", "m", "--model_base_path", str(tmp_path / "none"),
                       "--host", host, "--auth_token_file", str(tmp_path / "predict"),
                       "--feedback_dir", str(tmp_path / "fb"),
                       "--monitoring_config_file", missing])
        assert done.returncode == 1, (host, done.stderr[-2000:])
        [line] = [l for l in done.stderr.splitlines() if l.startswith("error:")]
        assert "no-monitoring.config" in line and "--host" not in line, (host, line)
    assert not os.path.exists(tmp_path / "fb")


def test_feedback_needs_its_own_token_is_limited_per_caller_and_attributed(tmp_path):
    """Bound to 0.0.0.0 with the opt-out a TLS-terminating sidecar needs; predictions and
    feedback on their own tokens, rotated prediction tokens, corrections attributed to
    their caller in the store and not in the exported span, and limited per minute."""
    base, feedback = tmp_path / "models" / "clf", tmp_path / "feedback"
    export_redacting(str(base))
    (tmp_path / "predict").write_text("# rotation: both valid\np-old app\np-new app\n")
    (tmp_path / "feedback-tokens").write_text("fb-one labeler\nfb-two\n")
    with ServerProcess(["--model_name", "clf", "--model_base_path", str(base),
                        "--host", "0.0.0.0", "--allow_plaintext_token",
                        "--auth_token_file", str(tmp_path / "predict"),
                        "--feedback_token_file", str(tmp_path / "feedback-tokens"),
                        "--feedback_dir", str(feedback),
                        "--feedback_max_corrections_per_minute", "3",
                        "--monitoring_config_file", MONITORING], token="p-new") as server:
        target = Target("clf")
        url = f"{server.rest_url}/v1/feedback"
        ids = []
        for token in ("p-old", "p-new"):
            with RestClient(server.rest_url, target, token=token) as rest, \
                    GrpcClient(server.grpc_address, target, token=token) as by_grpc:
                ids += [p.id for p in rest.predict_texts(["hi", "a long text here, long"])]
                ids += [p.id for p in by_grpc.predict_texts(["hello"])]
        # The CLI reads the server's format: the first token of the file is sent.
        assert cli_main(["predict", "--server", server.rest_url, "--model", "clf",
                         "--token_file", str(tmp_path / "predict"), "hi"]) == 0
        # A feedback token does not predict; a prediction token does not correct.
        with RestClient(server.rest_url, target, token="fb-one") as rest, \
                GrpcClient(server.grpc_address, target, token="fb-one") as by_grpc:
            for client in (rest, by_grpc):
                with pytest.raises(ServingClientError, match="(403|PERMISSION_DENIED).*may "
                                   "not send predictions.*--auth_token_file"):
                    client.predict_texts(["hi"])
        body = {"corrections": [{"id": ids[0], "label": "long"}]}
        denied = requests.post(url, json=body, headers={"Authorization": "Bearer p-new"})
        assert denied.status_code == 403
        assert "may not send feedback" in denied.json()["error"]
        assert "--feedback_token_file" in denied.json()["error"]
        assert requests.post(url, json=body).status_code == 401
        with RestClient(server.rest_url, target, token="p-new", feedback_token="p-new") as rest:
            with pytest.raises(ServingClientError, match="HTTP 403"):
                rest.correct(body["corrections"])
        assert not os.path.exists(feedback / CORRECTIONS)

        # The feedback token: corrections stored with their caller, at most 3 a minute.
        with RestClient(server.rest_url, target, token="p-new", feedback_token="fb-one") as rest:
            assert rest.predict_texts(["hi"])[0].label == "short"  # each token its use
            assert rest.correct([{"id": ids[0], "label": "long"},
                                 {"id": ids[1], "label": "short"}]) == 2
            with pytest.raises(ServingClientError, match="unknown prediction id"):
                rest.correct([{"id": "nope", "label": "long"}])  # refused: not counted
            assert rest.correct([{"id": ids[2], "label": "long"}]) == 1
        limited = requests.post(url, json={"corrections": [{"id": ids[3], "label": "long"}]},
                                headers={"Authorization": "Bearer fb-one"})
        assert limited.status_code == 429, limited.text
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        assert "caller 'labeler'" in limited.json()["error"]
        assert "--feedback_max_corrections_per_minute" in limited.json()["error"]
        other = requests.post(url, json={"corrections": [{"id": ids[3], "label": "long"}]},
                              headers={"Authorization": "Bearer fb-two"})
        assert other.json() == {"accepted": 1}  # another caller has its own minute
        too_many = requests.post(url, json={"corrections": [
            {"id": i, "label": "long"} for i in ids[:4]]}, headers={"Authorization":
                                                                   "Bearer fb-two"})
        assert too_many.status_code == 429, too_many.text
        metrics = requests.get(f"{server.rest_url}/monitoring/prometheus/metrics",
                               headers={"Authorization": "Bearer p-new"}).text
        assert 'feedback_requests_rate_limited_total{caller="labeler"} 1.0' in metrics
        # A token without a name is named by its place in the file, not by its value.
        assert ('feedback_requests_rate_limited_total{caller="--feedback_token_file line '
                '2"} 1.0') in metrics
        assert requests.get(f"{server.rest_url}/monitoring/prometheus/metrics",
                            headers={"Authorization": "Bearer fb-one"}).status_code == 403

    stored = {c["id"]: c["caller"] for c in read_jsonl(str(feedback / CORRECTIONS))}
    assert stored == {ids[0]: "labeler", ids[1]: "labeler", ids[2]: "labeler",
                      ids[3]: "--feedback_token_file line 2"}
    # Nothing a metrics reader or the store's reader sees helps guess a token offline:
    # neither a token nor a prefix of its sha256 (6 hex digits: any longer one holds it).
    store = (feedback / CORRECTIONS).read_text()
    for token in ("p-old", "p-new", "fb-one", "fb-two"):
        digest = hashlib.sha256(token.encode()).hexdigest()
        for seen in (metrics, store):
            assert token not in seen and digest[:6] not in seen, token
    span = export_span(str(feedback), feedback_data(tmp_path / "data", text_column="sentence"))
    exported = open(os.path.join(span, "feedback.tsv"), encoding="utf-8").read()
    assert exported.splitlines()[0] == "sentence\tlabel"
    assert "labeler" not in exported and "--feedback_token_file" not in exported


def test_reloading_the_config_over_grpc_changes_nothing(half_base, tmp_path):
    """TF Serving applies any config a caller sends to HandleReloadConfigRequest; this
    server refuses it to everyone, and a feedback token may not even ask."""
    (tmp_path / "predict").write_text("p app\n")
    (tmp_path / "feedback").write_text("f labeler\n")
    with ServerProcess(["--model_name", "half", "--model_base_path", half_base,
                        "--auth_token_file", str(tmp_path / "predict"),
                        "--feedback_token_file", str(tmp_path / "feedback")],
                       token="p") as server:
        stub = model_service_pb2_grpc.ModelServiceStub(grpc.insecure_channel(
            server.grpc_address))
        request = model_management_pb2.ReloadConfigRequest()
        request.config.model_config_list.config.add(name="other", base_path="/tmp/other",
                                                    model_platform="tensorflow")
        for token, code in (("p", grpc.StatusCode.UNIMPLEMENTED),
                            ("f", grpc.StatusCode.PERMISSION_DENIED),
                            ("x", grpc.StatusCode.UNAUTHENTICATED)):
            with pytest.raises(grpc.RpcError) as caught:
                stub.HandleReloadConfigRequest(request, timeout=30, metadata=[
                    ("authorization", f"Bearer {token}")])
            assert caught.value.code() == code, (token, caught.value.details())
        with GrpcClient(server.grpc_address, Target("half"), token="p") as client:
            assert [s["state"] for s in client.status()] == ["AVAILABLE"]
        assert requests.get(f"{server.rest_url}/v1/models/other", headers={
            "Authorization": "Bearer p"}).status_code == 404


def test_grpc_refuses_a_call_without_a_token_before_parsing_its_message(half_base, tmp_path):
    """REST checks the token before reading the body; gRPC parsed the whole message (up
    to --max_request_bytes, on each worker) before its handler looked at the token, so
    callers without one could make the server build large messages. A message that does
    not even parse shows which came first: UNAUTHENTICATED now, not a parse failure. The
    Authorization header of a malformed request is never logged (tornado logged it)."""
    (tmp_path / "tokens").write_text("s3cret app\n")
    flags = ["--model_name", "half", "--model_base_path", half_base,
             "--auth_token_file", str(tmp_path / "tokens")]
    with ServerProcess(flags, token="s3cret") as server:
        with grpc.insecure_channel(server.grpc_address) as channel:
            raw = channel.unary_unary("/tensorflow.serving.PredictionService/Predict",
                                      request_serializer=lambda b: b,
                                      response_deserializer=lambda b: b)
            for metadata in ((), (("authorization", "Bearer wrong"),)):
                with pytest.raises(grpc.RpcError) as refused:
                    raw(b"\xff\xff\xff not a PredictRequest", metadata=metadata, timeout=30)
                assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.RpcError) as refused:  # with the token: parsed, refused
                raw(b"\xff\xff\xff", metadata=(("authorization", "Bearer s3cret"),),
                    timeout=30)
            assert refused.value.code() != grpc.StatusCode.UNAUTHENTICATED
        import http.client  # requests refuses such a header itself
        connection = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=30)
        connection.putrequest("GET", "/v1/models/half")
        connection._output(b"Authorization: Bearer s3cret\x01")  # noqa: SLF001 - raw
        connection.endheaders()
        assert connection.getresponse().status == 400
        connection.close()
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=60)
    assert "Malformed HTTP message" in server.log() or "400" in server.log()
    assert "s3cret" not in server.log()
