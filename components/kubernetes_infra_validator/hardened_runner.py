"""InfraValidator's model server pod, hardened to Kubernetes' "restricted" Pod Security
Standard.

TFX 1.16's ``KubernetesRunner`` builds a pod with no securityContext, no resources unless
``serving_pod_overrides`` gives them, and, without ``service_account_name``, the
service account of the step's own pod (which may create pods) with its token mounted.
``HardenedKubernetesRunner`` starts from TFX's pod and adds: a non-root user and
RuntimeDefault seccomp profile for the pod; no privilege escalation, no capabilities and
a read-only root file system for the container, with an ``emptyDir`` for ``/tmp``; no
service-account token; and never the step's own account (an empty
``service_account_name`` means the namespace's ``default`` account).

It also drops the ``claims: {}`` TFX puts in the resources it copies from
``serving_pod_overrides`` (the API wants a list there, and refuses the pod), and reads
the model server's log from the model server's container: TFX's
``GetLogs`` asks for the log of the container named like the *executor's* container
(``main``), which the model server pod does not have, so a failed validation logged an
API error instead of TF Serving's log.
"""
from __future__ import annotations

from typing import Optional

from kubernetes import client as k8s
from tfx.components.infra_validator.model_server_runners import kubernetes_runner

UID = GID = 1000  # any non-root id: TF Serving only reads the model and writes /tmp
TMP_SIZE_LIMIT = "1Gi"
DEFAULT_SERVICE_ACCOUNT = "default"  # an empty service_account_name: never the step's own
_TMP_VOLUME = "tmp"


def pod_security_context() -> k8s.V1PodSecurityContext:
    return k8s.V1PodSecurityContext(
        run_as_non_root=True, run_as_user=UID, run_as_group=GID, fs_group=GID,
        seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"))


def container_security_context() -> k8s.V1SecurityContext:
    return k8s.V1SecurityContext(
        allow_privilege_escalation=False, read_only_root_filesystem=True,
        run_as_non_root=True, capabilities=k8s.V1Capabilities(drop=["ALL"]))


def harden(pod: k8s.V1Pod, service_account: str) -> k8s.V1Pod:
    """``pod`` (TFX's model server pod) with the restricted profile's settings, no
    service-account token and ``service_account`` (empty: the namespace's default)."""
    spec = pod.spec
    spec.security_context = pod_security_context()
    spec.automount_service_account_token = False
    spec.service_account_name = service_account or DEFAULT_SERVICE_ACCOUNT
    spec.volumes = list(spec.volumes or []) + [k8s.V1Volume(
        name=_TMP_VOLUME, empty_dir=k8s.V1EmptyDirVolumeSource(size_limit=TMP_SIZE_LIMIT))]
    for container in spec.containers:
        if container.resources is not None and not container.resources.claims:
            # TFX sends serving_pod_overrides.resources with `claims: {}`, an object
            # where the API wants a list: the API server refuses the pod.
            container.resources.claims = None
        container.security_context = container_security_context()
        container.volume_mounts = list(container.volume_mounts or []) + [
            k8s.V1VolumeMount(name=_TMP_VOLUME, mount_path="/tmp")]
    return pod


class HardenedKubernetesRunner(kubernetes_runner.KubernetesRunner):
    """TFX's Kubernetes model server runner with a hardened pod (see the module)."""

    def _BuildPodManifest(self) -> k8s.V1Pod:  # pylint: disable=invalid-name
        return harden(super()._BuildPodManifest(), self._config.service_account_name)

    def GetLogs(self) -> Optional[str]:  # pylint: disable=invalid-name
        if not (self._pod_name and self._namespace):
            return None
        # pylint: disable-next=protected-access
        container = kubernetes_runner._MODEL_SERVER_CONTAINER_NAME
        log = self._k8s_core_api.read_namespaced_pod_log(
            name=self._pod_name, namespace=self._namespace, container=container)
        return log.decode("utf-8") if isinstance(log, bytes) else log
