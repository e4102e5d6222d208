"""``create_pipeline``: the one pipeline definition every runner uses.

TextExampleGen -> StatisticsGen -> SchemaGen/ImportSchemaGen -> ExampleValidator
-> DataGate (-> DriftCheck, with spans) -> Transform -> Trainer (warm start from
the latest blessed model, optional) -> Evaluator (gate against that model)
-> ModelCard (the candidate copied with assets.extra/model_card.md)
-> ServingCheck (local model server) or InfraValidator (the runner's serving spec):
load and query that copy in a model server -> Pusher (pushes that copy: staged,
verified, renamed into place; components/atomic_pusher)

Runners resolve where things are and what runs them (local/local_runner.py,
kubeflow/kubeflow_runner.py); ``create_pipeline`` takes those values as they are.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Optional

import tensorflow_model_analysis as tfma
# TFX's own modules, not its tfx.v1 API: tfx.v1 imports its Google Cloud extensions
# (google.cloud.aiplatform, about 3 s per run); Vertex AI's Trainer is imported when used.
from tfx.components import (ExampleValidator, SchemaGen, StatisticsGen, Trainer,
                            Transform)
from tfx.components.schema_gen.import_schema_gen.component import ImportSchemaGen
from tfx.dsl.components.base.base_component import BaseComponent
from tfx.dsl.components.common.resolver import Resolver
from tfx.dsl.input_resolution.strategies.latest_artifact_strategy import LatestArtifactStrategy
from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import (
    LatestBlessedModelStrategy)
from tfx.orchestration.pipeline import Pipeline
from tfx.proto import example_gen_pb2, infra_validator_pb2, pusher_pb2, trainer_pb2
from tfx.types import Channel, standard_artifacts

from components.atomic_pusher.component import AtomicPusher
from components.baseline_evaluator.component import BaselineEvaluator
from components.data_gate.component import DataGate
from components.drift_check.component import DriftCheck, DriftReport
from components.kubernetes_infra_validator.component import KubernetesInfraValidator
from components.model_card.component import ModelCard
from components.serving_check.component import ServingCheck
from components.text_example_gen.component import TextExampleGen
from components.text_example_gen.parsing import column_refs
from models import features, preprocessing
from models.hparams import Task
from pipeline import eval_metrics
from pipeline.config import GATE_METRICS, DataConfig, PipelineConfig, PrivacyConfig
from serving import contract

PREPROCESSING_FN = "models.preprocessing.preprocessing_fn"
RUN_FN = "models.trainer.run_fn"


def input_splits(data) -> list:
    """Input file patterns under input_dir, inside the ``{SPAN}`` folder with spans."""
    span = data.span_pattern + "/" if data.span_pattern else ""
    if data.presplit:
        return [example_gen_pb2.Input.Split(name="train", pattern=span + "train/*"),
                example_gen_pb2.Input.Split(name="eval", pattern=span + "eval/*")]
    return [example_gen_pb2.Input.Split(name="single_split", pattern=span + data.file_pattern)]


def privacy_settings(privacy: PrivacyConfig) -> dict:
    """``privacy`` as Transform, the Trainer's export and TextExampleGen read it
    (``models.redaction.from_settings``)."""
    return {"redact": privacy.redact, "custom_patterns": [list(p) for p in privacy.patterns()]}


def example_gen(data: DataConfig, data_root: str,
                privacy: Optional[PrivacyConfig] = None) -> TextExampleGen:
    """Ingests ``data_root`` (a resolved folder or URI) as ``data`` says, redacting the
    texts first when ``privacy.at_ingestion``; one input split is cut into train and eval
    by ``data.split`` (stratified by label, or hash). A row an error quotes has
    ``privacy``'s custom patterns replaced either way."""
    input_config = example_gen_pb2.Input(splits=input_splits(data))
    if data.presplit:
        output_config = None
    else:
        train, evaluation = data.split_buckets()
        output_config = example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(
            splits=[example_gen_pb2.SplitConfig.Split(name="train", hash_buckets=train),
                    example_gen_pb2.SplitConfig.Split(name="eval", hash_buckets=evaluation)]))
    return TextExampleGen(input_base=data_root,
                          reader_config=data.reader_config(),
                          input_config=input_config, output_config=output_config,
                          span_pattern=data.span_pattern, window_spans=data.window_spans,
                          privacy=privacy_settings(privacy)
                          if privacy is not None and privacy.at_ingestion else None,
                          split_method=data.split,
                          excerpt_patterns=privacy.patterns() if privacy is not None else ())


