"""Least privilege on Kubeflow: InfraValidator's model server pod, the service accounts
and Roles of kubeflow/deploy/rbac.yaml, and the step pods Argo creates with
kubeflow/deploy/workflow-controller-configmap.yaml, against the "restricted" Pod
Security Standard (tests/pod_security.py).

No cluster here: the model server runner talks to a local HTTP endpoint on 127.0.0.1
that answers as the Kubernetes API does (the executor's own pod, the created pod's
phase, its log) and records every request, through the real kubernetes client.
"""
import ast
import inspect
import json
import os
import re
import threading
from http.server import ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import kubernetes_validate
import pytest
import yaml
from google.protobuf import json_format
from kubernetes import client as k8s
from tfx.components.infra_validator import serving_bins
from tfx.components.infra_validator.model_server_runners import kubernetes_runner
from tfx.proto import infra_validator_pb2
from tfx.utils import kube_utils

from components.kubernetes_infra_validator import hardened_runner
from components.kubernetes_infra_validator.executor import make_runner
from kubeflow.kubeflow_runner import compile_pipeline, serving_spec
from tests.support.paths import REPO
from tests.support.json_api import JsonApiHandler
from tests.support.pod_security import violations
from tests.unit.kubeflow.test_kubeflow_runner import IMAGE, SERVING_IMAGE, _config

DEPLOY = os.path.join(REPO, "kubeflow", "deploy")
KUBERNETES_VERSIONS = ["1.25", "1.37"]  # oldest and newest kubernetes-validate knows
NAMESPACE, EXECUTOR_POD = "team-a", "bert-text-classifier-infravalidator-x1"
CLAIM = "pipeline-root"

# Every Kubernetes API call TFX 1.16's InfraValidator (and this project's runner) can
# make, with the RBAC rule it needs: (API group, resource, verb).
API_CALLS = {
    "read_namespaced_pod": ("", "pods", "get"),  # its own pod; the server's phase
    "create_namespaced_pod": ("", "pods", "create"),
    "delete_namespaced_pod": ("", "pods", "delete"),
    "read_namespaced_pod_log": ("", "pods/log", "get"),
    "read_namespaced_persistent_volume_claim": ("", "persistentvolumeclaims", "get"),
}
# The same rules as the HTTP requests the client sends.
HTTP_CALLS = [
    ("GET", r"/api/v1/namespaces/[^/]+/pods/[^/]+/log", API_CALLS["read_namespaced_pod_log"]),
    ("GET", r"/api/v1/namespaces/[^/]+/pods/[^/]+",
     API_CALLS["read_namespaced_pod"]),
    ("POST", r"/api/v1/namespaces/[^/]+/pods", API_CALLS["create_namespaced_pod"]),
    ("DELETE", r"/api/v1/namespaces/[^/]+/pods/[^/]+", API_CALLS["delete_namespaced_pod"]),
    ("GET", r"/api/v1/namespaces/[^/]+/persistentvolumeclaims/[^/]+",
     API_CALLS["read_namespaced_persistent_volume_claim"]),
]


def _documents(name):
    with open(os.path.join(DEPLOY, name), encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc]


def _by_kind_and_name(name):
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in _documents(name)}


def _rules(role):
    return {(group, resource, verb) for rule in role["rules"]
            for group in rule["apiGroups"] for resource in rule["resources"]
            for verb in rule["verbs"]}


def _pod_document(spec):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec}


def _serialized(obj):
    return k8s.ApiClient().sanitize_for_serialization(obj)


# -- a local endpoint answering as the Kubernetes API ----------------------------------
def _executor_pod(model_dir: str) -> dict:
    """The InfraValidator step's pod as the API returns it: KFP's main container with
    the pipeline root mounted from a PersistentVolumeClaim, the pipeline's account."""
    return _serialized(k8s.V1Pod(
        api_version="v1", kind="Pod",
        metadata=k8s.V1ObjectMeta(name=EXECUTOR_POD, namespace=NAMESPACE, uid="u-1"),
        spec=k8s.V1PodSpec(
            service_account_name="bert-pipeline",
            containers=[k8s.V1Container(
                name="main", image=IMAGE, volume_mounts=[
                    k8s.V1VolumeMount(name="root", mount_path=model_dir)])],
            volumes=[k8s.V1Volume(
                name="root", persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(
                    claim_name=CLAIM))])))


