"""Vertex AI: the Trainer as a CustomJob in the compiled spec; the spec sent as a
PipelineJob (and a PipelineJobSchedule).

No Google Cloud here: google-cloud-aiplatform's REST client sends its requests to a
local HTTP endpoint on 127.0.0.1 that records them and answers as Vertex AI's v1 API
(and Cloud Storage's bucket lookup) does. Submission is called with google.auth's
AnonymousCredentials: Google's default credentials would each reach Google (a token
refresh, or a background lookup at iamcredentials.googleapis.com), whatever their file
says; the command line's refusal without any credentials is tested.
"""
import json
import os
import re
import threading
from http.server import ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from cli.main import main
from kubeflow import vertex
from kubeflow.kubeflow_runner import compile_pipeline
from pipeline.config import load_config
from tests.support.json_api import JsonApiHandler
from tests.support.paths import REPO

STORAGE = {"kubeflow.pipeline_root": "gs://bucket/root",
           "kubeflow.serving_dir": "gs://bucket/serving", "data.input_dir": "gs://bucket/data"}
IMAGE = "registry.example/bert-text-pipeline:7@sha256:" + "7e" * 32
SERVING_IMAGE = "docker.io/tensorflow/serving:2.18.0@sha256:" + "5f" * 32
PROJECT, REGION = "my-project-123", "europe-west4"
ACCOUNT = "trainer@my-project-123.iam.gserviceaccount.com"
VERTEX = {"vertex.project": PROJECT, "vertex.region": REGION,
          "vertex.service_account": ACCOUNT}
THREE_GPU_WORKERS = {"vertex.trainer_workers": 3, "vertex.trainer_machine_type": "a2-highgpu-1g",
                     "vertex.trainer_accelerator": "NVIDIA_TESLA_A100",
                     "vertex.trainer_accelerator_count": 2, "trainer.backup_every_steps": 20}


def _settings(**extra) -> dict:
    return dict(STORAGE, **VERTEX, **{"kubeflow.image": IMAGE,
                                      "kubeflow.serving_image": SERVING_IMAGE, **extra})


def _args(settings: dict) -> list:
    return [a for k, v in settings.items() for a in (f"--{k}", str(v))]


@pytest.fixture(scope="module")
def specs(tmp_path_factory):
    """{workers: (path, spec)}: 3 GPU replicas, and 1 replica without accelerators."""
    folder = tmp_path_factory.mktemp("vertex")
    compiled = {}
    for workers, extra in ((3, THREE_GPU_WORKERS), (1, {})):
        path = compile_pipeline(load_config(None, _settings(**extra)),
                                str(folder / f"pipeline-{workers}.yaml"))
        with open(path, encoding="utf-8") as f:
            compiled[workers] = path, yaml.safe_load(f)
    return compiled


def _pools(spec: dict) -> list:
    return vertex.trainer_settings(spec)["ai_platform_training_args"]["job_spec"][
        "worker_pool_specs"]


def test_trainer_runs_as_a_vertex_custom_job_with_a_chief_and_workers(specs):
    _, spec = specs[3]
    executors = spec["deploymentSpec"]["executors"]
    assert vertex.EXECUTOR in executors["Trainer_executor"]["container"]["args"]
    assert not any(vertex.EXECUTOR in e.get("container", {}).get("args", [])
                   for name, e in executors.items() if name != "Trainer_executor")
    settings = vertex.trainer_settings(spec)
    assert settings["ai_platform_enable_vertex"] is True
    assert settings["ai_platform_vertex_region"] == REGION
    args = settings["ai_platform_training_args"]
    assert args["project"] == PROJECT and args["job_spec"]["service_account"] == ACCOUNT
    machine = {"machine_type": "a2-highgpu-1g", "accelerator_type": "NVIDIA_TESLA_A100",
               "accelerator_count": 2}
    container = {"image_uri": IMAGE}
    # a lost replica restarts the whole job (the cluster must form again); the deadline
    assert args["job_spec"]["scheduling"] == {"restart_job_on_worker_restart": True,
                                              "timeout": "86400s"}
    assert args["job_spec"]["worker_pool_specs"] == [
        {"replica_count": 1, "machine_spec": machine, "container_spec": container},  # chief
        {"replica_count": 2, "machine_spec": machine, "container_spec": container}]
    # every replica's run_fn reads these (models/trainer.py)
    assert {k: settings["distribution"][k] for k in ("launcher", "workers",
                                                     "backup_every_steps", "accelerator")} \
        == {"launcher": "vertex", "workers": 3, "backup_every_steps": 20,
            "accelerator": "NVIDIA_TESLA_A100"}
    assert vertex.spec_images(spec) == {"Trainer CustomJob worker pool 0": IMAGE,
                                        "Trainer CustomJob worker pool 1": IMAGE}
    # kubeflow submit's image check sees the worker pools too
    from kubeflow.kubeflow_runner import spec_images
    assert {k: v for k, v in spec_images(spec).items() if "worker pool" in k} == \
        vertex.spec_images(spec)
    # The step only starts the CustomJob and waits: no accelerator, 1 CPU, 2 GB.
    assert executors["Trainer_executor"]["container"]["resources"] == {
        "cpuLimit": 1.0, "memoryLimit": 2.0}
    # Vertex AI steps reach no Kubernetes API: the project's own server checks the model.
    tasks = spec["root"]["dag"]["tasks"]
    assert "ServingCheck" in tasks and "InfraValidator" not in tasks


