"""The local server keeps the readiness contract the deployment's probes use."""
import shutil
import signal
import subprocess
import sys
import time

import requests

from serving.process import ServerProcess
from tests.support.deploy_files import SERVER_FLAGS, _probe_script
from tests.support.paths import REPO


# -- the readiness contract ------------------------------------------------------------
def _get(url, deadline):
    """GET once the server answers at all (its REST port opens after start-up)."""
    while True:
        try:
            return requests.get(url, timeout=5)
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)  # polling the child's start-up


def test_metadata_answers_404_until_a_version_is_loaded(tmp_path, saved_model):
    """The readiness path of the manifests: not ready with no version, ready once one
    is loaded (TF Serving's status path answers 200 while a version is LOADING)."""
    base = tmp_path / "half"
    base.mkdir()
    flags = ["--model_name", "half", "--model_base_path", str(base),
             "--file_system_poll_wait_seconds", "1"]
    with ServerProcess(flags, wait_for=[]) as server:
        deadline = time.monotonic() + 180
        url = f"{server.rest_url}/v1/models/half/metadata"
        before = _get(url, deadline)
        assert before.status_code == 404, before.text
        assert "error" in before.json()
        shutil.copytree(saved_model, base / "1")
        while (after := requests.get(url, timeout=5)).status_code == 404:
            assert time.monotonic() < deadline, "version 1 never became ready"
            time.sleep(0.2)  # polling the server's file-system poll
        assert after.status_code == 200, after.text
        body = after.json()
        assert body["model_spec"]["version"] == "1"
        assert "serving_default" in body["metadata"]["signature_def"]["signature_def"]


def test_the_servers_readiness_probe_passes_only_a_loaded_model_over_tls_with_a_token(
        tmp_path, saved_model):
    """The manifest's probe, run against a real server with TLS and a token: it fails
    closed (not loaded, wrong token, no token file, another certificate, draining) and
    passes once a version is loaded."""
    from tests.support.certificates import make_pki, ssl_config

    certs = make_pki(tmp_path)
    tokens = tmp_path / "predict-tokens"
    tokens.write_text("# rotated in: the first line's token is the probe's\n"
                      "new-token probe\nold-token\n")
    base = tmp_path / "bert_classifier"
    base.mkdir()
    flags = ["--model_name", "bert_classifier", "--model_base_path", str(base),
             "--file_system_poll_wait_seconds", "1", "--auth_token_file", str(tokens),
             "--ssl_config_file", ssl_config(tmp_path / "ssl.config", certs),
             "--drain_delay_seconds", "30"]

    def probe(token_file=tokens, cert=certs.server_cert):
        script = _probe_script().replace(f'"{SERVER_FLAGS.auth_token_file}"',
                                         repr(str(token_file)))
        script = script.replace('"/secrets/tls/tls.crt"', repr(cert))
        script = script.replace("127.0.0.1:8501", f"127.0.0.1:{server.rest_port}")
        done = subprocess.run([sys.executable, "-c", script], capture_output=True,
                              text=True, timeout=30, cwd=REPO)  # the image's project
        return done.returncode, done.stderr

    with ServerProcess(flags, wait_for=[], ca_file=certs.ca, token="new-token") as server:
        deadline = time.monotonic() + 180
        while "Connection refused" in (result := probe())[1]:
            assert time.monotonic() < deadline, "the server never opened its REST port"
            time.sleep(0.2)  # polling the child's start-up
        assert result[0] != 0 and "HTTP Error 404" in result[1], result  # nothing loaded
        shutil.copytree(saved_model, base / "1")
        while (result := probe())[0] != 0:
            assert "HTTP Error 404" in result[1], result
            assert time.monotonic() < deadline, "version 1 never became ready"
            time.sleep(0.2)  # polling the server's file-system poll
        wrong = tmp_path / "wrong"
        wrong.write_text("not-a-token\nnor-this-one\n")
        assert probe(wrong)[0] != 0 and "HTTP Error 401" in probe(wrong)[1]
        # A token rotated in at the top of the mounted Secret (the kubelet updates it in
        # place) is unknown to the running server until it restarts: the probe took the
        # first line and said not ready, taking the only replica out of service.
        rotated = tmp_path / "rotated"
        rotated.write_text("brand-new-token\nnew-token\n")
        assert probe(rotated) == (0, "")
        code, error = probe(tmp_path / "missing")
        assert code != 0 and "cannot read it" in error, error
        comments = tmp_path / "comments"
        comments.write_text("# only comments: no token\n\n")
        code, error = probe(comments)
        assert code != 0 and "holds no token" in error, error
        code, error = probe(cert=certs.other_ca)  # a certificate the server does not hold
        assert code != 0 and "CERTIFICATE_VERIFY_FAILED" in error
        assert probe()[0] == 0
        server.process.send_signal(signal.SIGTERM)  # draining: ports open, not ready
        code, error = probe()
        assert code != 0 and "HTTP Error 503" in error, error
        assert server.process.poll() is None  # still draining, ports open