def task(config: PipelineConfig) -> Task:
    """What the data settings ask of the model: sentence pairs, several labels per text,
    and the source columns its served signatures take (``models/export.py``)."""
    reader = config.data.reader_config()  # decides what the rows are: pairs, multi-label
    served = Task(text_pair=reader.text_pair, multi_label=reader.multi_label,
                  text_columns=tuple(source_columns(reader.text_column, reader.column_names)),
                  text_pair_columns=tuple(source_columns(reader.text_pair_column,
                                                         reader.column_names)),
                  text_separator=reader.text_separator)
    features.text_inputs(served)  # refuses two columns served under one input name
    return served


def source_columns(setting: str, column_names) -> list:
    """The columns a text setting names; a 0-based position as its name in
    ``data.column_names`` when set (the reader resolves names first, then positions)."""
    names = list(column_names)
    return [names[int(ref)] if ref not in names and ref.isdigit() and int(ref) < len(names)
            else ref for ref in column_refs(setting)]


def gated_metric(config: PipelineConfig) -> str:
    """The TFMA name of the metric ``eval.metric`` gates (bounded by eval.min_accuracy)."""
    if task(config).multi_label:
        return "subset_accuracy" if config.eval.metric == "accuracy" else config.eval.metric
    return GATE_METRICS[config.eval.metric]


def eval_config(config: PipelineConfig) -> tfma.EvalConfig:
    """The gate on the whole eval split (not per slice): ``eval.metric`` must reach an
    absolute bar and not regress against the baseline; optionally every class's recall a
    floor. Reported as well: example count, accuracy, per-class precision, recall, F1 and
    support, macro figures, the confusion matrix and (two classes) AUC. Slices are
    reported, not gated."""
    multi_label = task(config).multi_label
    gated = gated_metric(config)
    overall = [tfma.SlicingSpec()]

    def thresholds(name: str) -> list:
        found = []
        if name == gated:
            found.append(tfma.PerSliceMetricThreshold(
                slicing_specs=overall, threshold=tfma.MetricThreshold(
                    value_threshold=tfma.GenericValueThreshold(
                        lower_bound={"value": config.eval.min_accuracy}),
                    change_threshold=tfma.GenericChangeThreshold(
                        direction=tfma.MetricDirection.HIGHER_IS_BETTER,
                        # TFMA passes a change at or above the bound; the epsilon lets a
                        # drop of exactly max_accuracy_drop pass despite float rounding
                        # (0.85 - 0.9 is -0.05000000000000004).
                        absolute={"value": -config.eval.max_accuracy_drop - 1e-9}))))
        if name == "min_class_recall" and config.eval.min_class_recall > 0:
            found.append(tfma.PerSliceMetricThreshold(
                slicing_specs=overall, threshold=tfma.MetricThreshold(
                    value_threshold=tfma.GenericValueThreshold(
                        lower_bound={"value": config.eval.min_class_recall}))))
        return found

    def class_metric(class_name: str, **settings) -> tfma.MetricConfig:
        settings.update(multi_label=multi_label, threshold=config.model.threshold)
        return tfma.MetricConfig(class_name=class_name, module=eval_metrics.__name__,
                                 config=json.dumps(settings, sort_keys=True),
                                 per_slice_thresholds=thresholds(settings.get("name", "")))

    metrics = [tfma.MetricConfig(class_name="ExampleCount"), class_metric("ClassReport")]
    metrics += [class_metric("ClassMetric", name=name)
                for name in eval_metrics.names_for(multi_label)]
    if not multi_label:
        metrics += [tfma.MetricConfig(class_name="SparseCategoricalAccuracy",
                                      per_slice_thresholds=thresholds(GATE_METRICS["accuracy"])),
                    tfma.MetricConfig(class_name="MultiClassConfusionMatrixAtThresholds",
                                      config='{"thresholds": [0.0]}')]
    specs = [tfma.MetricsSpec(metrics=metrics)]
    if not multi_label:
        # AUC of class 1 against the rest (the summary shows it for two classes only).
        specs.append(tfma.MetricsSpec(
            metrics=[tfma.MetricConfig(class_name="AUC",
                                       per_slice_thresholds=thresholds("auc"))],
            binarize=tfma.BinarizationOptions(class_ids={"values": [1]})))
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(
            # The exported model's signatures, as they are served: named, TFMA loads it
            # with tf.saved_model.load alone (unnamed, it loads it as a Keras model first,
            # to find its type, and then again to evaluate).
            model_type=tfma.TF_GENERIC,
            signature_name=contract.EXAMPLES_SIGNATURE,
            preprocessing_function_names=[contract.TRANSFORM_SIGNATURE],
            label_key=contract.LABEL_ID, prediction_key=contract.PROBABILITIES)],
        slicing_specs=[tfma.SlicingSpec(),
                       tfma.SlicingSpec(feature_keys=[contract.LENGTH_BUCKET])],
        metrics_specs=specs)


