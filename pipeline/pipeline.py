"""``create_pipeline``: the one pipeline definition every runner uses.

TextExampleGen -> StatisticsGen -> SchemaGen/ImportSchemaGen -> ExampleValidator
-> DataGate -> Transform -> Trainer -> (latest blessed model) -> Evaluator
-> ServingCheck (loads and queries the candidate in the model server) -> Pusher
"""
from __future__ import annotations

import os
from typing import Optional

import tensorflow_model_analysis as tfma
from tfx import v1 as tfx
from tfx.proto import example_gen_pb2

from components.data_gate.component import DataGate
from components.serving_check.component import ServingCheck
from components.text_example_gen.component import TextExampleGen
from components.text_example_gen.parsing import split_buckets
from models import features
from pipeline.config import PipelineConfig

PREPROCESSING_FN = "models.preprocessing.preprocessing_fn"
RUN_FN = "models.trainer.run_fn"


def example_gen(config: PipelineConfig) -> TextExampleGen:
    data = config.data
    if data.presplit:
        input_config = example_gen_pb2.Input(splits=[
            example_gen_pb2.Input.Split(name="train", pattern="train/*"),
            example_gen_pb2.Input.Split(name="eval", pattern="eval/*")])
        output_config = None
    else:
        input_config = example_gen_pb2.Input(splits=[
            example_gen_pb2.Input.Split(name="single_split", pattern=data.file_pattern)])
        train, evaluation = split_buckets(data.eval_fraction)
        output_config = example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(
            splits=[example_gen_pb2.SplitConfig.Split(name="train", hash_buckets=train),
                    example_gen_pb2.SplitConfig.Split(name="eval", hash_buckets=evaluation)]))
    return TextExampleGen(input_base=os.path.abspath(data.input_dir),
                          reader_config=data.reader_config(),
                          input_config=input_config, output_config=output_config)


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


def create_pipeline(config: PipelineConfig,
                    metadata_connection_config=None,
                    beam_pipeline_args: Optional[list] = None) -> tfx.dsl.Pipeline:
    """The whole pipeline. Runners pass their own metadata connection and Beam args."""
    gen = example_gen(config)
    statistics = tfx.components.StatisticsGen(examples=gen.outputs["examples"])
    if config.data.schema_path:
        schema = tfx.components.ImportSchemaGen(
            schema_file=os.path.abspath(config.data.schema_path))
    else:
        schema = tfx.components.SchemaGen(statistics=statistics.outputs["statistics"],
                                          infer_feature_shape=True)
    validator = tfx.components.ExampleValidator(statistics=statistics.outputs["statistics"],
                                                schema=schema.outputs["schema"])
    gate = DataGate(statistics=statistics.outputs["statistics"],
                    anomalies=validator.outputs["anomalies"],
                    label_feature=features.LABEL)
    custom_config = {"model": config.model.to_dict()}
    transform = tfx.components.Transform(
        examples=gen.outputs["examples"], schema=schema.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN, custom_config=custom_config)
    transform.add_upstream_node(gate)
    trainer = tfx.components.Trainer(
        run_fn=RUN_FN,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema.outputs["schema"],
        train_args=tfx.proto.TrainArgs(),
        eval_args=tfx.proto.EvalArgs(),
        custom_config=custom_config)
    baseline = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id("latest_blessed_model_resolver")
    evaluator = tfx.components.Evaluator(
        examples=gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=baseline.outputs["model"],
        eval_config=eval_config(config))
    serving_check = ServingCheck(
        model=trainer.outputs["model"], model_blessing=evaluator.outputs["blessing"],
        model_name=config.output.model_name,
        timeout_seconds=config.output.serving_check_timeout)
    pusher = tfx.components.Pusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        infra_blessing=serving_check.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(
                base_directory=os.path.abspath(config.push_dir))))
    return tfx.dsl.Pipeline(
        pipeline_name=config.name,
        pipeline_root=os.path.abspath(config.pipeline_root),
        components=[gen, statistics, schema, validator, gate, transform, trainer,
                    baseline, evaluator, serving_check, pusher],
        enable_cache=config.enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=beam_pipeline_args if beam_pipeline_args is not None
        else list(config.beam_args))