def test_one_trainer_replica_is_one_pool_without_accelerators(specs):
    _, spec = specs[1]
    assert _pools(spec) == [{"replica_count": 1, "machine_spec": {
        "machine_type": "n1-standard-8"}, "container_spec": {"image_uri": IMAGE}}]
    assert vertex.trainer_settings(spec)["distribution"]["workers"] == 1


def test_tfx_makes_a_custom_job_vertex_accepts_every_replica_running_the_trainer(
        specs, user_credentials):
    """TFX's own Vertex client turns the spec's training args into the CustomJob it
    creates: each pool runs `python -m tfx.scripts.run_executor` (replacing the image's
    ENTRYPOINT) in the pinned image, and the whole job parses as Vertex AI's CustomJob."""
    from google.cloud.aiplatform_v1.types import CustomJob
    from tfx.extensions.google_cloud_ai_platform.training_clients import VertexJobClient

    _, spec = specs[3]
    args = dict(vertex.trainer_settings(spec)["ai_platform_training_args"])
    args.pop("project")  # TFX's runner takes it out before the job is made
    job = VertexJobClient(REGION).create_training_job(
        {}, {}, {"custom_config": "{}"}, "tfx.components.trainer.executor.GenericExecutor",
        args, None, None)
    for pool in job["job_spec"]["worker_pool_specs"]:
        assert pool["container_spec"]["image_uri"] == IMAGE
        assert pool["container_spec"]["command"][:3] == ["python", "-m",
                                                          "tfx.scripts.run_executor"]
    parsed = CustomJob(**job)
    assert [p.replica_count for p in parsed.job_spec.worker_pool_specs] == [1, 2]
    assert parsed.job_spec.scheduling.restart_job_on_worker_restart
    assert parsed.job_spec.scheduling.timeout.total_seconds() == 86400
    assert parsed.job_spec.worker_pool_specs[1].machine_spec.accelerator_type.name == \
        "NVIDIA_TESLA_A100"
    assert parsed.job_spec.service_account == ACCOUNT


def test_the_image_runs_the_replicas_command():
    """Vertex AI's container command replaces the image's ENTRYPOINT (Beam's boot): the
    replicas need `python` on the image's PATH with TFX's run_executor, and
    TF_USE_LEGACY_KERAS from the image itself (no entrypoint.sh sets it there)."""
    import importlib.util

    with open(os.path.join(REPO, "kubeflow", "Dockerfile"), encoding="utf-8") as f:
        dockerfile = f.read()
    runtime = dockerfile.split(" AS sbom")[0]
    env = re.search(r"^ENV ((?:.*\\\n)*.*)$", runtime, re.M).group(1)
    assert re.search(r"\bTF_USE_LEGACY_KERAS=1\b", env)
    assert not re.search(r"^ENV\b[^\n]*\bPATH=", dockerfile, re.M)  # the base's PATH
    assert "python -m pip install" in runtime  # `python` is on that PATH: the build uses it
    with open(os.path.join(REPO, "kubeflow", "image", "build_base.sh"), encoding="utf-8") as f:
        stand_in = f.read()  # the stand-in base links it as python:3.10-bookworm has it
    assert "ln -s python3 /usr/local/bin/python" in stand_in
    assert "ENV PATH=/usr/local/bin:" in stand_in
    assert importlib.util.find_spec("tfx.scripts.run_executor") is not None