class _KubernetesApi(JsonApiHandler):
    requests, created, model_dir = [], [], ""
    phase, pod_ip = "Running", "10.0.0.9"


    def _answer(self):
        url = urlparse(self.path)
        body = self.json_body()
        self.requests.append((self.command, url.path, parse_qs(url.query), body))
        pods = f"/api/v1/namespaces/{NAMESPACE}/pods"
        if self.command == "POST" and url.path == pods:
            body["metadata"]["name"] = body["metadata"]["generateName"] + "abcde"
            self.created.append(body)
            return self.reply(body, 201)
        if url.path == f"{pods}/{EXECUTOR_POD}":
            return self.reply(_executor_pod(self.model_dir))
        if url.path.endswith("/log"):
            names = [c["name"] for c in self.created[-1]["spec"]["containers"]]
            if parse_qs(url.query).get("container") != names[:1]:
                return self.reply({"kind": "Status", "code": 400, "message":
                                    f"container is not valid for pod: {names}"}, 400)
            data = b"TF Serving's log"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            return self.wfile.write(data)
        if url.path.startswith(pods + "/") and self.command == "GET":  # the model server
            return self.reply(dict(self.created[-1], status={"phase": self.phase,
                                                              "podIP": self.pod_ip}))
        if self.command == "DELETE":
            return self.reply({"kind": "Status", "status": "Success"})
        if "/persistentvolumeclaims/" in url.path:
            return self.reply({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                "metadata": {"name": CLAIM},
                                "spec": {"accessModes": ["ReadWriteMany"]}})
        return self.reply({"kind": "Status", "code": 404}, 404)

    do_GET = do_POST = do_DELETE = _answer


@pytest.fixture
def kubernetes_api(monkeypatch, tmp_path):
    """The client's default configuration points at the local endpoint, as it would at
    the cluster's API from inside the step's pod (KFP_POD_NAME, KFP_NAMESPACE set)."""
    _KubernetesApi.requests, _KubernetesApi.created = [], []
    _KubernetesApi.phase, _KubernetesApi.pod_ip = "Running", "10.0.0.9"
    _KubernetesApi.model_dir = str(tmp_path)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _KubernetesApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    configuration = k8s.Configuration()
    configuration.host = f"http://127.0.0.1:{server.server_address[1]}"
    previous = k8s.Configuration.get_default_copy()
    k8s.Configuration.set_default(configuration)
    # what load_incluster_config() records inside a pod
    monkeypatch.setattr(kube_utils._factory, "_config_loaded", True)
    monkeypatch.setattr(kube_utils._factory, "_inside_cluster", True)
    monkeypatch.setenv("KFP_POD_NAME", EXECUTOR_POD)
    monkeypatch.setenv("KFP_NAMESPACE", NAMESPACE)
    yield _KubernetesApi
    k8s.Configuration.set_default(previous)
    server.shutdown()


def _run_model_server(runner_class, tmp_path, **settings):
    """Starts, polls, reads the log of and stops one model server pod with
    ``runner_class``, as InfraValidator's executor does; returns the pod as created."""
    spec = serving_spec(_config(**settings))
    binary, = serving_bins.parse_serving_binaries(spec)
    model_path = str(tmp_path / "bert_classifier" / "1700000000")  # on the volume
    os.makedirs(model_path)
    runner = runner_class(model_path=model_path, serving_binary=binary, serving_spec=spec)
    runner.Start()
    runner.WaitUntilRunning(deadline=float("inf"))
    assert runner.GetEndpoint() == "10.0.0.9:8500"
    logs = runner.GetLogs()
    runner.Stop()
    return logs


