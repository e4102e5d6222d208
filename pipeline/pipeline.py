"""``create_pipeline``: the one pipeline definition every runner uses.

TextExampleGen -> StatisticsGen -> SchemaGen/ImportSchemaGen -> ExampleValidator
-> DataGate (-> DriftCheck, with spans) -> Transform -> Trainer (warm start from
the latest blessed model, optional) -> Evaluator (gate against that model)
-> ServingCheck locally / InfraValidator on Kubernetes (load and query the
candidate in a model server) -> Pusher
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Optional

import tensorflow_model_analysis as tfma
from tfx import v1 as tfx
from tfx.proto import example_gen_pb2

from components.data_gate.component import DataGate
from components.drift_check.component import DriftCheck
from components.kubernetes_infra_validator.component import KubernetesInfraValidator
from components.serving_check.component import ServingCheck
from components.text_example_gen.component import TextExampleGen
from components.text_example_gen.parsing import split_buckets
from models import features
from pipeline.config import PipelineConfig

PREPROCESSING_FN = "models.preprocessing.preprocessing_fn"
RUN_FN = "models.trainer.run_fn"


def _path(path: str, base: Optional[str] = None) -> str:
    """URIs (gs://...) and absolute paths as given; relative ones made absolute against
    ``base`` (the project folder in the Kubeflow image) or the working directory."""
    if "://" in path or os.path.isabs(path):
        return path
    return os.path.join(base, path) if base else os.path.abspath(path)


def input_splits(data) -> list:
    """Input file patterns under input_dir, inside the ``{SPAN}`` folder with spans."""
    span = data.span_pattern + "/" if data.span_pattern else ""
    if data.presplit:
        return [example_gen_pb2.Input.Split(name="train", pattern=span + "train/*"),
                example_gen_pb2.Input.Split(name="eval", pattern=span + "eval/*")]
    return [example_gen_pb2.Input.Split(name="single_split", pattern=span + data.file_pattern)]


def example_gen(config: PipelineConfig, base: Optional[str] = None) -> TextExampleGen:
    data = config.data
    input_config = example_gen_pb2.Input(splits=input_splits(data))
    if data.presplit:
        output_config = None
    else:
        train, evaluation = split_buckets(data.eval_fraction)
        output_config = example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(
            splits=[example_gen_pb2.SplitConfig.Split(name="train", hash_buckets=train),
                    example_gen_pb2.SplitConfig.Split(name="eval", hash_buckets=evaluation)]))
    return TextExampleGen(input_base=_path(data.input_dir, base),
                          reader_config=data.reader_config(),
                          input_config=input_config, output_config=output_config,
                          span_pattern=data.span_pattern, window_spans=data.window_spans)


def eval_config(config: PipelineConfig) -> tfma.EvalConfig:
    """Accuracy gate on the whole eval split (not per slice): an absolute bar and no
    regression against the baseline. Slices are reported, not gated."""
    accuracy_threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(
            lower_bound={"value": config.eval.min_accuracy}),
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER,
            # TFMA passes a change strictly above the bound; the epsilon lets an equal
            # accuracy (a drop of exactly max_accuracy_drop) pass.
            absolute={"value": -config.eval.max_accuracy_drop - 1e-9}))
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(
            signature_name=features.SERVING_EXAMPLES_SIGNATURE,
            preprocessing_function_names=[features.TRANSFORM_SIGNATURE],
            label_key=features.LABEL_ID, prediction_key=features.PROBABILITIES)],
        slicing_specs=[tfma.SlicingSpec(),
                       tfma.SlicingSpec(feature_keys=[features.LENGTH_BUCKET])],
        metrics_specs=[tfma.MetricsSpec(metrics=[
            tfma.MetricConfig(class_name="ExampleCount"),
            tfma.MetricConfig(
                class_name="SparseCategoricalAccuracy",
                per_slice_thresholds=[tfma.PerSliceMetricThreshold(
                    slicing_specs=[tfma.SlicingSpec()], threshold=accuracy_threshold)]),
        ])])


def drift_check(config: PipelineConfig, gen, schema, base: Optional[str]) -> DriftCheck:
    data = config.data
    return DriftCheck(
        examples=gen.outputs["examples"], schema=schema.outputs["schema"],
        input_base=_path(data.input_dir, base), span_pattern=data.span_pattern,
        file_patterns=json.dumps([split.pattern for split in input_splits(data)]),
        reader_config=json.dumps(dataclasses.asdict(data.reader_config())),
        checkpoint=config.model.checkpoint, label_feature=features.LABEL,
        text_feature=features.TEXT,
        max_unknown_share_increase=data.max_unknown_share_increase,
        action=data.drift_action)


def serving_validation(config: PipelineConfig, trainer, evaluator, gen, on_kubernetes: bool):
    """The candidate must load and answer in a model server before the push: the local
    model server (ServingCheck) here, stock TF Serving in a pod (InfraValidator) on
    Kubernetes."""
    if not on_kubernetes:
        return ServingCheck(
            model=trainer.outputs["model"], model_blessing=evaluator.outputs["blessing"],
            model_name=config.output.model_name,
            timeout_seconds=config.output.serving_check_timeout)
    kubeflow = config.kubeflow
    return KubernetesInfraValidator(
        model=trainer.outputs["model"],
        examples=gen.outputs["examples"],
        serving_spec=tfx.proto.ServingSpec(
            tensorflow_serving=tfx.proto.TensorFlowServing(tags=[kubeflow.serving_image_tag]),
            kubernetes=tfx.proto.KubernetesConfig(
                service_account_name=kubeflow.infra_validator_service_account),
            model_name=config.output.model_name),
        validation_spec=tfx.proto.ValidationSpec(
            max_loading_time_seconds=config.output.serving_check_timeout, num_tries=2),
        request_spec=tfx.proto.RequestSpec(
            tensorflow_serving=tfx.proto.TensorFlowServingRequestSpec(
                signature_names=[features.SERVING_EXAMPLES_SIGNATURE]),
            split_name="eval", num_examples=8)).with_id("InfraValidator")


def create_pipeline(config: PipelineConfig,
                    metadata_connection_config=None,
                    beam_pipeline_args: Optional[list] = None,
                    on_kubernetes: bool = False) -> tfx.dsl.Pipeline:
    """The whole pipeline. Runners pass their own metadata connection and Beam args;
    ``on_kubernetes`` (the Kubeflow runner) swaps the local serving check for
    InfraValidator and uses the ``kubeflow`` section's storage and resources."""
    base = config.kubeflow.project_dir if on_kubernetes else None
    gen = example_gen(config, base)
    statistics = tfx.components.StatisticsGen(examples=gen.outputs["examples"])
    if config.data.schema_path:
        schema = tfx.components.ImportSchemaGen(
            schema_file=_path(config.data.schema_path, base))
    else:
        schema = tfx.components.SchemaGen(statistics=statistics.outputs["statistics"],
                                          infer_feature_shape=True)
    validator = tfx.components.ExampleValidator(statistics=statistics.outputs["statistics"],
                                                schema=schema.outputs["schema"])
    gate = DataGate(statistics=statistics.outputs["statistics"],
                    anomalies=validator.outputs["anomalies"],
                    label_feature=features.LABEL)
    checks = [gate]
    if config.data.span_pattern:
        checks.append(drift_check(config, gen, schema, base))
        checks[-1].add_upstream_node(gate)
    custom_config = {"model": config.model.to_dict()}
    transform = tfx.components.Transform(
        examples=gen.outputs["examples"], schema=schema.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN, custom_config=custom_config)
    transform.add_upstream_node(checks[-1])
    baseline = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id("latest_blessed_model_resolver")
    trainer = tfx.components.Trainer(
        run_fn=RUN_FN,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema.outputs["schema"],
        base_model=baseline.outputs["model"] if config.model.warm_start else None,
        train_args=tfx.proto.TrainArgs(),
        eval_args=tfx.proto.EvalArgs(),
        custom_config=custom_config)
    evaluator = tfx.components.Evaluator(
        examples=gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=baseline.outputs["model"],
        eval_config=eval_config(config))
    serving = serving_validation(config, trainer, evaluator, gen, on_kubernetes)
    root, push_base, default_beam_args = _storage(config, on_kubernetes)
    pusher = tfx.components.Pusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        infra_blessing=serving.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(
                base_directory=_path(os.path.join(push_base, config.output.model_name),
                                     base))))
    if on_kubernetes:
        trainer.with_platform_config(trainer_resources(config.kubeflow))
    return tfx.dsl.Pipeline(
        pipeline_name=config.name,
        pipeline_root=_path(os.path.join(root, config.name), base),
        components=[gen, statistics, schema, validator, *checks, transform, baseline,
                    trainer, evaluator, serving, pusher],
        enable_cache=config.enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=default_beam_args if beam_pipeline_args is None
        else beam_pipeline_args)


