"""The documents of kubeflow/deploy/ and a local endpoint that answers as the Kubernetes
API does for InfraValidator's model server pod."""
import os
from urllib.parse import parse_qs, urlparse

import yaml
from kubernetes import client as k8s

from tests.support.json_api import JsonApiHandler
from tests.support.kubeflow_specs import IMAGE
from tests.support.paths import REPO

DEPLOY = os.path.join(REPO, "kubeflow", "deploy")
KUBERNETES_VERSIONS = ["1.25", "1.37"]  # oldest and newest kubernetes-validate knows
NAMESPACE, EXECUTOR_POD = "team-a", "bert-text-classifier-infravalidator-x1"
CLAIM = "pipeline-root"


def _documents(name):
    with open(os.path.join(DEPLOY, name), encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc]


def _by_kind_and_name(name):
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in _documents(name)}


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