def test_model_server_pod_passes_restricted_with_its_own_account_and_no_token(
        kubernetes_api, tmp_path):
    """TFX's pod: no securityContext, the step's own account (which may create pods)
    with its token mounted, no resources. The hardened one passes "restricted"."""
    stock_logs = None
    with pytest.raises(k8s.rest.ApiException):  # TFX asks for container 'main'
        stock_logs = _run_model_server(kubernetes_runner.KubernetesRunner, tmp_path / "a",
                                       **{"kubeflow.infra_validator_service_account": ""})
    assert stock_logs is None
    stock = kubernetes_api.created[-1]["spec"]
    assert stock["serviceAccountName"] == "bert-pipeline"  # the step's own account
    assert "automountServiceAccountToken" not in stock
    assert len(violations(stock)) >= 4  # runAsNonRoot, seccomp, escalation, capabilities
    with pytest.raises(kubernetes_validate.ValidationError, match="claims"):
        kubernetes_validate.validate(_pod_document(stock), KUBERNETES_VERSIONS[-1],
                                     strict=True)  # TFX's `claims: {}`: refused

    logs = _run_model_server(make_runner, tmp_path / "b")  # the executor's runner
    pod = kubernetes_api.created[-1]
    spec = pod["spec"]
    assert violations(spec) == []
    assert spec["serviceAccountName"] == "bert-pipeline-model-server"
    assert spec["automountServiceAccountToken"] is False
    container, = spec["containers"]
    assert container["image"] == SERVING_IMAGE
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["resources"] == {"requests": {"cpu": "1", "memory": "4Gi"},
                                      "limits": {"cpu": "1", "memory": "4Gi"}}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes[mounts["/tmp"]["name"]]["emptyDir"] == {"sizeLimit": "1Gi"}
    model = volumes[mounts[str(tmp_path)]["name"]]  # the step's volume, read-only
    assert model["persistentVolumeClaim"] == {"claimName": CLAIM, "readOnly": True}
    assert pod["metadata"]["ownerReferences"][0]["name"] == EXECUTOR_POD
    assert spec["activeDeadlineSeconds"] == 900  # not TFX's 24 hours
    # its log is read from the model server's container
    assert logs == "TF Serving's log"
    log_query, = [query for method, path, query, _ in kubernetes_api.requests
                  if path.endswith("/log") and query["container"] == ["model-server"]]
    # the pod as sent validates against the Kubernetes API
    for version in KUBERNETES_VERSIONS:
        assert kubernetes_validate.validate(_pod_document(spec), version,
                                            strict=True) == version


def test_empty_account_means_the_namespace_default_never_the_steps_own(kubernetes_api,
                                                                      tmp_path):
    _run_model_server(hardened_runner.HardenedKubernetesRunner, tmp_path,
                      **{"kubeflow.infra_validator_service_account": ""})
    spec = kubernetes_api.created[-1]["spec"]
    assert spec["serviceAccountName"] == "default"
    assert spec["automountServiceAccountToken"] is False


def test_executor_makes_the_hardened_runner_only_for_kubernetes():
    local = infra_validator_pb2.ServingSpec(local_docker=infra_validator_pb2.LocalDockerConfig())
    with pytest.raises(ValueError, match="not on 'local_docker'"):
        make_runner("/m/bert_classifier/1", None, local)


def test_serving_resources_are_checked_as_kubernetes_quantities():
    with pytest.raises(ValueError, match="kubeflow.serving_memory '4 GB'"):
        serving_spec(_config(**{"kubeflow.serving_memory": "4 GB"}))
    with pytest.raises(ValueError, match="kubeflow.serving_cpu '0'"):
        serving_spec(_config(**{"kubeflow.serving_cpu": "0"}))


MODEL_SERVER_IP = "127.0.0.3"  # the model server pod's IP: a loopback address of its own


