"""The cluster files in kubeflow/deploy/: service accounts and Roles of rbac.yaml, the
runs' namespace labelled "restricted", every file valid for the Kubernetes API."""
import json
import os

import kubernetes_validate
import pytest

from tests.support.kubeflow_cluster import (DEPLOY, KUBERNETES_VERSIONS, _by_kind_and_name,
                                            _documents)
from tests.support.kubeflow_specs import _config


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
                     ("bert-pipeline-trainer", "bert-pipeline")}  # its Role: test_tfjob.py
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
