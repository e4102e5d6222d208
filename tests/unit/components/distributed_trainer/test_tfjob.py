"""The Trainer's replicas as a Training Operator TFJob (components/distributed_trainer/
tfjob.py, the Role in kubeflow/deploy/rbac.yaml).

The manifest is held to the TFJob CRD of training-operator v1.9.0 (tests/data/
training-operator/, its openAPIV3Schema with unknown fields refused, as the API server's
strict field validation does) and to the operator's admission webhook rules; its pods to
the "restricted" Pod Security Standard. No cluster here: ``run_replicas`` talks, through
the real kubernetes client and a kubeconfig, to a local HTTP endpoint on 127.0.0.1 that
answers as the Kubernetes API does (the step's pod, TFJob create/get/delete) with the
job statuses the operator writes, and records every request."""
import _thread
import ast
import copy
import inspect
import json
import os
import re
import signal
import subprocess
import sys
import threading
from http.server import ThreadingHTTPServer
from urllib.parse import urlparse

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes import client as k8s

from components.distributed_trainer import tfjob
from kubeflow.kubeflow_runner import tfjob_distribution
from tests.support.json_api import JsonApiHandler
from tests.support.kubeflow_specs import IMAGE, _config
from tests.support.paths import REPO
from tests.support.pod_security import violations

CRD = os.path.join(REPO, "tests", "data", "training-operator", "kubeflow.org_tfjobs.yaml")
RBAC = os.path.join(REPO, "kubeflow", "deploy", "rbac.yaml")
KUBERNETES_VERSIONS = ["1.25", "1.37"]  # oldest and newest kubernetes-validate knows
NAMESPACE, STEP_UID = "team-a", "u-7"
MAX_POLLS = 200  # the fake API fails a step still polling after this many reads
STEP_POD = "bert-text-classifier-x7k2p-system-container-impl-1"  # KFP_POD_NAME
ARGS = ["--executor_class_path", "tfx.components.trainer.executor.GenericExecutor",
        "--inputs-base64", "e30=", "--outputs-base64", "e30=", "--exec-properties-base64",
        "e30="]
WORKERS = {"kubeflow.trainer_workers": 3, "trainer.max_restarts": 2}
DNS_1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
REPLICA_TYPES = {"Chief", "Master", "Worker", "PS", "Evaluator"}  # the v1 API's
# Every call tfjob.py may make, with the RBAC rule it needs: (API group, resource, verb).
API_CALLS = {
    "create_namespaced_custom_object": ("kubeflow.org", "tfjobs", "create"),
    "get_namespaced_custom_object": ("kubeflow.org", "tfjobs", "get"),
    "delete_namespaced_custom_object": ("kubeflow.org", "tfjobs", "delete"),
    "read_namespaced_pod": ("", "pods", "get"),
}
HTTP_CALLS = [
    ("POST", r"/apis/kubeflow.org/v1/namespaces/[^/]+/tfjobs", API_CALLS[
        "create_namespaced_custom_object"]),
    ("GET", r"/apis/kubeflow.org/v1/namespaces/[^/]+/tfjobs/[^/]+", API_CALLS[
        "get_namespaced_custom_object"]),
    ("DELETE", r"/apis/kubeflow.org/v1/namespaces/[^/]+/tfjobs/[^/]+", API_CALLS[
        "delete_namespaced_custom_object"]),
    ("GET", r"/api/v1/namespaces/[^/]+/pods/[^/]+", API_CALLS["read_namespaced_pod"]),
]


def _distribution(**settings) -> dict:
    return tfjob_distribution(_config(**dict(WORKERS, **settings)))


def _manifest(**settings) -> dict:
    return tfjob.tfjob_manifest("bert-trainer-abc123", NAMESPACE, _distribution(**settings),
                                ARGS)


# -- the CRD's schema and the operator's webhook ---------------------------------------
def _strict(schema: dict) -> dict:
    """The schema with unknown fields refused wherever it lists properties (the API
    server's strict field validation; it would prune them silently otherwise)."""
    schema = dict(schema)
    if "properties" in schema and "additionalProperties" not in schema and \
            not schema.get("x-kubernetes-preserve-unknown-fields"):
        schema["additionalProperties"] = False
    for key in ("properties", "patternProperties"):
        if key in schema:
            schema[key] = {name: _strict(sub) for name, sub in schema[key].items()}
    for key in ("items", "additionalProperties", "not"):
        if isinstance(schema.get(key), dict):
            schema[key] = _strict(schema[key])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in schema:
            schema[key] = [_strict(sub) for sub in schema[key]]
    return schema


