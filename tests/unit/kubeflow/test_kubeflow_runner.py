"""Kubeflow: the same pipeline compiled to a KFP v2 spec; Beam args for distributed
Beam workers; submit/schedule requests.

No KFP cluster exists here: the client's requests go to a local HTTP endpoint on
127.0.0.1 that records them and answers as the KFP v2beta1 API does.
"""
import json
import threading
from http.server import ThreadingHTTPServer

import pytest
import yaml

from cli.main import main
from kubeflow import pipelines_client
from kubeflow.beam_args import DATAFLOW, runner_name, worker_beam_args
from kubeflow.kubeflow_runner import compile_pipeline, spec_images
from pipeline.config import load_config
from tests.support.json_api import JsonApiHandler
from tests.support.paths import REPO

STORAGE = {"kubeflow.pipeline_root": "gs://bucket/root",
           "kubeflow.serving_dir": "gs://bucket/serving", "data.input_dir": "gs://bucket/data"}
PIPELINE_DIGEST = "sha256:" + "7e" * 32
SERVING_DIGEST = "sha256:" + "5f" * 32
IMAGE = f"registry.example/bert-text-pipeline:7@{PIPELINE_DIGEST}"
SERVING_IMAGE = f"docker.io/tensorflow/serving:2.18.0@{SERVING_DIGEST}"
IN_ORDER = ["TextExampleGen", "StatisticsGen", "ExampleValidator", "DataGate", "DriftCheck",
            "Transform", "Trainer", "Evaluator", "ModelCard", "Pusher"]


def _config(**extra):
    return load_config(None, dict(STORAGE, **{"kubeflow.image": IMAGE,
                                              "kubeflow.serving_image": SERVING_IMAGE,
                                              **extra}))


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    config = _config(**{"data.span_pattern": "span-{SPAN}", "data.window_spans": 3,
                        "model.warm_start": True, "enable_cache": True,
                        "kubeflow.image": IMAGE,
                        "kubeflow.trainer_accelerator": "NVIDIA_TESLA_T4",
                        "kubeflow.trainer_accelerator_count": 2,
                        "kubeflow.trainer_memory": "32G",
                        "kubeflow.beam_args": "--runner=DataflowRunner --project=p "
                                              "--region=europe-west4"})
    path = compile_pipeline(config, str(tmp_path_factory.mktemp("kfp") / "pipeline.yaml"))
    return path, yaml.safe_load(open(path, encoding="utf-8"))


def _depends_on(tasks: dict, task: str, other: str) -> bool:
    seen, todo = set(), [task]
    while todo:
        for dep in tasks[todo.pop()].get("dependentTasks", []):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return other in seen


def test_spec_loads_with_kfp_and_every_component_is_there_in_order(spec):
    from kfp.components import load_component_from_file

    path, raw = spec
    loaded = load_component_from_file(path)
    assert loaded.name == "bert-text-classifier"
    assert loaded.pipeline_spec.default_pipeline_root == "gs://bucket/root/bert-text-classifier"
    tasks = raw["root"]["dag"]["tasks"]
    for name in IN_ORDER + ["InfraValidator"]:
        assert name in tasks, name
    for earlier, later in zip(IN_ORDER, IN_ORDER[1:]):
        assert _depends_on(tasks, later, earlier), f"{later} must run after {earlier}"
    # InfraValidator loads the model with its card (what the Pusher pushes) in TF
    # Serving; the Pusher needs both blessings
    assert _depends_on(tasks, "InfraValidator", "ModelCard")
    assert "model_with_card" in json.dumps(tasks["InfraValidator"]["inputs"])
    assert "model_with_card" in json.dumps(tasks["Pusher"]["inputs"])
    assert _depends_on(tasks, "Pusher", "InfraValidator")
    # the atomic push (staged, verified, renamed) runs in the cluster too
    executors = raw["deploymentSpec"]["executors"]
    assert "components.atomic_pusher.executor.Executor" in \
        executors["Pusher_executor"]["container"]["args"]
    # warm start and the gate both read the latest blessed model
    assert "latest_blessed_model_resolver-model-resolver" in tasks["Trainer"]["dependentTasks"]
    assert all(t["cachingOptions"] == {"enableCache": True} for t in tasks.values()
               if "cachingOptions" in t)
    assert sum("cachingOptions" in t for t in tasks.values()) >= len(IN_ORDER)


