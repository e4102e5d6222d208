"""Settings and pinned images for compiling the pipeline for Kubeflow."""
from pipeline.config import load_config

STORAGE = {"kubeflow.pipeline_root": "gs://bucket/root",
           "kubeflow.serving_dir": "gs://bucket/serving", "data.input_dir": "gs://bucket/data"}
PIPELINE_DIGEST = "sha256:" + "7e" * 32
SERVING_DIGEST = "sha256:" + "5f" * 32
IMAGE = f"registry.example/bert-text-pipeline:7@{PIPELINE_DIGEST}"
SERVING_IMAGE = f"docker.io/tensorflow/serving:2.18.0@{SERVING_DIGEST}"


def _config(**extra):
    return load_config(None, dict(STORAGE, **{"kubeflow.image": IMAGE,
                                              "kubeflow.serving_image": SERVING_IMAGE,
                                              **extra}))


UNPINNED = {"kubeflow.image": "registry.example/bert-text-pipeline:7",
            "kubeflow.serving_image": "docker.io/tensorflow/serving:2.18.0"}