class LatestIfAnyStrategy(LatestArtifactStrategy):
    """TFX's LatestArtifactStrategy that resolves to nothing where there is no artifact
    yet (TFX's fails the run then: the first run with spans has no drift report)."""

    def resolve_artifacts(self, store, input_dict):
        return self._resolve(input_dict)


def drift_check(config: PipelineConfig, gen, schema, data_root: str,
                latest_strategy: type = LatestIfAnyStrategy) -> list:
    """[the resolver of the last accepted span's report, DriftCheck]."""
    data = config.data
    accepted = Resolver(strategy_class=latest_strategy,
                        report=Channel(type=DriftReport)).with_id("last_accepted_drift_report")
    return [accepted, DriftCheck(
        examples=gen.outputs["examples"], schema=schema.outputs["schema"],
        input_base=data_root, span_pattern=data.span_pattern,
        file_patterns=json.dumps([split.pattern for split in input_splits(data)]),
        reader_config=data.reader_config().to_json(),
        checkpoint=config.model.checkpoint, label_feature=contract.LABEL_FEATURE,
        text_feature=contract.TEXT_FEATURE,
        max_unknown_share_increase=data.max_unknown_share_increase,
        max_label_l_infinity=data.max_label_l_infinity,
        max_length_js_divergence=data.max_length_js_divergence,
        action=data.drift_action, window_spans=data.window_spans,
        accepted=accepted.outputs["report"],
        privacy=json.dumps(privacy_settings(config.privacy), sort_keys=True))]


def serving_validation(config: PipelineConfig, model, evaluator, gen,
                       serving_spec: Optional[infra_validator_pb2.ServingSpec]):
    """The candidate (``model``: the copy with its card, which the Pusher pushes) must
    load and answer in a model server before the push: the local
    model server (ServingCheck) without ``serving_spec``, else TFX's InfraValidator in the
    server and platform the spec names (stock TF Serving in a pod on Kubernetes)."""
    if serving_spec is None:
        return ServingCheck(
            model=model, model_blessing=evaluator.outputs["blessing"],
            model_name=config.output.model_name,
            timeout_seconds=config.output.serving_check_timeout,
            mixed_precision=config.output.serving_mixed_precision)
    return KubernetesInfraValidator(
        model=model,
        examples=gen.outputs["examples"],
        serving_spec=serving_spec,
        validation_spec=infra_validator_pb2.ValidationSpec(
            max_loading_time_seconds=config.output.serving_check_timeout, num_tries=2),
        request_spec=infra_validator_pb2.RequestSpec(
            tensorflow_serving=infra_validator_pb2.TensorFlowServingRequestSpec(
                signature_names=[contract.EXAMPLES_SIGNATURE]),
            split_name="eval", num_examples=8)).with_id("InfraValidator")


def model_card(config: PipelineConfig, trainer, evaluator, statistics, gen,
               data_root: str) -> ModelCard:
    """The candidate with its card (``model_card.*`` fill in what a run cannot know)."""
    return ModelCard(
        examples=gen.outputs["examples"], statistics=statistics.outputs["statistics"],
        model=trainer.outputs["model"], model_run=trainer.outputs["model_run"],
        evaluation=evaluator.outputs["evaluation"],
        model_blessing=evaluator.outputs["blessing"], model_name=config.output.model_name,
        input_base=data_root, file_patterns=[s.pattern for s in input_splits(config.data)],
        label_feature=contract.LABEL_FEATURE, text_feature=contract.TEXT_FEATURE,
        intended_use=config.model_card.intended_use,
        limitations=config.model_card.limitations, owners=config.model_card.owners,
        gated_metric=gated_metric(config))