def _infra_validate(tmp_path, phase: str) -> str:
    """Runs the component's executor (TFX's ``Do``, one try) on a real SavedModel, with
    the model server pod reported in ``phase``; returns the blessing file's name."""
    from tfx.types import standard_artifacts

    from components.kubernetes_infra_validator.executor import Executor
    from tests.support.serving_models import export_half_plus_two

    model = standard_artifacts.Model()
    model.uri = str(tmp_path / "model")
    os.makedirs(model.uri)
    os.rename(export_half_plus_two(str(tmp_path / "export"), 1),
              os.path.join(model.uri, "Format-Serving"))
    blessing = standard_artifacts.InfraBlessing()
    blessing.uri = str(tmp_path / "blessing")
    os.makedirs(blessing.uri)
    _KubernetesApi.phase = phase
    executor = Executor(Executor.Context(tmp_dir=str(tmp_path / "executor_tmp"),
                                         unique_id="1"))
    executor.Do({"model": [model]}, {"blessing": [blessing]}, {
        "serving_spec": json_format.MessageToJson(serving_spec(_config())),
        "validation_spec": json_format.MessageToJson(infra_validator_pb2.ValidationSpec(
            max_loading_time_seconds=180, num_tries=1))})
    name, = os.listdir(blessing.uri)
    return name


