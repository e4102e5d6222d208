"""The Trainer's replicas as a Kubeflow Training Operator TFJob (``kubeflow.org/v1``).

``run_replicas(executor_args, distribution)`` is the ``tfjob`` launcher of the
distributed Trainer executor: it creates a TFJob whose Chief (1) and Workers
(``workers`` - 1) run ``python -m tfx.scripts.run_executor <executor_args>`` in the
pipeline image (the operator gives each its ``TF_CONFIG``), follows the job's conditions
and replica counts (one line on stderr per change), returns when it succeeds and raises
with the job's reason and message when it fails. Interrupted (SIGTERM, as Argo stops a
step, or Ctrl-C) or failing while it waits, it deletes the job, whose pods the cluster
then removes; the job is also owned by the step's pod, so deleting that pod deletes it.

``distribution`` is what ``kubeflow.kubeflow_runner.tfjob_distribution`` compiled into the
Trainer's custom_config. The manifest is checked against the TFJob CRD of training-operator
v1.9.0 (tests/unit/components/distributed_trainer/test_tfjob.py). Its pods pass the
"restricted" Pod Security Standard: uid 1000 (the image's user), RuntimeDefault seccomp, no
capabilities, no privilege escalation, a read-only root file system with an ``emptyDir``
at ``/tmp``, and no service-account token (the replicas never call the Kubernetes API;
their account is the one the pipeline root's cloud identity is bound to).
"""
from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import sys
import threading
import time
from typing import Optional

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from urllib3.exceptions import HTTPError

GROUP, VERSION, PLURAL, KIND = "kubeflow.org", "v1", "tfjobs", "TFJob"
CONTAINER = "tensorflow"  # the container the operator gives TF_CONFIG and port 2222
COMMAND = ["python", "-m", "tfx.scripts.run_executor"]
UID = GID = 1000  # the pipeline image's USER (kubeflow/Dockerfile)
TMP_SIZE_LIMIT = "8Gi"
TMP_VOLUME = "tfjob-tmp"  # a name the step pod's volumes (copied beside it) do not use
TTL_SECONDS_AFTER_FINISHED = 24 * 3600  # a finished job stays a day (a failed one's pods do not)
POLL_SECONDS = 10.0
DEADLINE_MARGIN_SECONDS = 60.0  # after trainer.deadline_minutes: the operator stops it first
FINISHED = ("Succeeded", "Failed")
API_TIMEOUT_SECONDS = 30  # per API call: a half-open connection is an error, retried
MAX_API_ERRORS = 6  # consecutive failed polls before the step gives up (and deletes the job)
NAME_LIMIT = 63  # the operator names a Service '<job>-worker-<i>': a DNS-1035 label
SUFFIX_LENGTH = 6
LABELS = {"app.kubernetes.io/part-of": "bert-pipeline",
          "app.kubernetes.io/component": "trainer"}
STEP_POD_ANNOTATION = "bert-pipeline/step-pod"
NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


# -- compile time: resources -----------------------------------------------------------
def accelerator_resources(accelerator: str, count: int) -> tuple:
    """({resource: count}, nodeSelector) of a replica's accelerators. A resource name
    ('nvidia.com/gpu') is used as is; a GKE type ('NVIDIA_TESLA_T4') is nvidia.com/gpu on
    nodes labelled cloud.google.com/gke-accelerator: nvidia-tesla-t4."""
    if not accelerator:
        return {}, {}
    if count < 1:
        raise ValueError(f"kubeflow.trainer_accelerator_count must be at least 1, got {count}")
    if "/" in accelerator:
        return {accelerator: str(count)}, {}
    if accelerator.upper().startswith("NVIDIA_"):
        return ({"nvidia.com/gpu": str(count)},
                {"cloud.google.com/gke-accelerator": accelerator.lower().replace("_", "-")})
    raise ValueError(f"kubeflow.trainer_accelerator '{accelerator}' cannot run TFJob replicas: "
                     "give a Kubernetes resource name (e.g. nvidia.com/gpu) or a GKE NVIDIA "
                     "type (e.g. NVIDIA_TESLA_T4); TPUs need TPUStrategy, not the "
                     "MultiWorkerMirroredStrategy the replicas use")