@pytest.mark.parametrize("setting, value, message", [
    ("vertex.trainer_workers", 0, "vertex.trainer_workers must be at least 1, got 0"),
    ("vertex.trainer_accelerator_count", 0, "vertex.trainer_accelerator_count must be at "
                                            "least 1"),
    ("vertex.region", "", "vertex.region is required"),
    ("vertex.region", "Europe West", "vertex.region 'Europe West' is not valid"),
    ("vertex.project", "My Project", "vertex.project 'My Project' is not valid"),
    ("vertex.trainer_accelerator", "T4", "'T4' is not a Vertex AI accelerator type: one "
                                         "of NVIDIA_TESLA_K80"),
    ("vertex.trainer_machine_type", "", "vertex.trainer_machine_type is required"),
    ("vertex.service_account", "trainer", "vertex.service_account 'trainer' is not valid"),
    ("vertex.api_endpoint", "http://vertex.example:80",
     "http:// only to this machine"),
])
def test_vertex_settings_are_refused_early_by_name(setting, value, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        load_config(None, {setting: value})


def test_vertex_needs_no_pinned_tf_serving_image_nor_a_path_push_folder(tmp_path):
    """On Vertex AI the candidate is checked in the step: no TF Serving image runs. A
    path push folder is the step's own disk (or /gcs/, where a rename is not atomic)."""
    compile_pipeline(load_config(None, _settings(**{
        "kubeflow.serving_image": "docker.io/tensorflow/serving:2.18.0"})),
        str(tmp_path / "p.yaml"))
    for path in ("/mnt/serving", "/gcs/bucket/serving"):
        with pytest.raises(ValueError, match=f"kubeflow.serving_dir '{path}' must be"):
            compile_pipeline(load_config(None, _settings(**{"kubeflow.serving_dir": path})),
                             str(tmp_path / "q.yaml"))


@pytest.mark.parametrize("extra, message", [
    ({"kubeflow.pipeline_root": "s3://bucket/root"},
     "kubeflow.pipeline_root 's3://bucket/root' must be gs://"),
    ({"kubeflow.trainer_workers": 2}, "set vertex.trainer_workers instead"),
    ({"kubeflow.trainer_accelerator": "NVIDIA_TESLA_T4"}, "set vertex.trainer_accelerator"),
    # compiled, then refused by google-cloud-aiplatform at submit: "Generated job ID:
    # 2024-sentiment-2026... is illegal"
    ({"name": "2024-sentiment"}, "name '2024-sentiment': Vertex AI's job ids start with a "
                                 "letter"),
    ({"name": "s" * 114}, "113 characters at most"),
])
def test_compile_refuses_what_vertex_cannot_run(extra, message, tmp_path, capsys):
    spec_file = tmp_path / "pipeline.yaml"
    assert main(["kubeflow", "compile", "--spec", str(spec_file),
                 *_args(_settings(**extra))]) == 1
    assert message in capsys.readouterr().err
    assert not spec_file.exists()


class _GoogleApis(JsonApiHandler):
    """Records requests; answers as Vertex AI's v1 REST API and Cloud Storage's bucket
    lookup do (``refuse``: Vertex AI answers 403)."""
    requests = []
    refuse = False

    def _answer(self):
        body = self.json_body()
        url = urlsplit(self.path)
        self.requests.append({"method": self.command, "path": url.path,
                              "query": parse_qs(url.query), "body": body})
        if url.path == "/storage/v1/b/bucket" and self.command == "GET":
            self.reply({"error": {"code": 404, "message": "no such bucket"}}, 404)
        elif url.path.startswith("/storage/v1/b"):  # create, IAM policy get and set
            self.reply(body or {"bindings": []} if url.path.endswith("/iam")
                       else dict(body or {}, name="bucket"))
        elif self.refuse:
            self.reply({"error": {"code": 403, "status": "PERMISSION_DENIED",
                                  "message": "aiplatform.pipelineJobs.create denied"}}, 403)
        elif url.path.endswith("/pipelineJobs"):
            job_id = parse_qs(url.query)["pipelineJobId"][0]
            self.reply(dict(body, name=f"projects/123456/locations/{REGION}/"
                                       f"pipelineJobs/{job_id}",
                            state="PIPELINE_STATE_PENDING"))
        elif url.path.endswith("/schedules"):
            self.reply(dict(body, name=f"projects/123456/locations/{REGION}/schedules/987",
                            state="ACTIVE"))
        else:
            self.reply({"error": {"code": 404, "status": "NOT_FOUND", "message": "?"}}, 404)

    do_GET = do_POST = do_PUT = _answer


@pytest.fixture
def google_apis(monkeypatch):
    """(config with vertex.api_endpoint there, recorded requests): Google's APIs on
    127.0.0.1."""
    _GoogleApis.requests, _GoogleApis.refuse = [], False
    server = ThreadingHTTPServer(("127.0.0.1", 0), _GoogleApis)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", endpoint)  # the client's bucket lookup
    yield endpoint, _GoogleApis.requests
    server.shutdown()
    from google.cloud.aiplatform import initializer
    initializer.global_config.__init__()  # aiplatform.init's project and endpoint go


@pytest.fixture
def user_credentials(tmp_path, monkeypatch):
    """Google's default credentials: a refresh token file, as `gcloud auth
    application-default login` writes it (nothing asks for a token here)."""
    path = tmp_path / "application_default_credentials.json"
    path.write_text(json.dumps({"type": "authorized_user", "client_id": "c",
                                "client_secret": "s", "refresh_token": "r"}))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))


