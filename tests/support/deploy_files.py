"""The deployment files of serving/deploy/, read: manifests, the server's pod and flags,
models.config, and the images the pin script sees."""
import os
import re
import subprocess

import yaml
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from serving.server import parse_flags
from tests.support.paths import REPO

DEPLOY = os.path.join(REPO, "serving", "deploy")
KUBERNETES = os.path.join(DEPLOY, "kubernetes")
MODELS_CONFIG = os.path.join(DEPLOY, "models.config")


def _documents():
    """{file name: [document, ...]} of every manifest in serving/deploy/kubernetes/."""
    files = {}
    for name in sorted(os.listdir(KUBERNETES)):
        if name.endswith((".yaml", ".yml")):
            with open(os.path.join(KUBERNETES, name)) as f:
                files[name] = [doc for doc in yaml.safe_load_all(f) if doc]
    return files


DOCUMENTS = _documents()


def _by_kind(*files):
    """{kind: document} of these files (one document per kind)."""
    docs = {}
    for name in files:
        for doc in DOCUMENTS[name]:
            assert doc["kind"] not in docs, f"two {doc['kind']} manifests"
            docs[doc["kind"]] = doc
    return docs


def _config(path):
    config = model_server_config_pb2.ModelServerConfig()
    with open(path) as f:
        text_format.Parse(f.read(), config)
    return config


# -- the project's own server in the cluster (bert-pipeline-server.yaml) ----------------
SERVER = _by_kind("bert-pipeline-server.yaml")
SERVER_POD = SERVER["Deployment"]["spec"]["template"]
SERVER_CONTAINER, = SERVER_POD["spec"]["containers"]
SERVER_FLAGS = parse_flags(SERVER_CONTAINER["args"])  # the server's own parser


def _probe_script():
    command = SERVER_CONTAINER["readinessProbe"]["exec"]["command"]
    assert command[:2] == ["python", "-c"]
    return command[2]


# -- images pinned by digest (pin-images.sh) -------------------------------------------
PIN = os.path.join(KUBERNETES, "pin-images.sh")
IMAGE_LINE = re.compile(r"^\s*(?:-\s+)?image:\s*(\S+)", re.M)


def _images(folder):
    """{file name: [image, ...]} of the manifests in ``folder``."""
    return {name: IMAGE_LINE.findall(open(os.path.join(folder, name)).read())
            for name in sorted(os.listdir(folder)) if name.endswith(".yaml")}


def _pin(*args, cwd=None):
    return subprocess.run([PIN, *map(str, args)], capture_output=True, text=True,
                          timeout=120, cwd=cwd)