def test_image_resources_beam_args_and_infra_validator(spec):
    _, raw = spec
    executors = raw["deploymentSpec"]["executors"]
    containers = {name: e["container"] for name, e in executors.items() if "container" in e}
    assert len(containers) >= len(IN_ORDER)
    assert {c["image"] for c in containers.values()} == {IMAGE}
    # every step goes through the entrypoint that sets KFP_NAMESPACE for InfraValidator
    assert {tuple(c["command"]) for c in containers.values()} == {
        ("/pipeline/kubeflow/entrypoint.sh",)}
    assert raw["schemaVersion"] == "2.1.0"
    trainer = containers["Trainer_executor"]
    assert trainer["resources"] == {"cpuLimit": 4.0, "memoryLimit": 32.0, "accelerator": {
        "type": "NVIDIA_TESLA_T4", "count": "2"}}
    # the Trainer is told which accelerator it was given: it fails rather than train on CPU
    assert '\\"accelerator\\": \\"NVIDIA_TESLA_T4\\"' in json.dumps(
        raw["root"]["dag"]["tasks"]["Trainer"])
    assert "--runner=DataflowRunner" in containers["Transform_executor"]["args"]
    assert "--region=europe-west4" in containers["StatisticsGen_executor"]["args"]
    for step in ("StatisticsGen", "Transform", "Evaluator"):  # Dataflow workers: the image
        assert f"--sdk_container_image={IMAGE}" in containers[f"{step}_executor"]["args"]
    # an ordinary container step running TFX's executor with the hardened model server pod
    infra_args = containers["InfraValidator_executor"]["args"]
    assert infra_args[:2] == ["--executor_class_path",
                              "components.kubernetes_infra_validator.executor.Executor"]
    infra = raw["components"]["InfraValidator"]["inputDefinitions"]["parameters"]
    assert set(infra) >= {"serving_spec", "request_spec", "validation_spec"}
    serving = json.loads(raw["root"]["dag"]["tasks"]["InfraValidator"]["inputs"][
        "parameters"]["serving_spec"]["runtimeValue"]["constant"])
    assert serving["tensorflow_serving"] == {
        "image_name": "docker.io/tensorflow/serving:2.18.0", "digests": [SERVING_DIGEST]}
    resources = {"cpu": "1", "memory": "4Gi"}
    assert serving["kubernetes"] == {
        "service_account_name": "bert-pipeline-model-server",
        "active_deadline_seconds": 900,  # loading (300 s) + 10 minutes, not 24 hours
        "serving_pod_overrides": {"resources": {"requests": resources,
                                                "limits": resources}}}
    # every image the spec runs is the pinned one given
    assert set(spec_images(raw).values()) == {IMAGE, SERVING_IMAGE}
    pusher = json.dumps(raw["root"]["dag"]["tasks"]["Pusher"]["inputs"])
    assert "gs://bucket/serving/bert_classifier" in pusher
    schema = json.dumps(raw["root"]["dag"]["tasks"]["ImportSchemaGen"]["inputs"])
    assert "/pipeline/schema/schema.pbtxt" in schema  # inside the image


def test_compile_refuses_local_storage_and_json(tmp_path):
    with pytest.raises(ValueError, match="kubeflow.pipeline_root is required"):
        compile_pipeline(load_config(None, {"kubeflow.image": IMAGE,
                                            "kubeflow.serving_image": SERVING_IMAGE}),
                         str(tmp_path / "p.yaml"))
    with pytest.raises(ValueError, match="data.input_dir 'data/sample' must be a URI"):
        compile_pipeline(_config(**{"data.input_dir": "data/sample"}), str(tmp_path / "p.yaml"))
    with pytest.raises(ValueError, match="as .yaml"):
        compile_pipeline(_config(), str(tmp_path / "p.json"))


def test_compile_refuses_bfloat16_serving_check_infra_validator_cannot_honour(tmp_path):
    """InfraValidator runs stock TF Serving with its own flags: the setting would be
    ignored there, so it is refused, naming where the flag goes instead."""
    with pytest.raises(ValueError, match="output.serving_mixed_precision is for the project's "
                                         "own model server.*tf-serving.yaml"):
        compile_pipeline(_config(**{"output.serving_mixed_precision": "bfloat16"}),
                         str(tmp_path / "p.yaml"))


UNPINNED = {"kubeflow.image": "registry.example/bert-text-pipeline:7",
            "kubeflow.serving_image": "docker.io/tensorflow/serving:2.18.0"}