def _anonymous():
    from google.auth.credentials import AnonymousCredentials
    return AnonymousCredentials()


def _vertex_posts(requests: list) -> list:
    return [r for r in requests if r["method"] == "POST" and r["path"].startswith("/v1/")]


def test_submit_sends_the_compiled_spec_as_a_vertex_pipeline_job(specs, google_apis):
    endpoint, requests = google_apis
    path, spec = specs[3]
    config = load_config(None, _settings(**{"vertex.api_endpoint": endpoint}))
    name = vertex.submit(config, path, "manual-1", credentials=_anonymous())
    (request,) = _vertex_posts(requests)
    assert request["path"] == f"/v1/projects/{PROJECT}/locations/{REGION}/pipelineJobs"
    job_id = request["query"]["pipelineJobId"][0]
    assert re.fullmatch(r"bert-text-classifier-\d{14}", job_id)
    assert name == f"projects/123456/locations/{REGION}/pipelineJobs/{job_id}"
    job = request["body"]
    assert job["pipelineSpec"] == spec
    assert job["runtimeConfig"]["gcsOutputDirectory"] == "gs://bucket/root/bert-text-classifier"
    assert job["serviceAccount"] == ACCOUNT
    assert job["displayName"] == "manual-1"
    assert job["labels"] == {"pipeline": "bert-text-classifier",
                             "submitted-by": "bert-pipeline"}
    # the client library creates a missing output bucket, for the run's account
    storage = [(r["method"], r["path"], r["body"]) for r in requests
               if r["path"].startswith("/storage/")]
    assert [(method, path) for method, path, _ in storage] == [
        ("GET", "/storage/v1/b/bucket"), ("POST", "/storage/v1/b"),
        ("GET", "/storage/v1/b/bucket/iam"), ("PUT", "/storage/v1/b/bucket/iam")]
    assert storage[1][2]["location"] == REGION and \
        storage[1][2]["name"] == "bucket"
    assert {"role": "roles/storage.objectCreator", "members": [f"serviceAccount:{ACCOUNT}"]} \
        in storage[3][2]["bindings"]


def test_schedule_creates_a_pipeline_job_schedule(specs, google_apis):
    endpoint, requests = google_apis
    path, spec = specs[1]
    config = load_config(None, _settings(**{"vertex.api_endpoint": endpoint,
                                            "kubeflow.cron": "30 2 * * 1-5"}))
    name = vertex.schedule(config, path, "nightly", credentials=_anonymous())
    assert name == f"projects/123456/locations/{REGION}/schedules/987"
    (request,) = _vertex_posts(requests)
    assert request["path"] == f"/v1/projects/{PROJECT}/locations/{REGION}/schedules"
    schedule = request["body"]
    assert schedule["cron"] == "30 2 * * 1-5" and schedule["displayName"] == "nightly"
    assert int(schedule["maxConcurrentRunCount"]) == 1
    assert not schedule.get("allowQueueing") and not schedule.get("catchUp")
    create = schedule["createPipelineJobRequest"]
    assert create["parent"] == f"projects/{PROJECT}/locations/{REGION}"
    assert create["pipelineJob"]["pipelineSpec"] == spec
    assert create["pipelineJob"]["serviceAccount"] == ACCOUNT