def _accelerator(platform_config) -> dict:
    """The accelerator the Trainer was given (it fails rather than train on the CPU)."""
    accelerator = getattr(platform_config, "accelerator", None)
    return {"accelerator": accelerator.type} if accelerator is not None and \
        accelerator.type else {}


def trainer_component(distribution: Optional[dict], custom_config: dict, **kwargs):
    """The Trainer, as ``distribution`` (resolved by the runner) runs it:

    * None: TFX's Trainer, in the step's own process;
    * ``launcher`` local or tfjob: TFX's Trainer whose executor
      (components/distributed_trainer) runs ``workers`` replicas of TFX's Trainer
      executor, as processes on this machine or as a Training Operator TFJob;
    * ``launcher`` vertex: TFX's Vertex AI Trainer (a CustomJob; ``region`` and
      ``training_args`` with its ``worker_pool_specs``).

    Every replica gets ``distribution`` in its custom_config (``models/trainer.py``
    reads ``backup_every_steps``)."""
    if not distribution:
        return Trainer(custom_config=custom_config, **kwargs)
    custom_config = dict(custom_config, distribution=distribution)
    if distribution["launcher"] == "vertex":
        from tfx import v1 as tfx
        from tfx.extensions.google_cloud_ai_platform.trainer import executor as vertex
        custom_config.update({tfx.extensions.google_cloud_ai_platform.ENABLE_VERTEX_KEY: True,
                              tfx.extensions.google_cloud_ai_platform.VERTEX_REGION_KEY:
                                  distribution["region"],
                              vertex.TRAINING_ARGS_KEY: distribution["training_args"]})
        return tfx.extensions.google_cloud_ai_platform.Trainer(custom_config=custom_config,
                                                               **kwargs)
    from tfx.dsl.components.base import executor_spec

    from components.distributed_trainer.executor import Executor
    return Trainer(
        custom_config=custom_config,
        custom_executor_spec=executor_spec.ExecutorClassSpec(Executor), **kwargs)


