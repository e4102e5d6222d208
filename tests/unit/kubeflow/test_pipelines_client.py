"""Submit and schedule on Kubeflow Pipelines (kubeflow/pipelines_client.py).

No KFP cluster exists here: the client's requests go to a local HTTP endpoint on
127.0.0.1 that records them and answers as the KFP v2beta1 API does."""
import threading
from http.server import ThreadingHTTPServer

import pytest

from cli.main import main
from kubeflow import pipelines_client
from kubeflow.kubeflow_runner import compile_pipeline
from tests.support.json_api import JsonApiHandler
from tests.support.kubeflow_specs import IMAGE, SERVING_IMAGE, STORAGE, UNPINNED, _config


def test_submit_and_schedule_refuse_a_spec_with_unpinned_images(kfp_api, tmp_path, capsys):
    """submit and schedule send a spec compiled earlier: its own images are checked,
    before any request."""
    host, requests = kfp_api
    spec_file = str(tmp_path / "pipeline.yaml")
    compile_pipeline(_config(**{"kubeflow.serving_image": UNPINNED["kubeflow.serving_image"],
                                "kubeflow.allow_unpinned_images": True}), spec_file)
    storage = [a for k, v in STORAGE.items() for a in (f"--{k}", v)]
    for action in ("submit", "schedule"):
        assert main(["kubeflow", action, "--spec", spec_file, "--kubeflow.host", host,
                     *storage]) == 1
        error = capsys.readouterr().err
        assert "InfraValidator model server 0 image 'docker.io/tensorflow/serving:2.18.0' " \
               "is not pinned by digest" in error
        assert "kubeflow.allow_unpinned_images" in error
    assert requests == []


class _KfpApi(JsonApiHandler):
    """Records requests; answers like KFP's v2beta1 REST API."""
    requests = []

    def _answer(self):
        body = self.json_body()
        self.requests.append((self.command, self.path.split("?")[0], body,
                              self.headers.get("Authorization")))
        reply = {}
        if self.path.startswith("/apis/v2beta1/experiments") and self.command == "POST":
            reply = {"experiment_id": "exp-1", "display_name": body["display_name"]}
        elif self.path.startswith("/apis/v2beta1/runs"):
            reply = {"run_id": "run-1"}
        elif self.path.startswith("/apis/v2beta1/recurringruns"):
            reply = {"recurring_run_id": "job-1"}
        self.reply(reply)

    do_GET = do_POST = _answer


@pytest.fixture
def kfp_api():
    _KfpApi.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _KfpApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _KfpApi.requests
    server.shutdown()


def test_submit_and_schedule_send_the_spec_to_the_kfp_api(spec, kfp_api, tmp_path, capsys):
    host, requests = kfp_api
    path, raw = spec
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    common = ["--spec", path, "--kubeflow.host", host, "--token_file", str(token),
              "--kubeflow.image", IMAGE, "--kubeflow.serving_image", SERVING_IMAGE,
              *[a for k, v in STORAGE.items() for a in (f"--{k}", v)]]
    assert main(["kubeflow", "submit", "--run_name", "manual-1", "--kubeflow.namespace",
                 "team-a", *common]) == 0
    assert "run run-1 created" in capsys.readouterr().out
    posts = [(path_, body, auth) for method, path_, body, auth in requests if method == "POST"]
    assert posts[0][0] == "/apis/v2beta1/experiments"
    assert posts[0][1]["display_name"] == "bert-text-classifier"
    assert posts[0][1]["namespace"] == "team-a"  # a profile namespace (multi-user)
    run_path, run, auth = posts[1]
    assert run_path == "/apis/v2beta1/runs" and auth == "Bearer s3cret"
    assert run["experiment_id"] == "exp-1" and run["display_name"] == "manual-1"
    assert run["service_account"] == "bert-pipeline"  # kubeflow/deploy/rbac.yaml's
    assert run["pipeline_spec"]["root"] == raw["root"]
    assert run["pipeline_spec"]["defaultPipelineRoot"] == "gs://bucket/root/bert-text-classifier"

    requests.clear()
    assert main(["kubeflow", "schedule", "--run_name", "nightly", "--kubeflow.cron",
                 "30 2 * * 1-5", *common]) == 0
    assert "recurring run job-1 created (cron '0 30 2 * * 1-5'" in capsys.readouterr().out
    (job_path, job, _), = [(p, b, a) for m, p, b, a in requests
                           if m == "POST" and "recurringruns" in p]
    assert job["display_name"] == "nightly" and job["experiment_id"] == "exp-1"
    assert job["trigger"] == {"cron_schedule": {"cron": "0 30 2 * * 1-5"}}
    assert int(job["max_concurrency"]) == 1 and job["no_catchup"] is True
    assert job["mode"] == "ENABLE" and job["service_account"] == "bert-pipeline"
    assert job["pipeline_spec"]["root"] == raw["root"]