@pytest.mark.parametrize("setting", UNPINNED)
def test_compile_refuses_an_image_without_a_digest(setting, tmp_path, capsys):
    """A tag can be moved to other contents: the spec must name images by digest."""
    spec_file = tmp_path / "pipeline.yaml"
    args = ["kubeflow", "compile", "--spec", str(spec_file), "--kubeflow.image", IMAGE,
            "--kubeflow.serving_image", SERVING_IMAGE, f"--{setting}", UNPINNED[setting],
            *[a for k, v in STORAGE.items() for a in (f"--{k}", v)]]
    assert main(args) == 1
    error = capsys.readouterr().err
    assert f"{setting} '{UNPINNED[setting]}' is not pinned by digest" in error
    for hint in ("kubeflow.allow_unpinned_images", "skopeo inspect", "docker inspect",
                 "podman"):
        assert hint in error
    assert not spec_file.exists()
    # the opt-out compiles with the tag
    assert main(args + ["--kubeflow.allow_unpinned_images", "true"]) == 0
    raw = yaml.safe_load(spec_file.read_text())
    assert UNPINNED[setting] in spec_images(raw).values()


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


def _worker_container(args: list):
    """The container Beam itself starts the workers in for ``args`` (None: no separate
    workers), read with Beam's own code: Dataflow's image option after Beam's validation,
    a portable runner's default environment."""
    from apache_beam.options.pipeline_options import (PipelineOptions, PortableOptions,
                                                      WorkerOptions)
    from apache_beam.options.pipeline_options_validator import PipelineOptionsValidator
    from apache_beam.runners.dataflow.internal import apiclient
    from apache_beam.runners.runner import create_runner

    options = PipelineOptions(args)
    name = runner_name(options)
    if name in ("", "directrunner"):
        return None
    runner = create_runner(name)
    validator = PipelineOptionsValidator(options, runner)
    if name == DATAFLOW:  # as at submission: the legacy image flag is copied over
        assert validator.validate_sdk_container_image_options(
            options.view_as(WorkerOptions)) == []
        return apiclient.get_container_image_from_options(options)
    assert validator.validate_environment_options(options.view_as(PortableOptions)) == []
    environment = runner.default_environment(options)
    return getattr(environment, "container_image", type(environment).__name__)


DOCKER_ENV = ["--environment_type=DOCKER", f"--environment_config={IMAGE}"]
PORTABLE = ["--runner=PortableRunner", "--job_endpoint=jobs:8099"]
BEAM_CASES = {  # given args -> (what is added, the workers' container)
    "dataflow": (["--runner=DataflowRunner", "--project=p"],
                 [f"--sdk_container_image={IMAGE}"], IMAGE),
    "dataflow, space form, short name": (["--runner", "dataflow", "--project", "p"],
                                         [f"--sdk_container_image={IMAGE}"], IMAGE),
    "dataflow, class path": (["--runner=apache_beam.runners.dataflow.dataflow_runner."
                              "DataflowRunner"], [f"--sdk_container_image={IMAGE}"], IMAGE),
    "dataflow, own image": (["--runner=DataflowRunner", "--sdk_container_image=mine:1"],
                            [], "mine:1"),
    "dataflow, legacy image flag": (["--runner=DATAFLOWRUNNER",
                                     "--worker_harness_container_image=mine:1"], [],
                                    "mine:1"),
    "portable": (PORTABLE, DOCKER_ENV, IMAGE),
    "portable, any case, space form": (["--runner", "portablerunner", "--job_endpoint",
                                        "jobs:8099"], DOCKER_ENV, IMAGE),
    "portable, own sdk image carried over": (
        PORTABLE + ["--sdk_container_image=mine:1"],
        ["--environment_type=DOCKER", "--environment_config=mine:1"], "mine:1"),
    "portable, own environment": (
        PORTABLE + ["--environment_type=PROCESS",
                    '--environment_config={"command": "/opt/apache/beam/boot"}'],
        [], "ProcessEnvironment"),
    "portable, own docker image": (PORTABLE + ["--environment_config=theirs:2"], [],
                                   "theirs:2"),
    "flink cluster": (["--runner=FlinkRunner", "--flink_master=flink:8081"], DOCKER_ENV,
                      IMAGE),
    "flink in the pod": (["--runner=flink"], [], "PythonLoopbackEnvironment"),
    "spark cluster": (["--runner=SparkRunner", "--spark_master_url=spark://spark:7077"],
                      DOCKER_ENV, IMAGE),
    "spark in the pod": (["--runner=SparkRunner"], [], "PythonLoopbackEnvironment"),
    "direct (the default)": (load_config().beam_args, [], None),
    "direct, named": (["--runner=DirectRunner"], [], None),
}