# -- the manifest ----------------------------------------------------------------------
def job_name(pod_name: str, workers: int, suffix: Optional[str] = None) -> str:
    """A DNS-1035 name from the step's pod name and a random suffix (unique per run and
    attempt), short enough for the operator's '<job>-worker-<i>' Services."""
    suffix = suffix or secrets.token_hex(SUFFIX_LENGTH // 2)
    base = re.sub(r"[^a-z0-9-]+", "-", pod_name.lower()).strip("-")
    if not base[:1].isalpha():
        base = f"trainer-{base}"
    room = NAME_LIMIT - len(f"-worker-{max(workers - 1, 0)}") - len(suffix) - 1
    return f"{base[:room].rstrip('-')}-{suffix}"


def _security_contexts() -> tuple:
    """(pod, container) securityContext of the "restricted" Pod Security Standard."""
    pod = {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": GID, "fsGroup": GID,
           "seccompProfile": {"type": "RuntimeDefault"}}
    container = {"runAsNonRoot": True, "allowPrivilegeEscalation": False,
                 "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
    return pod, container


def pod_template(distribution: dict, executor_args: list, volumes=(), volume_mounts=(),
                 service_account: str = "") -> dict:
    """The pod template every replica runs: the executor in the pipeline image."""
    pod_security, container_security = _security_contexts()
    env = dict(distribution.get("env") or {}, TF_USE_LEGACY_KERAS="1")
    container = {
        "name": CONTAINER, "image": distribution["image"],
        "command": list(distribution.get("command") or COMMAND),
        "args": list(executor_args),
        "env": [{"name": key, "value": str(value)} for key, value in sorted(env.items())],
        "resources": {"requests": dict(distribution["resources"]),
                      "limits": dict(distribution["resources"])},
        "securityContext": container_security,
        "volumeMounts": [{"name": TMP_VOLUME, "mountPath": "/tmp"}, *volume_mounts]}
    if distribution.get("working_dir"):
        container["workingDir"] = distribution["working_dir"]
    spec = {"securityContext": pod_security, "automountServiceAccountToken": False,
            "containers": [container],
            "volumes": [{"name": TMP_VOLUME, "emptyDir": {"sizeLimit": TMP_SIZE_LIMIT}},
                        *volumes]}
    if service_account:
        spec["serviceAccountName"] = service_account
    if distribution.get("node_selector"):
        spec["nodeSelector"] = dict(distribution["node_selector"])
    return {"metadata": {"labels": dict(LABELS)}, "spec": spec}


def tfjob_manifest(name: str, namespace: str, distribution: dict, executor_args: list, *,
                   volumes=(), volume_mounts=(), service_account: Optional[str] = None,
                   owner: Optional[dict] = None) -> dict:
    """The TFJob: a Chief and ``workers`` - 1 Workers of ``pod_template``, restarted on
    failure. One lost replica makes every replica's collectives fail, so each incident
    restarts all of them: the operator counts every pod's restarts against backoffLimit,
    which is ``max_restarts`` x replicas + 1. ``deadline_minutes`` (0: none) becomes
    activeDeadlineSeconds, which the step enforces as well (``follow``). ``owner``: the
    step's pod (metadata.ownerReferences entry), so the job goes when that pod is
    deleted."""
    if service_account is None:
        service_account = distribution.get("service_account", "")
    template = pod_template(distribution, executor_args, volumes, volume_mounts,
                            service_account)
    replicas = {"Chief": 1, "Worker": int(distribution["workers"]) - 1}
    metadata = {"name": name, "namespace": namespace, "labels": dict(LABELS)}
    if owner:
        metadata["ownerReferences"] = [owner]
        metadata["annotations"] = {STEP_POD_ANNOTATION: owner["name"]}
    # The operator fails the job once its pods' restarts reach the limit (>=), so
    # max_restarts incidents of every replica restarting need one more than their sum.
    run_policy = {"backoffLimit": int(distribution["max_restarts"]) * sum(replicas.values())
                  + 1,
                  "cleanPodPolicy": "Running",
                  "ttlSecondsAfterFinished": TTL_SECONDS_AFTER_FINISHED}
    if distribution.get("deadline_minutes"):
        run_policy["activeDeadlineSeconds"] = int(60 * distribution["deadline_minutes"])
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "metadata": metadata,
        "spec": {
            "runPolicy": run_policy,
            "tfReplicaSpecs": {
                kind: {"replicas": count, "restartPolicy": "OnFailure", "template": template}
                for kind, count in replicas.items() if count > 0}}}


# -- the step's pod: namespace, owner, identity, mounted pipeline root -----------------
def step_namespace() -> str:
    """KFP_NAMESPACE (kubeflow/entrypoint.sh exports it), the pod's own namespace file,
    else 'default'."""
    if os.environ.get("KFP_NAMESPACE"):
        return os.environ["KFP_NAMESPACE"]
    if os.path.exists(NAMESPACE_FILE):
        with open(NAMESPACE_FILE, encoding="utf-8") as f:
            return f.read().strip()
    return "default"


def _owner(pod: k8s.V1Pod) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "name": pod.metadata.name,
            "uid": pod.metadata.uid}


