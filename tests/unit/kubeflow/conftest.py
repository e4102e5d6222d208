"""Fixtures of the Kubeflow unit tests: the pipeline compiled once per module."""
import pytest
import yaml

from kubeflow.kubeflow_runner import compile_pipeline
from tests.support.kubeflow_specs import IMAGE, _config


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    config = _config(**{"data.span_pattern": "span-{SPAN}", "data.window_spans": 3,
                        "model.warm_start": True, "enable_cache": True,
                        "kubeflow.image": IMAGE,
                        "kubeflow.trainer_accelerator": "NVIDIA_TESLA_T4",
                        "kubeflow.trainer_accelerator_count": 2,
                        "kubeflow.trainer_memory": "32G",
                        "kubeflow.beam_args": "--runner=DataflowRunner --project=p "
                                              "--region=europe-west4"})
    path = compile_pipeline(config, str(tmp_path_factory.mktemp("kfp") / "pipeline.yaml"))
    return path, yaml.safe_load(open(path, encoding="utf-8"))