def create_pipeline(config: PipelineConfig, *,
                    pipeline_name: str,
                    pipeline_root: str,
                    data_root: str,
                    schema_file: str,
                    serving_model_dir: str,
                    beam_pipeline_args: list,
                    metadata_connection_config=None,
                    serving_spec: Optional[infra_validator_pb2.ServingSpec] = None,
                    trainer_platform_config=None,
                    step_platform_config=None,
                    trainer_distribution: Optional[dict] = None,
                    latest_strategy: type = LatestIfAnyStrategy) -> Pipeline:
    """The whole pipeline, from values the runner resolved (as in TFX's templates).

    ``config`` gives the ML settings only; where things are and what runs them is the
    runner's choice (``local/local_runner.py``, ``kubeflow/kubeflow_runner.py``), passed as is.

    Args:
      config: data format and spans, model, eval gate, model name, serving check,
        privacy, caching.
      pipeline_name: the name ML Metadata files the runs under.
      pipeline_root: where the components write their artifacts.
      data_root: the folder or URI the data files are read from.
      schema_file: a curated schema to import; empty: SchemaGen infers one.
      serving_model_dir: the push destination, ``<serving_dir>/<model_name>``.
      beam_pipeline_args: the Beam options of every Beam-based component.
      metadata_connection_config: the ML Metadata store; None: the orchestrator's.
      serving_spec: None for the local ServingCheck; a ServingSpec for TFX's
        InfraValidator (Kubeflow).
      trainer_platform_config: the Trainer's platform settings (e.g. its pod's resources
        on Kubeflow).
      step_platform_config: every other component's platform settings (its pod's
        resources on Kubeflow); None: none.
      trainer_distribution: how many Trainer replicas and what launches them (see
        ``trainer_component``); None: one process.
      latest_strategy: the resolver strategy that finds the last accepted drift report:
        ``LatestIfAnyStrategy`` where the orchestrator runs strategies (it resolves to
        nothing before the first report); TFX's ``LatestArtifactStrategy`` for KFP v2,
        which compiles that class alone into a query (finding nothing on a first run, as
        the blessed-model resolver's).

    Returns:
      The TFX ``Pipeline``: ExampleGen to Pusher, with the data gate, the drift check
      (with spans), the model card and the serving check or InfraValidator.
    """
    gen = example_gen(config.data, data_root, config.privacy)
    statistics = StatisticsGen(examples=gen.outputs["examples"])
    if schema_file:
        schema = ImportSchemaGen(schema_file=schema_file)
    else:
        schema = SchemaGen(statistics=statistics.outputs["statistics"],
                           infer_feature_shape=True)
    validator = ExampleValidator(statistics=statistics.outputs["statistics"],
                                 schema=schema.outputs["schema"])
    gate = DataGate(statistics=statistics.outputs["statistics"],
                    anomalies=validator.outputs["anomalies"],
                    label_feature=contract.LABEL_FEATURE, text_feature=contract.TEXT_FEATURE,
                    two_classes_for="eval.metric auc" if config.eval.metric == "auc" else "",
                    privacy=json.dumps(privacy_settings(config.privacy), sort_keys=True),
                    window_spans=config.data.window_spans if config.data.span_pattern else 1)
    checks = [gate]
    if config.data.span_pattern:
        checks += drift_check(config, gen, schema, data_root, latest_strategy)
        checks[-1].add_upstream_node(gate)
    served, privacy = task(config), privacy_settings(config.privacy)
    # Transform gets only what preprocessing_fn reads: its cache key holds its
    # custom_config, so a training setting (model.epochs) changed reuses its outputs.
    transform = Transform(
        examples=gen.outputs["examples"], schema=schema.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN,
        custom_config=preprocessing.transform_config(config.model, served, privacy),
        # StatisticsGen and ExampleValidator already profiled the data: TFDV's pre- and
        # post-transform passes were a third of a small run's Transform and nobody read them
        disable_statistics=True)
    transform.add_upstream_node(checks[-1])
    baseline = Resolver(
        strategy_class=LatestBlessedModelStrategy,
        model=Channel(type=standard_artifacts.Model),
        model_blessing=Channel(type=standard_artifacts.ModelBlessing),
    ).with_id("latest_blessed_model_resolver")
    trainer = trainer_component(
        trainer_distribution,
        run_fn=RUN_FN,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema.outputs["schema"],
        base_model=baseline.outputs["model"] if config.model.warm_start else None,
        train_args=trainer_pb2.TrainArgs(),
        eval_args=trainer_pb2.EvalArgs(),
        custom_config={"model": config.model.to_dict(), "task": dataclasses.asdict(served),
                       "pipeline": pipeline_name,
                       "max_unknown_share": config.data.max_unknown_share,
                       "privacy": privacy, **_accelerator(trainer_platform_config)})
    if trainer_platform_config is not None:
        trainer.with_platform_config(trainer_platform_config)
    evaluator = BaselineEvaluator(  # drops a baseline of another pipeline or task
        examples=gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=baseline.outputs["model"],
        eval_config=eval_config(config)).with_id("Evaluator")
    card = model_card(config, trainer, evaluator, statistics, gen, data_root)
    serving = serving_validation(config, card.outputs["model_with_card"], evaluator, gen,
                                 serving_spec)
    pusher = AtomicPusher(
        model=card.outputs["model_with_card"],
        model_blessing=evaluator.outputs["blessing"],
        infra_blessing=serving.outputs["blessing"],
        push_destination=pusher_pb2.PushDestination(
            filesystem=pusher_pb2.PushDestination.Filesystem(
                base_directory=serving_model_dir))).with_id("Pusher")
    components = [gen, statistics, schema, validator, *checks, transform, baseline, trainer,
                  evaluator, card, serving, pusher]
    if step_platform_config is not None:
        for component in components:  # resolvers and importers run no container
            if component is not trainer and isinstance(component, BaseComponent):
                component.with_platform_config(step_platform_config)
    return Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=components,
        enable_cache=config.enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(beam_pipeline_args))