def test_a_refusal_by_vertex_is_raised(specs, google_apis):
    from google.api_core.exceptions import Forbidden

    endpoint, requests = google_apis
    _GoogleApis.refuse = True
    config = load_config(None, _settings(**{"vertex.api_endpoint": endpoint}))
    with pytest.raises(Forbidden, match="aiplatform.pipelineJobs.create denied"):
        vertex.submit(config, specs[1][0], "r", credentials=_anonymous())
    assert len(_vertex_posts(requests)) == 1


def test_the_command_line_needs_google_credentials(specs, google_apis, tmp_path,
                                                  monkeypatch, capsys):
    """`vertex submit` uses Google's default credentials; without any it says how to get
    them, before any request."""
    endpoint, requests = google_apis
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "none.json"))
    assert main(["vertex", "submit", "--spec", specs[1][0],
                 *_args(_settings(**{"vertex.api_endpoint": endpoint}))]) == 1
    error = capsys.readouterr().err
    assert "error: no Google Cloud credentials" in error
    assert "gcloud auth application-default login" in error
    assert requests == []


UNPINNED = "registry.example/bert-text-pipeline:7"


def _with_pool_image(spec: dict, image: str) -> dict:
    """A copy of a compiled spec whose Trainer worker pools run ``image``."""
    spec = json.loads(json.dumps(spec))
    constant = spec["root"]["dag"]["tasks"]["Trainer"]["inputs"]["parameters"][
        "custom_config"]["runtimeValue"]
    settings = json.loads(constant["constant"])
    for pool in settings["ai_platform_training_args"]["job_spec"]["worker_pool_specs"]:
        pool["container_spec"]["image_uri"] = image
    constant["constant"] = json.dumps(settings)
    return spec


def test_submit_refuses_specs_vertex_cannot_run_before_any_request(specs, google_apis,
                                                                   tmp_path, capsys):
    endpoint, requests = google_apis
    settings = _settings(**{"vertex.api_endpoint": endpoint})
    plain = compile_pipeline(load_config(None, dict(
        STORAGE, **{"kubeflow.image": IMAGE, "kubeflow.serving_image": SERVING_IMAGE})),
        str(tmp_path / "plain.yaml"))
    unpinned = tmp_path / "unpinned.yaml"
    unpinned.write_text(yaml.safe_dump(_with_pool_image(specs[1][1], UNPINNED)))
    cases = [
        (plain, settings, "was not compiled for Vertex AI"),
        # The PipelineJob went to the project and region given, its Trainer's CustomJob
        # to the compiled ones, as the compiled service account
        (specs[1][0], dict(settings, **{"vertex.project": "other-project-9",
                                        "vertex.region": "us-central1"}),
         f"was compiled for vertex.project '{PROJECT}' (now 'other-project-9'), "
         f"vertex.region '{REGION}' (now 'us-central1')"),
        (specs[1][0], dict(settings, **{"vertex.service_account": ""}),
         f"vertex.service_account '{ACCOUNT}' (now '')"),
        (str(unpinned), settings, f"the spec's Trainer CustomJob worker pool 0 image "
                                  f"'{UNPINNED}' is not pinned by digest"),
        (specs[1][0], dict(settings, **{"vertex.project": ""}), "vertex.project is required"),
        (str(tmp_path / "missing.yaml"), settings, "does not exist"),
    ]
    for spec_file, values, message in cases:
        assert main(["vertex", "submit", "--spec", spec_file, *_args(values)]) == 1, message
        assert message in capsys.readouterr().err
    # a cron Vertex AI would not take
    assert main(["vertex", "schedule", "--spec", specs[1][0], "--kubeflow.cron",
                 "0 0 3 * * *", *_args(settings)]) == 1
    assert "Vertex AI schedules take 5 fields" in capsys.readouterr().err
    assert requests == []


def test_vertex_steps_get_no_step_resources(specs):
    """Vertex AI runs a step without resources on its default machine (4 vCPUs, 16 GB):
    kubeflow.step_cpu and step_memory (2, 8G), for Kubernetes pods, would halve it."""
    _, spec = specs[1]
    executors = spec["deploymentSpec"]["executors"]
    assert [name for name, x in executors.items()
            if "resources" in x.get("container", {}) and name != "Trainer_executor"] == []