@pytest.mark.serving
def test_the_executor_validates_in_a_hardened_pod_and_cleans_it_up(kubernetes_api,
                                                                   tmp_path):
    """The component's executor end to end: TFX's Do and retry loop make the hardened
    runner, which creates the pod, waits for it, and TFX's TF Serving client loads the
    model from a real model server at the pod's address (this project's
    TF-Serving-compatible server, gRPC on 8500 as TF Serving's image listens); then the
    pod is deleted. A pod that fails: not blessed, TF Serving's log read, pod deleted."""
    import subprocess
    import sys

    from serving.process import free_port
    from tests.support.serving_models import export_half_plus_two

    export_half_plus_two(str(tmp_path / "served" / "bert_classifier"), 1)
    kubernetes_api.pod_ip = MODEL_SERVER_IP
    server = subprocess.Popen(
        [sys.executable, "-m", "serving.server", "--host", MODEL_SERVER_IP, "--port", "8500",
         "--rest_api_port", str(free_port()), "--drain_delay_seconds", "0",
         "--model_name", "bert_classifier",
         "--model_base_path", str(tmp_path / "served" / "bert_classifier")],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert _infra_validate(tmp_path / "ok", "Running") == "INFRA_BLESSED"
    finally:
        server.terminate()
        server.wait(timeout=60)
    created, = kubernetes_api.created
    assert violations(created["spec"]) == []
    deleted = [path for method, path, _, _ in kubernetes_api.requests if method == "DELETE"]
    assert deleted == [f"/api/v1/namespaces/{NAMESPACE}/pods/{created['metadata']['name']}"]

    kubernetes_api.requests.clear()
    assert _infra_validate(tmp_path / "failed", "Failed") == "INFRA_NOT_BLESSED"
    asked = [(method, path, query) for method, path, query, _ in kubernetes_api.requests]
    assert ("GET", f"/api/v1/namespaces/{NAMESPACE}/pods/tfx-infraval-modelserver-abcde/log",
            {"container": ["model-server"]}) in asked
    assert asked[-1][0] == "DELETE"


# -- RBAC ------------------------------------------------------------------------------
def _core_api_calls(module) -> set:
    """Names of the CoreV1Api methods a module's source calls."""
    tree = ast.parse(inspect.getsource(module))
    return {node.func.attr for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and hasattr(k8s.CoreV1Api, node.func.attr)}


def test_infra_validator_role_is_exactly_the_calls_tfx_makes():
    """The Role holds the rule of every API call in TFX's runner, kube_utils and this
    project's runner (read from their source), and nothing more: no wildcard, no list,
    watch, update or patch."""
    calls = set().union(*(_core_api_calls(m) for m in (kubernetes_runner, kube_utils,
                                                       hardened_runner)))
    assert calls <= set(API_CALLS), f"not in API_CALLS: {calls - set(API_CALLS)}"
    role = _by_kind_and_name("rbac.yaml")[("Role", "bert-pipeline-infra-validator")]
    assert _rules(role) == {API_CALLS[call] for call in calls}
    assert not any("*" in value for rule in role["rules"] for values in rule.values()
                   for value in values)


def test_every_request_of_a_validation_is_allowed_by_the_role(kubernetes_api, tmp_path):
    """The requests a whole model server run sends (own pod, PVC, create, poll, log,
    delete), mapped to RBAC rules, are all in the Role."""
    _run_model_server(hardened_runner.HardenedKubernetesRunner, tmp_path)
    needed = set()
    for method, path, _, _ in kubernetes_api.requests:
        rule = next((r for m, pattern, r in HTTP_CALLS
                     if m == method and re.fullmatch(pattern, path)), None)
        assert rule, f"unexpected request {method} {path}"
        needed.add(rule)
    role = _by_kind_and_name("rbac.yaml")[("Role", "bert-pipeline-infra-validator")]
    assert needed == _rules(role)


def test_service_accounts_and_bindings():
    docs = _by_kind_and_name("rbac.yaml") | _by_kind_and_name("kfp-runtime-rbac.yaml")
    config = _config().kubeflow
    pipeline = docs[("ServiceAccount", config.service_account)]
    model_server = docs[("ServiceAccount", config.infra_validator_service_account)]
    assert pipeline.get("automountServiceAccountToken", True)  # InfraValidator calls the API
    assert model_server["automountServiceAccountToken"] is False
    bindings = [doc for doc in docs.values() if doc["kind"] == "RoleBinding"]
    bound = {(b["roleRef"]["name"], s["name"]) for b in bindings for s in b["subjects"]}
    assert bound == {("bert-pipeline-infra-validator", "bert-pipeline"),
                     ("bert-pipeline-kfp-runtime", "bert-pipeline"),
                     ("bert-pipeline-trainer", "bert-pipeline")}  # tests/test_tfjob.py
    assert all(b["roleRef"]["kind"] == "Role" for b in bindings)  # namespaced, no Cluster*
    runtime = docs[("Role", "bert-pipeline-kfp-runtime")]
    for rule in runtime["rules"]:  # no wildcard; secrets and configmaps by name only
        assert "*" not in rule["verbs"] + rule["resources"]
        if set(rule["resources"]) & {"secrets", "configmaps"}:
            assert rule["resourceNames"] and rule["verbs"] == ["get"]


def _header(name) -> str:
    """The leading comment block of a deploy file, without its '#'s."""
    with open(os.path.join(DEPLOY, name), encoding="utf-8") as f:
        lines = f.read().split("\napiVersion:", 1)[0].splitlines()
    return " ".join(line.lstrip("#").strip() for line in lines)


def test_the_runs_namespace_is_labelled_restricted_and_the_controller_warning_is_loud():
    """The pipeline's account may create pods: rbac.yaml's header ships the label that
    makes the namespace enforce "restricted" on them, and says why; the workflow
    controller settings say first that they change every workflow of the cluster, and
    that step containers keep a writable root file system."""
    rbac = _header("rbac.yaml")
    assert ("kubectl label namespace NAMESPACE "
            "pod-security.kubernetes.io/enforce=restricted --overwrite") in rbac
    assert "any Secret" in rbac and "any service account" in rbac
    controller = _header("workflow-controller-configmap.yaml")
    assert controller.startswith("CLUSTER-WIDE")
    assert "every workflow" in controller and "other teams" in controller
    assert "WRITABLE root file system" in controller
    configmap = _by_kind_and_name("workflow-controller-configmap.yaml")[
        ("ConfigMap", "workflow-controller-configmap")]
    assert "readOnlyRootFilesystem" not in json.dumps(configmap["data"])


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_deploy_files_validate_against_the_kubernetes_api(version):
    for name in sorted(os.listdir(DEPLOY)):
        for doc in _documents(name):
            assert kubernetes_validate.validate(doc, version, strict=True) == version, name


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