@pytest.fixture(scope="module")
def crd_validator():
    with open(CRD, encoding="utf-8") as f:
        crd, = [doc for doc in yaml.safe_load_all(f) if doc]
    assert crd["metadata"]["name"] == "tfjobs.kubeflow.org"
    version, = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    assert version["served"] and version["storage"]
    return jsonschema.Draft7Validator(_strict(version["schema"]["openAPIV3Schema"]))


def _schema_errors(validator, manifest) -> list:
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(manifest)]


def _webhook_errors(manifest) -> list:
    """What training-operator v1.9.0's TFJob validating webhook refuses
    (pkg/webhooks/tensorflow/tfjob_webhook.go), and replica types the v1 API lacks."""
    name = manifest["metadata"]["name"]
    errors = [] if len(name) <= 63 and DNS_1035.fullmatch(name) else [f"name {name}"]
    specs = manifest["spec"].get("tfReplicaSpecs") or {}
    if not specs:
        errors.append("tfReplicaSpecs required")
    if sum(kind in ("Chief", "Master") for kind in specs) > 1:
        errors.append("more than one Chief or Master")
    for kind, spec in specs.items():
        containers = spec["template"]["spec"].get("containers") or []
        if kind not in REPLICA_TYPES:
            errors.append(f"replica type {kind}")
        if not any(c.get("name") == tfjob.CONTAINER for c in containers):
            errors.append(f"{kind}: no container named {tfjob.CONTAINER}")
        errors += [f"{kind}: container without image" for c in containers
                   if not c.get("image")]
    return errors


def _template(manifest, kind="Worker") -> dict:
    return manifest["spec"]["tfReplicaSpecs"][kind]["template"]


def test_the_manifest_is_valid_for_the_crd_and_the_webhook(crd_validator):
    manifest = _manifest(**{"kubeflow.trainer_accelerator": "NVIDIA_TESLA_T4",
                            "kubeflow.trainer_accelerator_count": 2,
                            "kubeflow.trainer_cpu": 7.5, "kubeflow.trainer_memory": "30Gi",
                            "storage.s3_region": "eu-west-1"})
    assert _schema_errors(crd_validator, manifest) == []
    assert _webhook_errors(manifest) == []
    assert manifest["apiVersion"] == "kubeflow.org/v1" and manifest["kind"] == "TFJob"
    specs = manifest["spec"]["tfReplicaSpecs"]
    assert {kind: spec["replicas"] for kind, spec in specs.items()} == {"Chief": 1, "Worker": 2}
    assert {spec["restartPolicy"] for spec in specs.values()} == {"OnFailure"}
    # one incident restarts all 3 replicas: trainer.max_restarts (2) incidents in all
    assert manifest["spec"]["runPolicy"]["backoffLimit"] == 2 * 3 + 1
    assert manifest["spec"]["runPolicy"]["activeDeadlineSeconds"] == 1440 * 60
    assert manifest["spec"]["runPolicy"]["cleanPodPolicy"] == "Running"
    container, = _template(manifest)["spec"]["containers"]
    assert container["image"] == IMAGE
    assert container["command"] + container["args"] == \
        ["python", "-m", "tfx.scripts.run_executor"] + ARGS
    assert container["workingDir"] == "/pipeline"
    limits = {"cpu": "7.5", "memory": "30Gi", "nvidia.com/gpu": "2"}
    assert container["resources"] == {"requests": limits, "limits": limits}
    assert _template(manifest)["spec"]["nodeSelector"] == {
        "cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env == {"TF_USE_LEGACY_KERAS": "1", "AWS_REGION": "eu-west-1",
                   "AWS_DEFAULT_REGION": "eu-west-1"}
    assert _template(manifest, "Chief") == _template(manifest, "Worker")


def _set(manifest, path, value):
    *parents, last = path
    target = manifest
    for key in parents:
        target = target[key]
    target[last] = value