def _storage(config: PipelineConfig, on_kubernetes: bool) -> tuple:
    """(pipeline root, push base folder, Beam args): on Kubernetes the kubeflow section's,
    where set, else the local ones."""
    if not on_kubernetes:
        return config.output.root, config.output.serving_dir, list(config.beam_args)
    kubeflow = config.kubeflow
    return (kubeflow.pipeline_root or config.output.root,
            kubeflow.serving_dir or config.output.serving_dir,
            list(kubeflow.beam_args or config.beam_args))


def trainer_resources(kubeflow):
    """The Trainer pod's CPU, memory and accelerators (KFP v2 resource spec)."""
    from kfp.pipeline_spec import pipeline_spec_pb2

    spec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec(
        cpu_limit=kubeflow.trainer_cpu, memory_limit=_gigabytes(kubeflow.trainer_memory))
    if kubeflow.trainer_accelerator:
        spec.accelerator.type = kubeflow.trainer_accelerator
        spec.accelerator.count = kubeflow.trainer_accelerator_count
    return spec


def _gigabytes(memory: str) -> float:
    """'16G', '16Gi', '512M' -> gigabytes, as the resource spec wants them."""
    units = {"G": 1.0, "GI": 2**30 / 1e9, "M": 1e-3, "MI": 2**20 / 1e9}
    number = memory.rstrip("GgMmIi")
    unit = memory[len(number):].upper() or "G"
    if unit not in units or not number:
        raise ValueError(f"kubeflow.trainer_memory '{memory}': expected e.g. 16G or 512M")
    return float(number) * units[unit]