def test_a_token_never_goes_in_clear_text_to_another_machine(spec, kfp_api, tmp_path, capsys):
    """kubeflow.host http://kfp.example.com took the --token_file token on every request
    in clear text (vertex.api_endpoint refused such a URL; the KFP host did not)."""
    host, requests = kfp_api
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    common = ["--spec", spec[0], "--run_name", "r", "--kubeflow.image", IMAGE,
              "--kubeflow.serving_image", SERVING_IMAGE,
              *[a for k, v in STORAGE.items() for a in (f"--{k}", v)]]
    for remote in ("http://192.0.2.1:8080", "kfp.example.com:80"):
        assert main(["kubeflow", "submit", "--kubeflow.host", remote, "--token_file",
                     str(token), *common]) == 1
        assert ("refusing to send the --token_file token in clear text to kubeflow.host "
                f"{remote}") in capsys.readouterr().err
    assert requests == []
    assert main(["kubeflow", "submit", "--kubeflow.host", host, "--token_file", str(token),
                 *common]) == 0  # loopback (a port-forward): allowed


def test_schedule_refuses_its_cron_before_any_request(spec, kfp_api, capsys):
    host, requests = kfp_api
    assert main(["kubeflow", "schedule", "--spec", spec[0], "--run_name", "nightly",
                 "--kubeflow.host", host, "--kubeflow.cron", "0 3 * * 7",
                 "--kubeflow.image", IMAGE, "--kubeflow.serving_image", SERVING_IMAGE,
                 *[a for k, v in STORAGE.items() for a in (f"--{k}", v)]]) == 1
    assert "Sunday is 0, not 7" in capsys.readouterr().err
    assert requests == []  # not even the experiment


def test_cron_conversion_and_errors(tmp_path):
    assert pipelines_client.kfp_cron("0 3 * * *") == "0 0 3 * * *"
    assert pipelines_client.kfp_cron("0 0 3 * * *") == "0 0 3 * * *"
    with pytest.raises(ValueError, match="5 fields"):
        pipelines_client.kfp_cron("daily")
    assert pipelines_client.kfp_cron("0 3 * JUL WED") == "0 0 3 * JUL WED"
    # What croniter (the local scheduler) reads, but KFP's robfig/cron v1 would not, or
    # would read otherwise: refused before any request.
    for cron, message in [("TZ=Europe/Berlin 0 3 * * *", "no CRON_TZ=/TZ= prefix"),
                          ("0 3 * * 7", "Sunday is 0, not 7"),
                          ("0 3 * * 5-7", "Sunday is 0, not 7"),
                          ("0 3 * * 07", "Sunday is 0, not 7"),
                          ("0 3 L * *", "no L, W or #"), ("0 3 l * *", "no L, W or #"),
                          ("0 3 * * 1#2", "no L, W or #")]:
        with pytest.raises(ValueError, match=message):
            pipelines_client.kfp_cron(cron)
    assert pipelines_client.kfp_cron("0 3 * * */7") == "0 0 3 * * */7"  # a step, not Sunday
    with pytest.raises(ValueError, match="kubeflow.host is required"):
        pipelines_client.submit(_config(), str(tmp_path / "p.yaml"), "r")
    assert main(["kubeflow", "submit", "--spec", str(tmp_path / "missing.yaml"),
                 "--kubeflow.image", IMAGE]) == 1