@pytest.mark.parametrize("path, value, error", [
    (("spec", "tfReplicaSpecs", "Worker", "restartpolicy"), "OnFailure",
     "Additional properties"),  # a misspelt field
    (("spec", "tfReplicaSpecs", "Worker", "replicas"), "2", "is not of type 'integer'"),
    (("spec", "runPolicy", "backoffLimit"), 1.5, "is not of type 'integer'"),
    (("spec", "tfReplicaSpecs", "Worker", "template", "spec", "containers", 0, "resources",
      "limits", "cpu"), 4.5, "is not valid under any of the given schemas"),
    (("spec", "tfReplicaSpecs", "Worker", "template", "spec", "containers", 0, "resources",
      "limits", "memory"), "16 GB", "does not match"),
    (("spec", "tfReplicaSpecs", "Worker", "template", "spec", "securityContext",
      "runAsUser"), "1000", "is not of type 'integer'"),
])
def test_a_broken_manifest_is_refused_by_the_crd_schema(crd_validator, path, value, error):
    manifest = copy.deepcopy(_manifest())
    _set(manifest, path, value)
    errors = _schema_errors(crd_validator, manifest)
    assert errors and error in " ".join(errors), errors


@pytest.mark.parametrize("change, error", [
    (lambda m: _set(m, ("metadata", "name"), "Bert_Trainer"), "name Bert_Trainer"),
    (lambda m: _set(m, ("spec", "tfReplicaSpecs", "Master"),
                    m["spec"]["tfReplicaSpecs"]["Chief"]), "more than one Chief"),
    (lambda m: _set(_template(m)["spec"]["containers"][0], ("name",), "main"),
     "no container named tensorflow"),
])
def test_a_broken_manifest_is_refused_by_the_webhook_rules(change, error):
    manifest = copy.deepcopy(_manifest())
    change(manifest)
    assert error in " ".join(_webhook_errors(manifest))


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_replica_pods_pass_restricted_and_the_kubernetes_pod_schema(version):
    """Uid 1000, RuntimeDefault seccomp, no capabilities or escalation, a read-only root
    with an emptyDir at /tmp, the steps' account without its token."""
    template = _template(_manifest())
    spec = template["spec"]
    assert violations(spec) == []
    assert spec["securityContext"]["runAsUser"] == 1000
    assert spec["automountServiceAccountToken"] is False
    assert spec["serviceAccountName"] == "bert-pipeline"  # kubeflow.service_account
    container, = spec["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    tmp, = [v for v in spec["volumes"] if v["name"] == tfjob.TMP_VOLUME]
    assert tmp["emptyDir"] and \
        {"name": tfjob.TMP_VOLUME, "mountPath": "/tmp"} in container["volumeMounts"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec}
    assert kubernetes_validate.validate(pod, version, strict=True) == version


def test_a_pod_template_without_the_hardening_fails_restricted():
    spec = copy.deepcopy(_template(_manifest())["spec"])
    del spec["securityContext"]["runAsNonRoot"], spec["securityContext"]["seccompProfile"]
    container = spec["containers"][0]["securityContext"]
    del container["runAsNonRoot"], container["capabilities"]
    found = " ".join(violations(spec))
    assert "runAsNonRoot" in found and "seccompProfile" in found and "drop" in found


@pytest.mark.parametrize("pod_name, workers", [
    (STEP_POD, 2), ("x" * 80, 100), ("7-Trainer_Pod.NAME-", 3), ("", 2)])
def test_job_names_are_dns_1035_labels_that_leave_room_for_the_replica_services(
        pod_name, workers):
    names = {tfjob.job_name(pod_name, workers) for _ in range(3)}
    assert len(names) == 3  # unique per run and attempt
    for name in names:
        service = f"{name}-worker-{workers - 1}"  # the operator's Service of the last worker
        assert DNS_1035.fullmatch(service) and len(service) <= 63, service


def test_accelerators_and_distribution_values():
    assert tfjob.accelerator_resources("nvidia.com/gpu", 4) == ({"nvidia.com/gpu": "4"}, {})
    assert tfjob.accelerator_resources("", 1) == ({}, {})
    with pytest.raises(ValueError, match="TPUStrategy"):
        _distribution(**{"kubeflow.trainer_accelerator": "TPU_V3"})
    with pytest.raises(ValueError, match="kubeflow.trainer_memory"):
        _distribution(**{"kubeflow.trainer_memory": "lots"})
    distribution = _distribution()
    assert json.loads(json.dumps(distribution)) == distribution  # JSON values only
    assert {key: distribution[key] for key in ("launcher", "workers", "max_restarts",
                                               "backup_every_steps")} == \
        {"launcher": "tfjob", "workers": 3, "max_restarts": 2, "backup_every_steps": 50}
    assert distribution["pipeline_root"] == "gs://bucket/root"


# -- run_replicas against a local Kubernetes API ---------------------------------------
def _condition(kind, reason, message):
    return {"type": kind, "status": "True", "reason": reason, "message": message}


def _statuses(name, last):
    """The statuses the operator writes, one per poll: created, running, then ``last``."""
    created = _condition("Created", "TFJobCreated", f"TFJob {name} is created.")
    running = _condition("Running", "TFJobRunning", f"TFJob {NAMESPACE}/{name} is running.")
    replicas = {"Chief": {"active": 1}, "Worker": {"active": 2}}
    steps = [{"conditions": [created]},
             {"conditions": [created, running], "replicaStatuses": replicas},
             {"conditions": [created, running], "replicaStatuses": replicas}]
    if last:
        ended = dict(running, status="False")
        steps.append({"conditions": [created, ended, last(name)],
                      "replicaStatuses": {"Chief": {"succeeded": 1}, "Worker": {"active": 2}}})
    return steps


def _step_pod(mounts) -> dict:
    """The Trainer step's pod: KFP's main container, its volumes at ``mounts``."""
    return k8s.ApiClient().sanitize_for_serialization(k8s.V1Pod(
        api_version="v1", kind="Pod",
        metadata=k8s.V1ObjectMeta(name=STEP_POD, namespace=NAMESPACE, uid=STEP_UID),
        spec=k8s.V1PodSpec(
            service_account_name="pipeline-runner",
            containers=[k8s.V1Container(name="main", image=IMAGE, volume_mounts=[
                k8s.V1VolumeMount(name=name, mount_path=path) for name, path in mounts])],
            volumes=[k8s.V1Volume(name="pipeline-root", persistent_volume_claim=(
                k8s.V1PersistentVolumeClaimVolumeSource(claim_name="pipeline-root"))),
                k8s.V1Volume(name="kfp-launcher", empty_dir=k8s.V1EmptyDirVolumeSource())])))


class _KubernetesApi(JsonApiHandler):
    """Answers as the API server with the operator running: the step's pod, the TFJob as
    created plus the next of its ``_statuses(name, last)`` on each GET."""
    requests, jobs, mounts, last = [], {}, [], None
    errors = {}  # poll number -> the HTTP status that poll gets instead
    polled = threading.Event()
    interrupt_on_poll = 0  # >0: on that poll, raise KeyboardInterrupt in the main thread
    forbidden = ()  # HTTP methods on tfjobs answered 403 (a Role without those verbs)
    hang_on_poll = 0  # >0: that poll gets no answer until the test ends (half-open)
    released = threading.Event()


    def _answer(self):
        path = urlparse(self.path).path
        body = self.json_body()
        self.requests.append((self.command, path, body))
        tfjobs = f"/apis/kubeflow.org/v1/namespaces/{NAMESPACE}/tfjobs"
        name = path.rsplit("/", 1)[-1]
        if path == f"/api/v1/namespaces/{NAMESPACE}/pods/{STEP_POD}":
            return self.reply(_step_pod(self.mounts))
        if path.startswith(tfjobs) and self.command in self.forbidden:
            return self.reply({"kind": "Status", "code": 403, "reason": "Forbidden"}, 403)
        if self.command == "POST" and path == tfjobs:
            self.jobs[body["metadata"]["name"]] = body
            return self.reply(body, 201)
        if path == f"{tfjobs}/{name}" and name in self.jobs:
            if self.command == "DELETE":
                del self.jobs[name]
                return self.reply({"kind": "Status", "status": "Success"})
            polls = sum(1 for m, p, _ in self.requests if m == "GET" and p == path)
            if polls in self.errors:
                code = self.errors[polls]
                return self.reply({"kind": "Status", "code": code}, code)
            if polls == self.hang_on_poll:
                self.released.wait()
                return None
            if polls > MAX_POLLS:  # a step that never stops polling fails, not hangs
                return self.reply({"kind": "Status", "code": 401}, 401)
            if self.interrupt_on_poll and polls >= self.interrupt_on_poll:
                # Ctrl-C while the step waits for this answer; again on each later poll,
                # since one that lands in a __del__ is swallowed
                _thread.interrupt_main()
            self.polled.set()
            statuses = _statuses(name, type(self).last)
            status = statuses[min(polls, len(statuses)) - 1]
            return self.reply(dict(self.jobs[name], status=status))
        return self.reply({"kind": "Status", "code": 404, "reason": "NotFound"}, 404)

    do_GET = do_POST = do_DELETE = _answer


@pytest.fixture
def kubernetes_api(monkeypatch, tmp_path):
    """A kubeconfig naming the local endpoint; the step's environment as
    kubeflow/entrypoint.sh leaves it (KFP_POD_NAME, KFP_NAMESPACE)."""
    api = _KubernetesApi
    api.requests, api.jobs, api.mounts, api.last = [], {}, [], None
    api.polled, api.interrupt_on_poll, api.errors = threading.Event(), 0, {}
    api.forbidden, api.hang_on_poll, api.released = (), 0, threading.Event()
    server = ThreadingHTTPServer(("127.0.0.1", 0), api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "local",
        "clusters": [{"name": "local", "cluster": {
            "server": f"http://127.0.0.1:{server.server_address[1]}"}}],
        "users": [{"name": "step", "user": {"token": "t"}}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": "step"}}]}))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    for key, value in {"KUBECONFIG": str(kubeconfig), "KFP_POD_NAME": STEP_POD,
                       "KFP_NAMESPACE": NAMESPACE}.items():
        monkeypatch.setenv(key, value)
    yield api
    api.released.set()
    server.shutdown()


def _created(api) -> dict:
    (method, _, manifest), = [r for r in api.requests if r[0] == "POST"]
    return manifest


def _run(api, last, **settings):
    """run_replicas with the operator's statuses ending in ``last`` (None: running on)."""
    api.last = last
    tfjob.run_replicas(ARGS, _distribution(**settings), poll_seconds=0)


def _rbac_rules() -> set:
    with open(RBAC, encoding="utf-8") as f:
        role, = [doc for doc in yaml.safe_load_all(f) if doc and doc["kind"] == "Role"
                 and doc["metadata"]["name"] == "bert-pipeline-trainer"]
    return {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
            for resource in rule["resources"] for verb in rule["verbs"]}


def _requested_rules(api) -> set:
    needed = set()
    for method, path, _ in api.requests:
        rule = next((r for m, pattern, r in HTTP_CALLS
                     if m == method and re.fullmatch(pattern, path)), None)
        assert rule, f"unexpected request {method} {path}"
        needed.add(rule)
    return needed


def test_run_replicas_creates_the_job_streams_its_state_and_returns_on_success(
        kubernetes_api, capsys, crd_validator):
    succeeded = lambda name: _condition(  # noqa: E731
        "Succeeded", "TFJobSucceeded", f"TFJob {NAMESPACE}/{name} successfully completed.")
    _run(kubernetes_api, succeeded)
    manifest = _created(kubernetes_api)
    name = manifest["metadata"]["name"]
    assert name.startswith("bert-text-classifier-x7k2p-system-container")
    assert _schema_errors(crd_validator, manifest) == [] and _webhook_errors(manifest) == []
    assert manifest["metadata"]["namespace"] == NAMESPACE
    assert manifest["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Pod", "name": STEP_POD, "uid": STEP_UID}]
    lines = [line for line in capsys.readouterr().err.splitlines()
             if line.startswith(f"TFJob {NAMESPACE}/{name}: ")]
    states = [line.split(": ", 1)[1] for line in lines]
    assert states[0].startswith("created")
    assert states[1] == f"Created (TFJobCreated: TFJob {name} is created.)"
    assert states[2] == (f"Running (TFJobRunning: TFJob {NAMESPACE}/{name} is running.); "
                         "Chief: active 1, succeeded 0, failed 0; "
                         "Worker: active 2, succeeded 0, failed 0")
    assert states[3].startswith("Succeeded (TFJobSucceeded: ")
    assert len(states) == 4  # one line per change: the second Running poll prints nothing
    assert name in kubernetes_api.jobs  # kept: its pods' logs stay until its TTL
    assert _requested_rules(kubernetes_api) <= _rbac_rules()


def test_a_failed_job_fails_the_step_with_its_reason_and_message(kubernetes_api):
    failed = lambda name: _condition(  # noqa: E731
        "Failed", "TFJobFailed", f"Job {name} has failed because it has reached the "
                                 "specified backoff limit")
    with pytest.raises(RuntimeError) as raised:
        _run(kubernetes_api, failed)
    name = _created(kubernetes_api)["metadata"]["name"]
    assert f"TFJob {NAMESPACE}/{name} failed: TFJobFailed: Job {name} has failed because " \
           "it has reached the specified backoff limit" in str(raised.value)
    assert not [r for r in kubernetes_api.requests if r[0] == "DELETE"]


def test_a_passing_api_error_is_retried_and_a_deleted_job_fails_the_step(
        kubernetes_api, capsys):
    succeeded = lambda name: _condition("Succeeded", "TFJobSucceeded", "done")  # noqa: E731
    kubernetes_api.errors = {2: 503, 3: 500}
    _run(kubernetes_api, succeeded)
    assert capsys.readouterr().err.count("reading its status failed") == 2
    kubernetes_api.requests, kubernetes_api.errors = [], {2: 404}
    with pytest.raises(RuntimeError, match="was deleted while the Trainer step waited"):
        _run(kubernetes_api, succeeded)


def test_an_interrupted_step_deletes_the_job(kubernetes_api, capsys):
    kubernetes_api.interrupt_on_poll = 2
    # Python's own Ctrl-C handler: a process started in the background inherits SIGINT
    # ignored, and then interrupt_main() does nothing
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            _run(kubernetes_api, None)
    finally:
        signal.signal(signal.SIGINT, previous)
    name = _created(kubernetes_api)["metadata"]["name"]
    deletes = [path for method, path, _ in kubernetes_api.requests if method == "DELETE"]
    assert deletes == [f"/apis/kubeflow.org/v1/namespaces/{NAMESPACE}/tfjobs/{name}"]
    assert kubernetes_api.jobs == {}
    assert "deleting the job" in capsys.readouterr().err


def test_sigterm_to_the_step_deletes_the_job(kubernetes_api):
    """The step's process, stopped as Argo stops a pod (SIGTERM) while it waits."""
    code = ("import json, sys\nfrom components.distributed_trainer import tfjob\n"
            "tfjob.run_replicas(json.loads(sys.argv[1]), json.loads(sys.argv[2]), "
            "poll_seconds=0.05)")
    step = subprocess.Popen(
        [sys.executable, "-c", code, json.dumps(ARGS), json.dumps(_distribution())],
        cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        assert kubernetes_api.polled.wait(timeout=120), "the step never polled its job"
        step.send_signal(signal.SIGTERM)
        _, err = step.communicate(timeout=120)
    finally:
        step.kill()
    assert step.returncode != 0
    name = _created(kubernetes_api)["metadata"]["name"]
    assert ("DELETE", f"/apis/kubeflow.org/v1/namespaces/{NAMESPACE}/tfjobs/{name}", None) \
        in kubernetes_api.requests
    assert kubernetes_api.jobs == {} and "Terminated" in err


def test_a_mounted_pipeline_root_is_the_step_pods_volume(kubernetes_api):
    """pipeline_root on a volume: the step's volume that holds it, at the same path, and
    no other; the replicas run as the step pod's account when kubeflow.service_account
    is empty."""
    kubernetes_api.mounts = [("pipeline-root", "/mnt/pipeline"),
                             ("kfp-launcher", "/kfp-launcher")]
    succeeded = lambda name: _condition("Succeeded", "TFJobSucceeded", "done")  # noqa: E731
    _run(kubernetes_api, succeeded, **{"kubeflow.pipeline_root": "/mnt/pipeline/root",
                                       "kubeflow.service_account": ""})
    spec = _template(_created(kubernetes_api))["spec"]
    assert spec["volumes"][1:] == [{"name": "pipeline-root", "persistentVolumeClaim": {
        "claimName": "pipeline-root"}}]
    assert spec["containers"][0]["volumeMounts"][1:] == [
        {"name": "pipeline-root", "mountPath": "/mnt/pipeline"}]
    assert spec["serviceAccountName"] == "pipeline-runner"
    assert violations(spec) == []


def test_a_mounted_pipeline_root_no_step_volume_holds_is_refused(kubernetes_api):
    kubernetes_api.mounts = [("kfp-launcher", "/kfp-launcher")]
    with pytest.raises(RuntimeError, match="no volume of the Trainer step's pod holds it"):
        _run(kubernetes_api, None, **{"kubeflow.pipeline_root": "/mnt/pipeline"})
    assert not [r for r in kubernetes_api.requests if r[0] == "POST"]


def test_a_pipeline_root_on_a_pod_local_volume_is_refused(kubernetes_api):
    """An emptyDir would give each replica a folder of its own: refused before a job is
    created, naming the setting."""
    kubernetes_api.mounts = [("kfp-launcher", "/mnt/pipeline")]  # the emptyDir volume
    with pytest.raises(RuntimeError, match=r"kubeflow.pipeline_root /mnt/pipeline/root is "
                                           r"on the step pod's empty_dir volume"):
        _run(kubernetes_api, None, **{"kubeflow.pipeline_root": "/mnt/pipeline/root"})
    assert not [r for r in kubernetes_api.requests if r[0] == "POST"]


# -- RBAC ------------------------------------------------------------------------------
def _api_calls(module) -> set:
    """Names of the CustomObjectsApi and CoreV1Api methods a module's source calls."""
    tree = ast.parse(inspect.getsource(module))
    return {node.func.attr for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and (hasattr(k8s.CustomObjectsApi, node.func.attr)
                 or hasattr(k8s.CoreV1Api, node.func.attr))
            and not node.func.attr.startswith("_")}


def test_the_trainer_role_is_exactly_the_calls_tfjob_makes():
    calls = _api_calls(tfjob)
    assert calls <= set(API_CALLS), f"not in API_CALLS: {calls - set(API_CALLS)}"
    assert _rbac_rules() == {API_CALLS[call] for call in calls}
    with open(RBAC, encoding="utf-8") as f:
        binding, = [doc for doc in yaml.safe_load_all(f) if doc
                    and doc["kind"] == "RoleBinding"
                    and doc["roleRef"]["name"] == "bert-pipeline-trainer"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "bert-pipeline"}]


def test_the_step_enforces_the_deadline_the_operator_may_not(kubernetes_api, monkeypatch,
                                                             capsys):
    """The training operator checks activeDeadlineSeconds only when the job changes (its
    delayed re-check goes to a queue that drops it: kubeflow/trainer#3358): a worker
    left Pending kept the step waiting past trainer.deadline_minutes. The step now stops
    the job itself, a margin after the deadline (none here)."""
    monkeypatch.setattr(tfjob, "DEADLINE_MARGIN_SECONDS", 0)
    with pytest.raises(RuntimeError, match=r"still running .* past trainer.deadline_minutes"):
        _run(kubernetes_api, None, **{"trainer.deadline_minutes": 0.001})
    name = _created(kubernetes_api)["metadata"]["name"]
    deletes = [path for method, path, _ in kubernetes_api.requests if method == "DELETE"]
    assert deletes == [f"/apis/kubeflow.org/v1/namespaces/{NAMESPACE}/tfjobs/{name}"]


def test_backoff_limit_allows_max_restarts_incidents():
    """The operator fails a job once its pods' restarts reach backoffLimit (>=): with
    max_restarts x replicas, the max_restarts-th incident (each restarts every replica)
    failed the job; trainer.max_restarts 1 allowed none."""
    assert _manifest()["spec"]["runPolicy"]["backoffLimit"] == 2 * 3 + 1


def test_a_refused_create_deletes_nothing_and_names_no_job_to_delete(kubernetes_api, capsys):
    """Creating the job refused (403: the Role lacks the verb): the step tried to delete
    the job, failed, and told the user to delete a job that never existed."""
    kubernetes_api.forbidden = ("POST", "DELETE")
    with pytest.raises(k8s.ApiException) as refused:
        _run(kubernetes_api, None)
    assert refused.value.status == 403
    assert not [r for r in kubernetes_api.requests if r[0] == "DELETE"]
    assert "kubectl delete tfjob" not in capsys.readouterr().err


def test_an_api_read_that_never_answers_is_retried(kubernetes_api, monkeypatch, capsys):
    """No API call had a timeout: a poll on a half-open connection blocked the step for
    good, past MAX_API_ERRORS and the deadline check alike."""
    monkeypatch.setattr(tfjob, "API_TIMEOUT_SECONDS", 1)
    kubernetes_api.hang_on_poll = 2
    _run(kubernetes_api, lambda name: _condition("Succeeded", "TFJobSucceeded", "done"))
    polls = [r for r in kubernetes_api.requests if r[0] == "GET" and "/tfjobs/" in r[1]]
    assert len(polls) > 2  # the unanswered read timed out and the job was read again
    assert "Succeeded (TFJobSucceeded: done)" in capsys.readouterr().err