def _covers(mount_path: str, path: str) -> bool:
    return path == mount_path or path.startswith(mount_path.rstrip("/") + "/")


# Volume types whose contents live in one pod (or one node): never a shared root.
POD_LOCAL_VOLUMES = ("empty_dir", "host_path", "config_map", "secret", "downward_api",
                     "projected", "ephemeral")


def shared_root(pod: Optional[k8s.V1Pod], pipeline_root: str) -> tuple:
    """(volumes, volumeMounts) that give the replicas the step's mounted pipeline root:
    the step's volume whose mount holds ``pipeline_root``, at the same path. A gs:// or
    s3:// root needs none (the replicas' account and ``env`` reach it)."""
    if not pipeline_root or "://" in pipeline_root:
        return [], []
    serialize = k8s.ApiClient().sanitize_for_serialization
    containers = pod.spec.containers if pod is not None else []
    for container in containers:
        for mount in container.volume_mounts or []:
            if _covers(mount.mount_path, pipeline_root):
                volume, = [v for v in pod.spec.volumes if v.name == mount.name]
                local = [kind for kind in POD_LOCAL_VOLUMES if getattr(volume, kind, None)]
                if local:  # each replica would get a folder of its own
                    raise RuntimeError(
                        f"kubeflow.pipeline_root {pipeline_root} is on the step pod's "
                        f"{local[0]} volume {volume.name!r}, which the TFJob replicas "
                        "cannot share: use gs://, s3:// or a shared claim (a "
                        "ReadWriteMany persistentVolumeClaim, nfs, csi)")
                mount_copy = {"name": mount.name, "mountPath": mount.mount_path}
                if mount.sub_path:
                    mount_copy["subPath"] = mount.sub_path
                return [serialize(volume)], [mount_copy]
    raise RuntimeError(f"pipeline root {pipeline_root} is a path, but no volume of the "
                       "Trainer step's pod holds it: the TFJob replicas could not share it")


def _read_step_pod(core: k8s.CoreV1Api, namespace: str) -> Optional[k8s.V1Pod]:
    """The step's own pod (KFP_POD_NAME), None where that is not set."""
    name = os.environ.get("KFP_POD_NAME")
    return core.read_namespaced_pod(name=name, namespace=namespace,
                                     _request_timeout=API_TIMEOUT_SECONDS) if name else None


# -- following the job -----------------------------------------------------------------
def _api_client() -> k8s.ApiClient:
    """In a pod: its service account; elsewhere: the kubeconfig (KUBECONFIG or
    ~/.kube/config)."""
    configuration = k8s.Configuration()
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        k8s_config.load_incluster_config(client_configuration=configuration)
    else:
        k8s_config.load_kube_config(config_file=os.environ.get("KUBECONFIG"),
                                    client_configuration=configuration)
    return k8s.ApiClient(configuration)


def job_state(job: dict) -> tuple:
    """(condition type, reason, message) of the job's true Succeeded or Failed condition,
    else of its latest true one ('Pending', '', '' before the operator sets one)."""
    true = [c for c in (job.get("status") or {}).get("conditions") or []
            if c.get("status") == "True"]
    if not true:
        return "Pending", "", ""
    latest = ([c for c in true if c["type"] in FINISHED] or true)[-1]
    return latest["type"], latest.get("reason", ""), latest.get("message", "")


def state_line(namespace: str, name: str, job: dict) -> str:
    """One line: the job's state, reason, message and each replica type's counts."""
    kind, reason, message = job_state(job)
    line = f"TFJob {namespace}/{name}: {kind}"
    if reason or message:
        line += f" ({reason}: {message})"
    for replica, counts in sorted(((job.get("status") or {}).get("replicaStatuses")
                                   or {}).items()):
        numbers = ", ".join(f"{key} {counts.get(key, 0)}"
                            for key in ("active", "succeeded", "failed"))
        line += f"; {replica}: {numbers}"
    return line


def _get(api: k8s.CustomObjectsApi, namespace: str, name: str, errors: list) -> Optional[dict]:
    """The job, or None after a transient API error (``errors`` counts them in a row)."""
    try:
        job = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name,
                                               _request_timeout=API_TIMEOUT_SECONDS)
    except (k8s.ApiException, HTTPError) as e:
        status = getattr(e, "status", None)
        if status == 404:
            raise RuntimeError(f"TFJob {namespace}/{name} was deleted while the Trainer "
                               "step waited for it") from e
        errors.append(e)
        if len(errors) >= MAX_API_ERRORS or status in (401, 403):
            raise
        print(f"TFJob {namespace}/{name}: reading its status failed ({e}); retrying",
              file=sys.stderr, flush=True)
        return None
    errors.clear()
    return job


