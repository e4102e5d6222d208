"""Least privilege for InfraValidator's model server pod
(components/kubernetes_infra_validator/hardened_runner.py): its own service account, no
token, the "restricted" Pod Security Standard, and a Role that allows exactly the calls
TFX makes.

No cluster here: the model server runner talks to a local HTTP endpoint on 127.0.0.1
that answers as the Kubernetes API does (the executor's own pod, the created pod's
phase, its log) and records every request, through the real kubernetes client."""
import ast
import inspect
import os
import re

import kubernetes_validate
import pytest
from kubernetes import client as k8s
from tfx.components.infra_validator import serving_bins
from tfx.components.infra_validator.model_server_runners import kubernetes_runner
from tfx.utils import kube_utils

from components.kubernetes_infra_validator import hardened_runner
from components.kubernetes_infra_validator.executor import make_runner
from kubeflow.kubeflow_runner import serving_spec
from tests.support.kubeflow_cluster import (CLAIM, EXECUTOR_POD, KUBERNETES_VERSIONS,
                                            _by_kind_and_name, _pod_document)
from tests.support.kubeflow_specs import SERVING_IMAGE, _config
from tests.support.pod_security import violations

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


def _rules(role):
    return {(group, resource, verb) for rule in role["rules"]
            for group in rule["apiGroups"] for resource in rule["resources"]
            for verb in rule["verbs"]}


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
