"""Kubeflow: the same pipeline compiled to a KFP v2 spec (kubeflow/kubeflow_runner.py):
components in order, images pinned by digest, resources and Beam args, the serving spec,
step pods as the workflow controller makes them, the Trainer's TFJob settings, and the
runner resolving storage, image, paths and platform."""
import json
import re

import kubernetes_validate
import pytest
import yaml

from cli.main import main
from kubeflow.kubeflow_runner import (compile_pipeline, kubeflow_pipeline, serving_spec,
                                      spec_images, tfjob_distribution, trainer_distribution)
from pipeline.config import load_config
from tests.support.kubeflow_cluster import KUBERNETES_VERSIONS, _by_kind_and_name, _pod_document
from tests.support.kubeflow_specs import (IMAGE, SERVING_DIGEST, SERVING_IMAGE, STORAGE,
                                          UNPINNED, _config)
from tests.support.pipelines import _by_id, _everything
from tests.support.pod_security import violations


IN_ORDER = ["TextExampleGen", "StatisticsGen", "ExampleValidator", "DataGate", "DriftCheck",
            "Transform", "Trainer", "Evaluator", "ModelCard", "Pusher"]


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


def test_the_drift_check_reads_the_last_accepted_report_through_tfx_own_strategy(spec):
    """KFP v2's compiler takes TFX's LatestArtifactStrategy alone (the local runner's
    LatestIfAnyStrategy would not compile), for DriftCheck's own report type."""
    _, raw = spec
    tasks = raw["root"]["dag"]["tasks"]
    assert tasks["DriftCheck"]["inputs"]["artifacts"]["accepted"] == {"taskOutputArtifact": {
        "outputArtifactKey": "report", "producerTask": "last_accepted_drift_report"}}
    strategy = tasks["last_accepted_drift_report"]["inputs"]["parameters"]["resolver_class"]
    assert '"__class__": "LatestArtifactStrategy"' in strategy["runtimeValue"]["constant"]
    assert "title: bert_pipeline.DriftReport" in str(raw["components"])


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
    # KFP's driver makes the type a resource limit: a GKE type becomes the resource name
    assert trainer["resources"] == {"cpuLimit": 4.0, "memoryLimit": 32.0, "accelerator": {
        "type": "nvidia.com/gpu", "count": "2"}}
    # storage.*'s S3 endpoint reaches every step's tf.io.gfile (the conftest sets none)
    assert all("env" not in c for c in containers.values())
    # the Trainer is told which accelerator it was given: it fails rather than train on CPU
    assert '\\"accelerator\\": \\"nvidia.com/gpu\\"' in json.dumps(
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


@pytest.mark.parametrize("settings, message", [
    # KFP's launcher parses the pipeline root as a bucket (gs, s3, minio); TFX's gfile
    # reads no minio://; the compiled spec mounts no volume for a path.
    ({"kubeflow.pipeline_root": "/mnt/pipeline-root"},
     "kubeflow.pipeline_root '/mnt/pipeline-root' must be gs://BUCKET/... or s3://"),
    ({"kubeflow.pipeline_root": "minio://bucket/root"}, "TFX reads no minio://"),
    # InfraValidator's stock TF Serving loads the candidate from under the pipeline root
    # and reads no s3://: every run trained for hours, then failed there
    ({"kubeflow.pipeline_root": "s3://bucket/root"},
     "kubeflow.pipeline_root 's3://bucket/root': InfraValidator loads the candidate from "
     "under the pipeline root in kubeflow.serving_image (stock TF Serving), which reads no "
     "s3://"),
    ({"kubeflow.serving_dir": "/mnt/serving"}, "kubeflow.serving_dir '/mnt/serving' must be"),
    ({"kubeflow.beam_args": "--runner=PortableRunner --s3_secret_access_key=SuperSecret"},
     "--s3_secret_access_key in the Beam options would be written into the compiled spec"),
    # as Beam reads them: two arguments, an abbreviation, the top-level beam_args
    ({"kubeflow.beam_args": "--s3_access_key_id SuperSecret"}, "--s3_access_key_id in"),
    ({"kubeflow.beam_args": "--s3_secret=SuperSecret"}, "--s3_secret_access_key in"),
    ({"beam_args": "--azure_connection_string=SuperSecret"}, "--azure_connection_string in"),
    # credentials inside a URL: user:password@, a SAS signature
    ({"kubeflow.beam_args": "--s3_endpoint_url=https://AKIA:SuperSecret@minio:9000"},
     "a Beam option holds a URL with a credential (https://minio...)"),
    ({"kubeflow.beam_args": "--s3_endpoint_url=https://SuperSecret@minio:9000"},
     "a Beam option holds a URL with a credential"),  # a token alone as the user
    ({"kubeflow.beam_args": "--blob_service_endpoint=https://acct.blob.core.windows.net/"
                            "?sv=2022&sig=SuperSecret"}, "a Beam option holds a URL with a"),
    ({"kubeflow.trainer_accelerator": "TPU_V3"},
     "kubeflow.trainer_accelerator 'TPU_V3': the Trainer pod takes a Kubernetes resource"),
    ({"kubeflow.trainer_memory": "16GB"},
     "kubeflow.trainer_memory '16GB': expected a positive Kubernetes quantity"),
    ({"kubeflow.trainer_memory": "16"}, "is below 256Mi (a bare number is bytes)"),
    # Cloud Storage FUSE: the push's rename of a folder is not atomic there
    ({"kubeflow.serving_dir": "/gcs/bucket/serving"}, "must be gs://BUCKET"),
])
def test_compile_refuses_what_could_only_fail_on_the_cluster(settings, message, tmp_path):
    spec_file = tmp_path / "p.yaml"
    with pytest.raises(ValueError, match=re.escape(message)):
        compile_pipeline(_config(**settings), str(spec_file))
    assert not spec_file.exists()
    if "kubeflow.beam_args" in settings:
        assert "SuperSecret" not in "".join(p.read_text() for p in tmp_path.iterdir())


def test_storage_endpoint_and_region_reach_every_step(tmp_path):
    """tf.io.gfile in each step reads S3_ENDPOINT (MinIO): without it every step spoke to
    AWS. Beam's workers get their own options."""
    spec_file = compile_pipeline(_config(**{
        "kubeflow.pipeline_root": "gs://b/root", "kubeflow.serving_dir": "s3://b/serving",
        "storage.s3_endpoint": "http://minio.minio:9000", "storage.s3_region": "eu-1"}),
        str(tmp_path / "p.yaml"))
    with open(spec_file, encoding="utf-8") as f:
        executors = yaml.safe_load(f)["deploymentSpec"]["executors"]
    envs = [{e["name"]: e["value"] for e in x["container"]["env"]}
            for x in executors.values() if "container" in x]
    assert envs and all(env == {"S3_ENDPOINT": "http://minio.minio:9000",
                                "AWS_ENDPOINT_URL_S3": "http://minio.minio:9000",
                                "AWS_REGION": "eu-1", "AWS_DEFAULT_REGION": "eu-1"}
                        for env in envs)


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


def test_serving_resources_are_checked_as_kubernetes_quantities():
    with pytest.raises(ValueError, match="kubeflow.serving_memory '4 GB'"):
        serving_spec(_config(**{"kubeflow.serving_memory": "4 GB"}))
    with pytest.raises(ValueError, match="kubeflow.serving_cpu '0'"):
        serving_spec(_config(**{"kubeflow.serving_cpu": "0"}))


# -- step pods -------------------------------------------------------------------------
def _step_pod(container: dict, controller: dict = None) -> dict:
    """The pod Argo's workflow controller makes for one compiled step: Argo's init and
    wait containers beside KFP's main one, with the controller settings (None: the
    defaults of a KFP install, which set none)."""
    controller = controller or {}
    workflow = yaml.safe_load(controller.get("workflowDefaults", "{}")) or {}
    main = yaml.safe_load(controller.get("mainContainer", "{}")) or {}
    executor = yaml.safe_load(controller.get("executor", "{}")) or {}
    argo = dict(image="quay.io/argoproj/argoexec:v3.4.17", **executor)
    pod = {"initContainers": [dict(argo, name="init")],
           "containers": [dict(main, name="main", image=container["image"],
                               command=container["command"]), dict(argo, name="wait")]}
    if workflow.get("spec", {}).get("securityContext"):
        pod["securityContext"] = workflow["spec"]["securityContext"]
    return pod


def test_step_pods_pass_restricted_with_the_workflow_controller_settings(tmp_path):
    """KFP 2.5's spec carries no securityContext (its PipelineContainerSpec has no such
    field): the step pods pass "restricted" only with the cluster's workflow controller
    settings that kubeflow/deploy ships."""
    from kfp.pipeline_spec import pipeline_spec_pb2

    container_spec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec
    assert not any("security" in f.name.lower() for f in container_spec.DESCRIPTOR.fields)
    path = compile_pipeline(_config(), str(tmp_path / "pipeline.yaml"))
    with open(path, encoding="utf-8") as f:
        spec = yaml.safe_load(f)
    containers = [e["container"] for e in spec["deploymentSpec"]["executors"].values()
                  if "container" in e]
    assert len(containers) >= 10
    assert "securityContext" not in json.dumps(spec)
    configmap = _by_kind_and_name("workflow-controller-configmap.yaml")[
        ("ConfigMap", "workflow-controller-configmap")]
    for container in containers:
        assert violations(_step_pod(container))  # as a KFP install runs them
        pod = _step_pod(container, configmap["data"])
        assert violations(pod) == [], container["image"]
        assert pod["securityContext"]["runAsUser"] == 1000  # the image's user
        for version in KUBERNETES_VERSIONS:  # Argo's settings are Kubernetes' own fields
            kubernetes_validate.validate(_pod_document(pod), version, strict=True)


def test_kubeflow_runner_resolves_storage_image_paths_and_platform():
    config = load_config(None, {
        "data.input_dir": "/mnt/data", "output.root": "local_out",
        "kubeflow.pipeline_root": "gs://b/root", "kubeflow.serving_dir": "s3://b/serving",
        "kubeflow.project_dir": "/app", "kubeflow.trainer_memory": "512M"})
    pipeline = kubeflow_pipeline(config)
    components = _by_id(pipeline)
    assert pipeline.pipeline_info.pipeline_root == "gs://b/root/bert-text-classifier"
    assert components["TextExampleGen"].exec_properties["input_base"] == "/mnt/data"
    assert components["ImportSchemaGen"].exec_properties["schema_file"] == \
        "/app/schema/schema.pbtxt"  # inside the image
    assert "s3://b/serving/bert_classifier" in str(
        components["Pusher"].exec_properties["push_destination"])
    # no kubeflow.beam_args: the top-level ones (DirectRunner in each pod), as they are
    assert pipeline.beam_pipeline_args == config.beam_args
    assert pipeline.metadata_connection_config is None  # KFP's own
    assert "InfraValidator" in components and "ServingCheck" not in components
    assert components["Trainer"].platform_config.memory_limit == pytest.approx(0.512)
    assert "local_out" not in _everything(pipeline)


@pytest.mark.parametrize("settings,message", [
    ({"trainer.workers": 2}, "trainer.workers 2 is for local runs"),
    ({"vertex.trainer_workers": 3}, "vertex.trainer_workers set without vertex.project"),
    ({"kubeflow.trainer_workers": 0}, "kubeflow.trainer_workers must be at least 1"),
])
def test_replica_settings_another_runner_reads_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        trainer_distribution(_config(**settings))


# -- the compiled spec -----------------------------------------------------------------
def test_the_compiled_trainer_runs_the_distributed_executor_with_the_tfjob(tmp_path):
    config = _config(**{"kubeflow.trainer_workers": 2, "kubeflow.allow_unpinned_images": True,
                        "kubeflow.image": "registry.example/bert-text-pipeline:7",
                        "kubeflow.trainer_accelerator": "NVIDIA_TESLA_T4"})
    path = compile_pipeline(config, str(tmp_path / "pipeline.yaml"))
    with open(path, encoding="utf-8") as f:
        spec = yaml.safe_load(f)
    trainer = spec["root"]["dag"]["tasks"]["Trainer"]
    custom_config = json.loads(
        trainer["inputs"]["parameters"]["custom_config"]["runtimeValue"]["constant"])
    assert custom_config["distribution"] == tfjob_distribution(config)
    assert custom_config["distribution"]["workers"] == 2
    label = spec["components"][trainer["componentRef"]["name"]]["executorLabel"]
    args = spec["deploymentSpec"]["executors"][label]["container"]["args"]
    assert args[args.index("--executor_class_path") + 1] == \
        "components.distributed_trainer.executor.Executor"
    # The step only creates the job and waits: no accelerator, little CPU and memory; the
    # replicas have the accelerator and check that they see it.
    resources = spec["deploymentSpec"]["executors"][label]["container"]["resources"]
    assert resources == {"cpuLimit": 1.0, "memoryLimit": 2.0}
    assert custom_config["distribution"]["accelerator"] == "NVIDIA_TESLA_T4"
    assert "accelerator" not in custom_config


@pytest.mark.parametrize("beam_args,option", [
    ("--runner=DataflowRunner --project=p --sdk_container_image=reg/worker:latest",
     "--sdk_container_image"),
    ("--runner=PortableRunner --job_endpoint=j:8099 --environment_config=reg/worker:latest",
     "--environment_config"),
])
def test_a_beam_worker_image_given_in_the_beam_args_needs_a_digest_too(
        tmp_path, beam_args, option):
    """A worker image of the user's own was written into every Beam step of the spec with
    a tag, and submit's check of the spec's images passed it."""
    from kubeflow.kubeflow_runner import require_pinned_spec

    with pytest.raises(ValueError, match=f"the Beam worker image {option} in "
                                         f"kubeflow.beam_args 'reg/worker:latest' is not "
                                         f"pinned by digest"):
        compile_pipeline(_config(**{"kubeflow.beam_args": beam_args}), str(tmp_path / "p.yaml"))
    spec_file = compile_pipeline(_config(**{"kubeflow.beam_args": beam_args,
                                            "kubeflow.allow_unpinned_images": True}),
                                 str(tmp_path / "p.yaml"))
    spec = yaml.safe_load(open(spec_file, encoding="utf-8"))
    assert f"executor Transform_executor Beam workers ({option})" in spec_images(spec)
    with pytest.raises(ValueError, match="reg/worker:latest' is not pinned by digest"):
        require_pinned_spec(_config(), spec)  # as submit checks a spec compiled earlier
    pinned = beam_args.replace(":latest", f"@{SERVING_DIGEST}")
    compile_pipeline(_config(**{"kubeflow.beam_args": pinned}), str(tmp_path / "q.yaml"))


def test_every_step_pod_has_cpu_and_memory(tmp_path):
    """Only the Trainer had resources: the other pods (Evaluator runs the model in its
    own) ran BestEffort, evicted first under memory pressure, and a profile namespace
    with a ResourceQuota refused them on the cluster."""
    spec_file = compile_pipeline(_config(**{"kubeflow.step_cpu": 3,
                                            "kubeflow.step_memory": "6Gi"}),
                                 str(tmp_path / "p.yaml"))
    executors = yaml.safe_load(open(spec_file, encoding="utf-8"))["deploymentSpec"][
        "executors"]
    resources = {name: x["container"].get("resources") for name, x in executors.items()
                 if "container" in x}
    trainer = resources.pop("Trainer_executor")
    assert trainer["cpuLimit"] == 4.0 and trainer["memoryLimit"] == 16.0  # its own
    assert resources and all(r is not None and r["cpuLimit"] == 3.0 and
                             abs(r["memoryLimit"] - 6 * 2**30 / 1e9) < 1e-9
                             for r in resources.values()), resources
    with pytest.raises(ValueError, match="kubeflow.step_memory '6 GB'"):
        compile_pipeline(_config(**{"kubeflow.step_memory": "6 GB"}), str(tmp_path / "q.yaml"))
    with pytest.raises(ValueError, match="kubeflow.step_cpu must be above 0"):
        compile_pipeline(_config(**{"kubeflow.step_cpu": 0}), str(tmp_path / "q.yaml"))