def follow(api: k8s.CustomObjectsApi, namespace: str, name: str,
           poll_seconds: float, deadline_minutes: float = 0) -> dict:
    """Polls the job until it succeeds or fails, printing each change; returns it.
    Raises RuntimeError when it still runs DEADLINE_MARGIN_SECONDS after
    ``deadline_minutes`` (0: none): the operator checks activeDeadlineSeconds only when
    the job changes (kubeflow/trainer#3358), so a job whose pods stay Pending outlived
    it."""
    last, errors = None, []
    started = time.monotonic()
    while True:
        if deadline_minutes and time.monotonic() - started > \
                60 * deadline_minutes + DEADLINE_MARGIN_SECONDS:
            raise RuntimeError(f"TFJob {namespace}/{name} is still running "
                               f"{deadline_minutes:g} minutes after it was created, past "
                               f"trainer.deadline_minutes; stopped")
        job = _get(api, namespace, name, errors)
        if job is not None:
            line = state_line(namespace, name, job)
            if line != last:
                print(line, file=sys.stderr, flush=True)
                last = line
            if job_state(job)[0] in FINISHED:
                return job
        time.sleep(poll_seconds)


def _delete(api: k8s.CustomObjectsApi, namespace: str, name: str, why: BaseException) -> None:
    """Deletes the job (its pods go with it); reports, never raises, an API error."""
    print(f"TFJob {namespace}/{name}: the Trainer step stops ({type(why).__name__}: {why}); "
          "deleting the job", file=sys.stderr, flush=True)
    try:
        api.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name,
                                            _request_timeout=API_TIMEOUT_SECONDS)
    except (k8s.ApiException, HTTPError) as e:
        if getattr(e, "status", None) != 404:
            print(f"TFJob {namespace}/{name}: deleting it failed ({e}): delete it with "
                  f"kubectl delete tfjob -n {namespace} {name}", file=sys.stderr, flush=True)


class Terminated(KeyboardInterrupt):
    """SIGTERM (Argo stopping the step's pod), raised where the step waits."""


@contextlib.contextmanager
def _sigterm_raises():
    """SIGTERM raises ``Terminated`` in the main thread while inside."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum, frame):
        raise Terminated(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_replicas(executor_args: list, distribution: dict, *,
                 poll_seconds: float = POLL_SECONDS) -> None:
    """Runs the Trainer's replicas as a TFJob and waits for it (see the module)."""
    api_client = _api_client()
    namespace = step_namespace()
    pod = _read_step_pod(k8s.CoreV1Api(api_client), namespace)
    volumes, mounts = shared_root(pod, distribution.get("pipeline_root", ""))
    service_account = distribution.get("service_account") or (
        pod.spec.service_account_name if pod is not None else "") or ""
    name = job_name(os.environ.get("KFP_POD_NAME") or "trainer", distribution["workers"])
    manifest = tfjob_manifest(name, namespace, distribution, executor_args,
                              volumes=volumes, volume_mounts=mounts,
                              service_account=service_account,
                              owner=_owner(pod) if pod is not None else None)
    api = k8s.CustomObjectsApi(api_client)
    with _sigterm_raises():
        try:
            api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, manifest,
                                                _request_timeout=API_TIMEOUT_SECONDS)
        except k8s.ApiException as e:
            if e.status is None or not 400 <= e.status < 500:
                _delete(api, namespace, name, e)  # it may have been created
            raise  # refused (RBAC, the schema, the webhook): there is no job
        except BaseException as e:
            _delete(api, namespace, name, e)
            raise
        try:
            print(f"TFJob {namespace}/{name}: created (a Chief and "
                  f"{distribution['workers'] - 1} Worker(s) of {distribution['image']})",
                  file=sys.stderr, flush=True)
            job = follow(api, namespace, name, poll_seconds,
                         float(distribution.get("deadline_minutes") or 0))
        except BaseException as e:
            _delete(api, namespace, name, e)
            raise
    kind, reason, message = job_state(job)
    if kind == "Failed":
        raise RuntimeError(f"TFJob {namespace}/{name} failed: {reason}: {message} (the "
                           f"operator deletes a failed job's replica pods: their logs are "
                           f"in the cluster's log store, label "
                           f"training.kubeflow.org/job-name={name})")