@pytest.mark.parametrize("case", BEAM_CASES)
def test_distributed_beam_workers_get_the_pipeline_image(case):
    given, added, container = BEAM_CASES[case]
    args = worker_beam_args(given, IMAGE)
    assert args == given + added
    assert _worker_container(args) == container
    if added:  # without them, Beam's stock image would run this project's steps
        assert _worker_container(given).startswith(("apache/beam_python3.10_sdk:",
                                                    "gcr.io/cloud-dataflow/"))


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
    assert main(["kubeflow", "submit", "--run_name", "manual-1", *common]) == 0
    assert "run run-1 created" in capsys.readouterr().out
    posts = [(path_, body, auth) for method, path_, body, auth in requests if method == "POST"]
    assert posts[0][0] == "/apis/v2beta1/experiments"
    assert posts[0][1]["display_name"] == "bert-text-classifier"
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


def test_cron_conversion_and_errors(tmp_path):
    assert pipelines_client.kfp_cron("0 3 * * *") == "0 0 3 * * *"
    assert pipelines_client.kfp_cron("0 0 3 * * *") == "0 0 3 * * *"
    with pytest.raises(ValueError, match="5 fields"):
        pipelines_client.kfp_cron("daily")
    with pytest.raises(ValueError, match="kubeflow.host is required"):
        pipelines_client.submit(_config(), str(tmp_path / "p.yaml"), "r")
    assert main(["kubeflow", "submit", "--spec", str(tmp_path / "missing.yaml"),
                 "--kubeflow.image", IMAGE]) == 1


def test_kubeflow_compile_needs_an_image_set_explicitly(tmp_path, capsys):
    """No default image: 'bert-text-pipeline:latest' was written and no cluster pulls it.
    submit and schedule send a compiled spec, whose image is in it: they need none."""
    spec_file = tmp_path / "pipeline.yaml"
    storage = [a for k, v in STORAGE.items() for a in (f"--{k}", v)]
    assert main(["kubeflow", "compile", "--spec", str(spec_file), *storage]) == 1
    assert "kubeflow.image is required" in capsys.readouterr().err
    assert not spec_file.exists()
    with pytest.raises(ValueError, match="kubeflow.image is required"):
        compile_pipeline(load_config(None, STORAGE), str(tmp_path / "p.yaml"))
    spec_file.write_text("pipelineInfo: {name: p}\n")
    for action in ("submit", "schedule"):  # refused for the missing host, not the image
        assert main(["kubeflow", action, "--spec", str(spec_file), *storage]) == 1
        error = capsys.readouterr().err
        assert "kubeflow.host is required" in error and "kubeflow.image" not in error


def test_pipeline_image_holds_every_package_the_checkpoint_and_the_pins():
    """No Docker here to build kubeflow/Dockerfile: check it against the project instead,
    so a new package, a changed pin or checkpoint cannot be left out of the image."""
    import os
    import re

    dockerfile = open(os.path.join(REPO, "kubeflow", "Dockerfile"), encoding="utf-8").read()
    copied = set(re.findall(r"^COPY (\S+) \1$", dockerfile, re.M))
    setup_py = open(os.path.join(REPO, "setup.py"), encoding="utf-8").read()
    packages = set(re.findall(r'"(\w+)"', re.search(r"find_packages\(include=\[(.*?)\]",
                                                     setup_py, re.S).group(1)))
    assert packages <= copied, f"not in the image: {packages - copied}"
    assert "schema" in copied  # data.schema_path resolves inside the image
    # the checkpoint package is a pin of requirements.txt, installed with its hash
    # (every flag of that install: tests/test_image.py)
    assert re.search(r"--require-hashes [-\w ]*-r requirements\.txt", dockerfile)
    # Beam's boot stays the entrypoint (the image is also the Beam worker image)
    assert not re.search(r"^ENTRYPOINT", dockerfile, re.M)
    with open(os.path.join(REPO, "requirements.txt"), encoding="utf-8") as f:
        beam = re.search(r"^apache-beam==([^\s\\]+)", f.read(), re.M).group(1)  # hashed
    assert f"ARG BASE_IMAGE=docker.io/apache/beam_python3.10_sdk:{beam}" in dockerfile
    assert _config().kubeflow.project_dir == "/pipeline"  # WORKDIR of the image
    assert "WORKDIR /pipeline" in dockerfile
