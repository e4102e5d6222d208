"""InfraValidator's executor validates a model in a hardened pod and cleans it up (a local
endpoint answers as the Kubernetes API does; the model server is real)."""
import os

from google.protobuf import json_format
from tfx.proto import infra_validator_pb2

from kubeflow.kubeflow_runner import serving_spec
from tests.support.kubeflow_cluster import NAMESPACE, _KubernetesApi
from tests.support.kubeflow_specs import _config
from tests.support.paths import REPO
from tests.support.pod_security import violations

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
