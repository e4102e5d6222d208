"""Thin Kubeflow Pipelines runner: ``create_pipeline`` compiled with KubeflowV2DagRunner.

The output is a KFP v2 PipelineSpec (YAML) that Kubeflow Pipelines 2.x and Vertex
AI Pipelines accept. Every component runs in the project's image
(``kubeflow/Dockerfile``): the default TFX image lacks tensorflow-text,
transformers and this project's code.
"""
from __future__ import annotations

import os

from tfx import v1 as tfx

from pipeline.config import PipelineConfig
from pipeline.pipeline import create_pipeline


def check_storage(config: PipelineConfig) -> None:
    """The pods read and write pipeline_root and the push folder: local paths of this
    machine are no use there."""
    kubeflow = config.kubeflow
    for name, value in (("kubeflow.pipeline_root", kubeflow.pipeline_root),
                        ("kubeflow.serving_dir", kubeflow.serving_dir),
                        ("data.input_dir", config.data.input_dir)):  # not in the image
        if not value:
            raise ValueError(f"{name} is required for Kubeflow: storage every pod can "
                             "reach (gs://..., s3://... or a volume mounted in the image)")
        if "://" not in value and not os.path.isabs(value):
            raise ValueError(f"{name} '{value}' must be a URI or an absolute path mounted "
                             "in the pods, not a path relative to this machine")


def compile_pipeline(config: PipelineConfig, output_file: str) -> str:
    """Writes the pipeline spec to ``output_file`` (.yaml); returns its path."""
    if not output_file.endswith((".yaml", ".yml")):
        raise ValueError(f"{output_file}: write the spec as .yaml (a plain PipelineSpec; "
                         "the .json PipelineJob wrapper is refused by kfp's client)")
    check_storage(config)
    runner_config = tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
        default_image=config.kubeflow.image)
    output_dir = os.path.dirname(os.path.abspath(output_file))
    os.makedirs(output_dir, exist_ok=True)
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=runner_config, output_dir=output_dir,
        output_filename=os.path.basename(output_file))
    pipeline = create_pipeline(config, on_kubernetes=True)
    runner.run(pipeline)
    _set_default_pipeline_root(output_file, pipeline.pipeline_info.pipeline_root)
    return os.path.abspath(output_file)


def _set_default_pipeline_root(spec_file: str, pipeline_root: str) -> None:
    """KFP and Vertex write artifacts under the spec's defaultPipelineRoot (TFX leaves
    it out of the YAML), so a run needs no extra argument."""
    import yaml

    with open(spec_file, encoding="utf-8") as f:
        header = "".join(line for line in f if line.startswith("#"))
        f.seek(0)
        spec = yaml.safe_load(f)
    spec["defaultPipelineRoot"] = pipeline_root
    with open(spec_file, "w", encoding="utf-8") as f:
        f.write(header)
        yaml.safe_dump(spec, f, sort_keys=True)
