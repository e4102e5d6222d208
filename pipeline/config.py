"""The single typed configuration of the pipeline.

Defaults < a YAML/JSON file (``--config``) < command-line overrides
(``--section.field value``). Relative paths are relative to the working directory.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import typing
from typing import Any, Mapping, Optional

from components.text_example_gen.parsing import (HASH_BUCKETS, STRATIFIED_BUCKETS,
                                                 ReaderConfig, data_file_name, split_buckets)
from models.hparams import ModelHParams


def _field(default, help_text: str, **kwargs):
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default),
                                 metadata={"help": help_text}, **kwargs)
    return dataclasses.field(default=default, metadata={"help": help_text}, **kwargs)


@dataclasses.dataclass
class DataFiles:
    """Where the labelled text files are (the first of DataConfig's settings)."""

    input_dir: str = _field("data/sample", "Folder with the labelled text files (a local "
                                           "path or a URI; no [ * ? \\ in it, nor ^ $ | "
                                           "{ } with spans: TFX globs it).")
    file_pattern: str = _field("*", "Glob of data files inside input_dir (single-split mode).")


# A dataclass takes its bases' fields last base first: the files, then the reader settings
# (declared once, in ReaderConfig), then DataConfig's own.
@dataclasses.dataclass
class DataConfig(ReaderConfig, DataFiles):
    """Where the labelled text is and how to read it."""

    presplit: bool = _field(False, "Read input_dir/train/* and input_dir/eval/* "
                                   "instead of splitting one input (data.split).")
    eval_fraction: float = _field(0.1, "Share of rows in the eval split (of each class's "
                                       "rows with split stratified: 0.0001 to 0.9999; "
                                       "with the hash split, whole hundredths, 0.01 to "
                                       "0.99).")
    split: str = _field("stratified", "How one input split is cut into train and eval: "
                                      "stratified (each class by eval_fraction, at least one "
                                      "eval row per class of two rows or more; multi-label "
                                      "data: hash) or hash (whole rows by hash, TFX's "
                                      "split). The same rows always give the same split.")
    schema_path: str = _field("schema/schema.pbtxt", "Curated schema to validate "
                              "against; empty to infer one from the data.")
    span_pattern: str = _field("", "Folder name of one data drop, with {SPAN} for its "
                                   "number, e.g. 'span-{SPAN}': each run ingests the newest "
                                   "span (no [ * ? \\ ^ $ | { } in it but {SPAN}). Empty: every "
                                   "file in input_dir, no spans.")
    window_spans: int = _field(1, "Train on the newest N spans (older spans train "
                                  "whole); evaluate on the newest span's eval split.")
    drift_action: str = _field("fail", "What a drift between the newest and the last "
                                       "accepted span does: fail (stop before training) or "
                                       "warn (train, and accept the span as the next "
                                       "baseline).")
    max_label_l_infinity: float = _field(
        0.25, "Drift limit on the label distribution: L-infinity distance (largest change "
              "of one label's share) between the newest and the last accepted span. A curated "
              "schema's drift_comparator (infinity_norm) on the label wins.")
    max_length_js_divergence: float = _field(
        0.25, "Drift limit on the text lengths in word pieces (a sentence pair's: both "
              "texts together): Jensen-Shannon divergence (0..1) between the newest and the "
              "last accepted span. A curated schema's drift_comparator "
              "(jensen_shannon_divergence) on the text wins.")
    max_unknown_share_increase: float = _field(
        0.02, "Drift limit on the share of [UNK] word pieces: newest span minus the last "
              "accepted span.")

    max_unknown_share: float = _field(
        0.05, "The run summary warns when more than this share of the training word pieces "
              "are [UNK] (the checkpoint's vocabulary does not fit the text's language).")

    def reader_config(self) -> ReaderConfig:
        """The reader settings alone, as the components that read data files take them."""
        return ReaderConfig(**self.reader_settings())

    def split_buckets(self) -> tuple:
        """(train, eval) hash buckets of the one input split: out of TFX's 100 where it
        splits by hash (data.split hash, multi-label data), else out of 10,000, which
        carry the exact fraction (0.125, 0.004) to the stratified split."""
        hashed = self.split == "hash" or self.multi_label
        try:
            return split_buckets(self.eval_fraction,
                                 HASH_BUCKETS if hashed else STRATIFIED_BUCKETS)
        except ValueError as error:
            raise ValueError(f"{error}" + (" (data.split hash, or several labels per text: "
                                           "TFX's hash split)" if hashed else "")) from None

    def feedback_file(self) -> str:
        """The name of the one file of a feedback span (schedule.feedback_dir), which the
        reader takes as these settings say; ValueError naming the setting when they
        cannot take such a span."""
        if not self.span_pattern:
            raise ValueError("schedule.feedback_dir turns corrections into the next span: "
                             "set data.span_pattern (e.g. 'span-{SPAN}')")
        if self.presplit:
            raise ValueError("schedule.feedback_dir writes a span as one file to split, but "
                             "data.presplit reads train/ and eval/ folders: unset one of them")
        if is_uri(self.input_dir):
            raise ValueError(f"schedule.feedback_dir writes spans into a local folder (an "
                             f"atomic rename), not into data.input_dir {self.input_dir}: "
                             f"give a local data.input_dir, or export corrections yourself")
        return data_file_name("feedback", self.file_pattern, self.file_format)

    def __post_init__(self):
        super().__post_init__()  # refuses bad reader settings (e.g. data.quoting) early
        if self.span_pattern and "{SPAN}" not in self.span_pattern:
            raise ValueError(f"data.span_pattern '{self.span_pattern}' has no {{SPAN}}")
        for setting in ("input_dir", "span_pattern"):
            problem = pattern_chars_problem(f"data.{setting}", getattr(self, setting),
                                            bool(self.span_pattern))
            if problem:
                raise ValueError(problem)
        if self.window_spans < 1:
            raise ValueError("data.window_spans must be at least 1")
        if self.split not in ("stratified", "hash"):
            raise ValueError(f"data.split must be stratified or hash, not '{self.split}'")
        if self.drift_action not in ("fail", "warn"):
            raise ValueError(f"data.drift_action must be fail or warn, not "
                             f"'{self.drift_action}'")
        check_share("data.eval_fraction", self.eval_fraction, low_open=True, high_open=True)
        self.split_buckets()  # refuses a fraction that leaves one split empty
        for setting in ("max_label_l_infinity", "max_length_js_divergence",
                        "max_unknown_share_increase", "max_unknown_share"):
            check_share(f"data.{setting}", getattr(self, setting))


# eval.metric -> the TFMA metric the gate reads (single-label tasks; multi-label tasks
# use the names in pipeline/eval_metrics.py, with accuracy meaning subset accuracy).
GATE_METRICS = {"accuracy": "sparse_categorical_accuracy", "auc": "auc",
                "macro_f1": "macro_f1", "macro_precision": "macro_precision",
                "macro_recall": "macro_recall", "weighted_f1": "weighted_f1",
                "min_class_recall": "min_class_recall"}
MULTI_LABEL_GATE_METRICS = ("accuracy", "subset_accuracy", "micro_f1", "macro_f1",
                            "macro_precision", "macro_recall", "min_class_recall")


@dataclasses.dataclass
class EvalConfig:
    """The blessing gate."""

    metric: str = _field("accuracy", "What the gate uses: accuracy, macro_f1, "
                                     "macro_precision, macro_recall, weighted_f1, "
                                     "min_class_recall, auc (two classes: DataGate "
                                     "refuses other data); multi-label tasks: accuracy "
                                     "(= subset_accuracy, the whole label set right), "
                                     "micro_f1, macro_f1, macro_precision, macro_recall, "
                                     "min_class_recall.")
    min_accuracy: float = _field(0.80, "Value eval.metric (accuracy by default) must reach "
                                       "on the eval split.")
    max_accuracy_drop: float = _field(0.0, "How far below the last blessed model's "
                                           "eval.metric a new model may be (0: no "
                                           "regression).")
    min_class_recall: float = _field(0.0, "Floor on every class's recall (0: none): a "
                                          "model that misses a class is not blessed.")

    def __post_init__(self):
        known = sorted(set(GATE_METRICS) | set(MULTI_LABEL_GATE_METRICS))
        if self.metric not in known:
            raise ValueError(f"eval.metric must be one of {', '.join(known)}, not "
                             f"'{self.metric}'")
        for setting in ("min_accuracy", "max_accuracy_drop", "min_class_recall"):
            check_share(f"eval.{setting}", getattr(self, setting))  # every gated metric is
        if self.metric == "min_class_recall" and self.min_class_recall > 0:
            raise ValueError("eval.min_class_recall is a floor on min_class_recall already "
                             "gated by eval.metric: set one of them")


@dataclasses.dataclass
class OutputConfig:
    """Where artifacts, metadata and served models go."""

    root: str = _field("pipeline_output", "Pipeline artifacts and the SQLite metadata.")
    serving_dir: str = _field("serving_model", "TF Serving base folder; models are pushed "
                                               "to <serving_dir>/<model_name>/<version>.")
    model_name: str = _field("bert_classifier", "Served model name.")
    serving_check_timeout: int = _field(300, "Seconds the serving check (load the candidate "
                                             "in the model server, answer its warmup "
                                             "requests over gRPC and REST) may take.")
    serving_mixed_precision: str = _field(
        "", "bfloat16: the serving check loads the candidate with the model server's "
            "--mixed_precision=bfloat16, as it will be served (needs a CPU with AMX or "
            "AVX512-BF16); empty: float32.")

    def __post_init__(self):
        from serving.precision import MODES
        if is_uri(self.serving_dir) and not self.serving_dir.startswith(("gs://", "s3://")):
            raise ValueError(f"output.serving_dir '{self.serving_dir}': a local folder, gs:// "
                             f"or s3:// (the push publishes a version by a folder rename "
                             f"there, or by copies inside the bucket)")
        if self.serving_check_timeout < 1:
            raise ValueError(f"output.serving_check_timeout must be at least 1 (seconds), "
                             f"got {self.serving_check_timeout}")
        if not self.model_name.strip():
            raise ValueError("output.model_name must not be empty")
        for character in "/:\\":  # the REST path /v1/models/<name>[:predict] cannot hold them
            if character in self.model_name:
                raise ValueError(f"output.model_name '{self.model_name}' holds "
                                 f"'{character}', which model servers' REST paths cannot "
                                 f"carry: use letters, digits, '-', '_' or '.'")
        if self.serving_mixed_precision not in MODES:
            raise ValueError(f"output.serving_mixed_precision must be bfloat16 or empty "
                             f"(float32), not '{self.serving_mixed_precision}'")


@dataclasses.dataclass
class KubeflowConfig:
    """Kubeflow Pipelines (v2) and Vertex AI Pipelines: image, storage, resources."""

    image: str = _field("", "Pipeline image (kubeflow/Dockerfile) every component runs "
                            "in, as the cluster pulls it, pinned by digest (e.g. "
                            "registry.example/bert-text-pipeline:1@sha256:...); required "
                            "by kubeflow compile, submit and schedule.")
    project_dir: str = _field("/pipeline", "Where the image holds this project; relative "
                                           "paths (e.g. data.schema_path) resolve there.")
    pipeline_root: str = _field("", "Object storage every pod reads and writes (gs://: "
                                    "KFP's launcher takes no path, and InfraValidator's "
                                    "TF Serving reads no s3://); replaces output.root.")
    serving_dir: str = _field("", "Push destination that TF Serving reads (gs:// or "
                                  "s3://; on Vertex AI gs://, not its /gcs/ mount); "
                                  "replaces output.serving_dir.")
    beam_args: list = _field([], "Beam options for a distributed runner, e.g. "
                                 "--runner=DataflowRunner --project=P --region=R or "
                                 "--runner=PortableRunner --job_endpoint=HOST:8099; "
                                 "empty: the DirectRunner inside each pod.")
    step_cpu: float = _field(2.0, "CPU of every step's pod but the Trainer's on Kubeflow "
                                  "(the limit; Kubernetes sets the request equal; Vertex "
                                  "AI runs steps on its default machine).")
    step_memory: str = _field("8G", "Memory of every step's pod but the Trainer's (a "
                                    "Kubernetes quantity; Evaluator runs the model with "
                                    "the DirectRunner in its pod).")
    trainer_cpu: float = _field(4.0, "Trainer CPU limit.")
    trainer_memory: str = _field("16G", "Trainer memory limit (a Kubernetes quantity: "
                                        "16G, 16Gi, 512M).")
    trainer_accelerator: str = _field("", "Trainer accelerator: a Kubernetes resource name "
                                          "(nvidia.com/gpu, google.com/tpu) or a GKE NVIDIA "
                                          "type (NVIDIA_TESLA_T4: with trainer_workers > 1 "
                                          "it also pins the GPU model); empty: none.")
    trainer_accelerator_count: int = _field(1, "How many accelerators the Trainer gets.")
    trainer_workers: int = _field(1, "Trainer replicas on Kubeflow: more than 1 makes the "
                                     "Trainer step create a Training Operator TFJob (a "
                                     "chief and trainer_workers - 1 workers, each with "
                                     "trainer_cpu, trainer_memory and the accelerators) "
                                     "and wait for it; trainer.max_restarts is its "
                                     "backoff limit.")
    serving_image: str = _field("docker.io/tensorflow/serving:2.18.0",
                                "TF Serving image InfraValidator loads the candidate in, "
                                "pinned by digest (NAME[:TAG]@sha256:...) unless "
                                "allow_unpinned_images.")
    serving_cpu: str = _field("1", "CPU request and limit of InfraValidator's model "
                                   "server pod.")
    serving_memory: str = _field("4Gi", "Memory request and limit of InfraValidator's "
                                        "model server pod.")
    infra_validator_service_account: str = _field(
        "bert-pipeline-model-server",
        "Kubernetes service account of InfraValidator's model server pod: one with no "
        "permissions (kubeflow/deploy/rbac.yaml); its token is never mounted. Empty: the "
        "namespace's 'default' account (never the step's own).")
    service_account: str = _field(
        "bert-pipeline", "Kubernetes service account submit and schedule run the steps "
                         "as (kubeflow/deploy/rbac.yaml); empty: the KFP install's "
                         "default (pipeline-runner, or default-editor with profiles).")
    allow_unpinned_images: bool = _field(
        False, "Let compile, submit and schedule use kubeflow.image and "
               "kubeflow.serving_image without an @sha256: digest (a tag can be moved "
               "to other contents).")
    host: str = _field("", "KFP API endpoint for submit/schedule, e.g. "
                           "http://localhost:8080 or the Kubeflow ingress URL.")
    experiment: str = _field("bert-text-classifier", "KFP experiment runs are filed under.")
    namespace: str = _field("", "Kubeflow profile namespace the experiment and its runs go "
                                "to (multi-user Kubeflow, where rbac.yaml was applied); "
                                "empty: kfp's context (~/.config/kfp/context.json) or the "
                                "single-user install.")
    cron: str = _field("0 3 * * *", "Retraining schedule, standard 5-field cron (KFP "
                                    "gets it with a leading seconds field).")

    def __post_init__(self):
        if self.trainer_workers < 1:
            raise ValueError(f"kubeflow.trainer_workers must be at least 1, got "
                             f"{self.trainer_workers}")


@dataclasses.dataclass
class TrainerConfig:
    """How many machines (processes) fine-tune one model, and how failures are retried."""

    workers: int = _field(1, "Trainer replicas of the local runner: 1 trains in the "
                             "Trainer's own process; N > 1 runs N Trainer executor "
                             "processes on 127.0.0.1 (a chief and N - 1 workers, each "
                             "with its TF_CONFIG) under MultiWorkerMirroredStrategy. "
                             "model.batch_size is per replica: the global batch is "
                             "model.batch_size x replicas.")
    max_restarts: int = _field(3, "How often the Trainer's replicas are restarted, all "
                                  "of them, after one fails (a restart per incident; a "
                                  "TFJob's backoffLimit is this x replicas + 1) before the "
                                  "Trainer fails; they resume from the last backup.")
    backup_every_steps: int = _field(50, "With several replicas: steps between backups "
                                         "(Keras BackupAndRestore under the model run "
                                         "folder) a restarted replica resumes from; 0: "
                                         "at the end of each epoch.")
    deadline_minutes: float = _field(1440, "With several replicas: the Trainer fails "
                                           "when they run longer than this (a replica "
                                           "that never starts, e.g. a worker left "
                                           "Pending, keeps the others waiting); the "
                                           "TFJob's activeDeadlineSeconds, the Vertex AI "
                                           "CustomJob's timeout. 0: none.")

    def replica_settings(self) -> dict:
        """What a launcher of replicas (local processes, a TFJob) and every replica's
        run_fn read from this section, as JSON values."""
        return {"max_restarts": self.max_restarts,
                "backup_every_steps": self.backup_every_steps,
                "deadline_minutes": self.deadline_minutes}

    def __post_init__(self):
        for name in ("workers", "max_restarts", "backup_every_steps", "deadline_minutes"):
            low = 1 if name == "workers" else 0
            if getattr(self, name) < low:
                raise ValueError(f"trainer.{name} must be at least {low}, got "
                                 f"{getattr(self, name)}")


@dataclasses.dataclass
class VertexConfig:
    """Vertex AI: the Trainer as a Vertex AI CustomJob and runs as PipelineJobs."""

    project: str = _field("", "Google Cloud project ID. Set: `kubeflow compile` runs the "
                              "Trainer through TFX's Vertex AI training extension (a "
                              "CustomJob with worker_pool_specs, every replica in "
                              "kubeflow.image) and `vertex submit`/`vertex schedule` send "
                              "the compiled spec as a Vertex AI PipelineJob; "
                              "kubeflow.pipeline_root must then be gs://.")
    region: str = _field("us-central1", "Vertex AI region of the CustomJob and the "
                                        "PipelineJob, e.g. europe-west4.")
    api_endpoint: str = _field("", "Vertex AI API endpoint of `vertex submit` and `vertex "
                                   "schedule` (HOST[:PORT] or https://...; http:// only "
                                   "to this machine); empty: <region>-aiplatform."
                                   "googleapis.com. The Trainer's CustomJob always goes to "
                                   "the regional endpoint (TFX's choice).")
    trainer_workers: int = _field(1, "Trainer replicas: worker pool 0 is the chief (1 "
                                     "replica), pool 1 holds trainer_workers - 1 workers; "
                                     "Vertex AI gives each its TF_CONFIG.")
    trainer_machine_type: str = _field("n1-standard-8", "Machine type of every Trainer "
                                                        "replica.")
    trainer_accelerator: str = _field("", "Accelerator of every Trainer replica, a Vertex "
                                          "AI AcceleratorType, e.g. NVIDIA_TESLA_T4 (the "
                                          "image built with `make image GPU=1`); empty: "
                                          "none.")
    trainer_accelerator_count: int = _field(1, "Accelerators per Trainer replica.")
    service_account: str = _field("", "Service account (e-mail) the PipelineJob and the "
                                      "Trainer's CustomJob run as; empty: Vertex AI's "
                                      "defaults (the project's Compute Engine default "
                                      "account for the PipelineJob, the Vertex AI Custom "
                                      "Code Service Agent for the CustomJob).")

    # Settings checked by pattern (empty ones pass unless _REQUIRED), with an example.
    _FORMATS = (
        ("project", r"([a-z][-a-z0-9.]*:)?[a-z][-a-z0-9]{4,28}[a-z0-9]", "my-project-123"),
        ("region", r"[a-z]+-[a-z]+[0-9]+", "us-central1"),
        ("api_endpoint", r"(https?://)?([A-Za-z0-9.-]+|\[::1\])(:[0-9]+)?/?",
         "europe-west4-aiplatform.googleapis.com"),
        ("trainer_machine_type", r"[a-z0-9]+(-[a-z0-9]+)+", "n1-standard-8"),
        ("service_account", r"[^@\s]+@[^@\s]+\.[a-z]+",
         "trainer@my-project-123.iam.gserviceaccount.com"),
    )
    _REQUIRED = ("region", "trainer_machine_type")

    def __post_init__(self):
        for name, pattern, example in self._FORMATS:
            value = getattr(self, name)
            if not value and name in self._REQUIRED:
                raise ValueError(f"vertex.{name} is required, e.g. {example}")
            if value and not re.fullmatch(pattern, value):
                raise ValueError(f"vertex.{name} '{value}' is not valid: expected e.g. "
                                 f"{example}")
        for name in ("trainer_workers", "trainer_accelerator_count"):
            if getattr(self, name) < 1:
                raise ValueError(f"vertex.{name} must be at least 1, got "
                                 f"{getattr(self, name)}")
        if self.api_endpoint.startswith("http://") and not re.match(
                r"http://(127\.0\.0\.1|localhost|\[::1\])(:\d+)?/?$", self.api_endpoint):
            raise ValueError(f"vertex.api_endpoint '{self.api_endpoint}': http:// only to "
                             "this machine (the token would cross the network in clear "
                             "text); give HOST[:PORT] or https://...")
        if self.trainer_accelerator:
            from google.cloud.aiplatform_v1.types import AcceleratorType
            known = [name for name in AcceleratorType.__members__
                     if name != "ACCELERATOR_TYPE_UNSPECIFIED"]
            if self.trainer_accelerator not in known:
                raise ValueError(f"vertex.trainer_accelerator '{self.trainer_accelerator}' "
                                 f"is not a Vertex AI accelerator type: one of "
                                 f"{', '.join(known)}")


@dataclasses.dataclass
class ScheduleConfig:
    """The local scheduler (machines without Kubeflow)."""

    cron: str = _field("0 3 * * *", "Run the pipeline at these times (5-field cron, UTC).")
    poll_seconds: int = _field(60, "How often to look for a new span between cron times "
                                   "(seconds, at least 1).")
    history_file: str = _field("", "JSON Lines history of every run "
                                   "(default: history.jsonl in storage.local_dir or output.root).")
    feedback_dir: str = _field("", "The model server's --feedback_dir: before each tick, "
                                   "corrected predictions become the next span, one file "
                                   "written for the data.* reader settings (needs "
                                   "data.span_pattern; not with data.presplit).")
    feedback_min_rows: int = _field(200, "Corrections to wait for before they make a span.")

    def __post_init__(self):
        for name in ("poll_seconds", "feedback_min_rows"):
            if getattr(self, name) < 1:
                raise ValueError(f"schedule.{name} must be at least 1, got "
                                 f"{getattr(self, name)}")


def check_share(setting: str, value: float, low_open: bool = False,
                high_open: bool = False) -> None:
    """ValueError naming ``setting`` unless ``value`` is a share: a number in [0, 1] (or
    open at either end)."""
    if not (math.isfinite(value) and (0 < value if low_open else 0 <= value)
            and (value < 1 if high_open else value <= 1)):
        bounds = f"{'(' if low_open else '['}0, 1{')' if high_open else ']'}"
        raise ValueError(f"{setting} must be in {bounds}, not {value}")


def pattern_chars_problem(setting: str, value: str, spans: bool) -> Optional[str]:
    """Why TFX's ExampleGen would match no file under ``value`` (data.input_dir, resolved or
    not, or data.span_pattern): it globs them joined with the file pattern, and with spans
    also reads them as a regular expression escaping only ``\\ . + ( )``."""
    special = "[*?\\" + ("^$|{}" if spans else "")
    found = [c for c in special if c in value.replace("{SPAN}", "")]
    if not found:
        return None
    fix = ("name the span folders without it" if setting == "data.span_pattern" else
           "rename the folder or copy the data to one without it (or, for a local folder, "
           "point data.input_dir at a link to it)")
    return (f"{setting} '{value}' holds {' '.join(found)}, which TFX's ExampleGen reads as "
            f"{'a glob or regular expression' if spans else 'a glob'} character, so no file "
            f"would match: {fix}")


def is_uri(path: str) -> bool:
    """Whether a location is a URI (s3://, gs://, ...) rather than a local path."""
    return "://" in path


@dataclasses.dataclass
class StorageConfig:
    """Object storage (s3://, gs://): the S3 endpoint and where local-only state goes."""

    s3_endpoint: str = _field("", "S3 API of an S3-compatible store (MinIO, Ceph, moto), "
                                  "e.g. http://127.0.0.1:9000; empty: AWS's own. Sets "
                                  "S3_ENDPOINT (tensorflow-io, for tf.io.gfile and TFX), "
                                  "AWS_ENDPOINT_URL_S3 (boto3) and Beam's --s3_endpoint_url.")
    s3_region: str = _field("", "S3 region, e.g. eu-west-1: sets AWS_REGION, "
                                "AWS_DEFAULT_REGION and Beam's --s3_region_name; empty: "
                                "those variables as they are, or the SDKs' default.")
    local_dir: str = _field("", "Local folder for what needs a local disk: the SQLite ML "
                                "Metadata, the run lock and the run history. Empty: "
                                "output.root, which must then be a local folder.")

    def __post_init__(self):
        if "@" in self.s3_endpoint:  # it goes into every step's environment and the spec
            raise ValueError("storage.s3_endpoint holds credentials (user:password@): give "
                             "them as AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (a "
                             "Kubernetes Secret on a cluster), not in the URL")
        if self.s3_endpoint and not re.fullmatch(r"https?://[^/\s]+/?", self.s3_endpoint):
            raise ValueError(f"storage.s3_endpoint must be an http:// or https:// URL "
                             f"(scheme, host and port), not '{self.s3_endpoint}'")
        if is_uri(self.local_dir):
            raise ValueError(f"storage.local_dir must be a local folder, not "
                             f"'{self.local_dir}'")

    def environment(self) -> dict:
        """The variables each S3 client reads: tensorflow-io's file system behind
        tf.io.gfile (TFX, TensorFlow, the model server) and boto3 (Beam). tensorflow-io
        reads them once, at a process's first s3:// access."""
        env = {}
        if self.s3_endpoint:
            env.update(S3_ENDPOINT=self.s3_endpoint, AWS_ENDPOINT_URL_S3=self.s3_endpoint)
        if self.s3_region:
            env.update(AWS_REGION=self.s3_region, AWS_DEFAULT_REGION=self.s3_region)
        return env

    def beam_args(self) -> list:
        """Beam's S3 options: they reach Beam workers that do not share this process's
        environment."""
        return ([f"--s3_endpoint_url={self.s3_endpoint}"] if self.s3_endpoint else []) + \
            ([f"--s3_region_name={self.s3_region}"] if self.s3_region else [])


@dataclasses.dataclass
class PrivacyConfig:
    """Personal data redaction (models/redaction.py), in Transform, every serving
    signature and, with ``at_ingestion``, before examples are written."""

    redact: str = _field("all", "Types replaced by placeholders: all (email, url, phone, "
                                "ipv4, ipv6, card, iban), none, or a comma-separated list.")
    custom_patterns: list = _field([], "Your own types as 'name=RE2 pattern' entries "
                                       "(e.g. 'ticket=TCK-[0-9]{6}'); RE2 has no "
                                       "lookarounds.")
    at_ingestion: bool = _field(True, "Redact in TextExampleGen, before any example, "
                                      "statistic, eval output or report holds the text.")

    def __post_init__(self):
        from models import redaction  # validates names and patterns with TensorFlow's RE2
        redaction.parse_types(self.redact)
        redaction.custom_types(self.patterns())

    def patterns(self) -> list:
        """``custom_patterns`` as (name, pattern) pairs."""
        pairs = []
        for i, entry in enumerate(self.custom_patterns):
            name, sep, pattern = str(entry).partition("=")
            if not sep:
                raise ValueError(f"privacy.custom_patterns[{i}]: expected 'name=pattern', "
                                 f"got '{entry}'")
            pairs.append((name.strip(), pattern))
        return pairs


@dataclasses.dataclass
class ModelCardConfig:
    """What the model card says that the run cannot know."""

    intended_use: str = _field("Classifies text like the training data into its labels.",
                               "Model card: what the model is for.")
    limitations: str = _field("Trained and evaluated only on the data named here; text "
                              "unlike it (other domains, languages, lengths) may be "
                              "classified poorly. Personal names are not redacted.",
                              "Model card: known limitations.")
    owners: str = _field("", "Model card: who to ask about the model.")


@dataclasses.dataclass
class PipelineConfig:
    name: str = _field("bert-text-classifier", "Pipeline name (also the MLMD context).")
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelHParams = dataclasses.field(default_factory=ModelHParams)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    output: OutputConfig = dataclasses.field(default_factory=OutputConfig)
    trainer: TrainerConfig = dataclasses.field(default_factory=TrainerConfig)
    kubeflow: KubeflowConfig = dataclasses.field(default_factory=KubeflowConfig)
    vertex: VertexConfig = dataclasses.field(default_factory=VertexConfig)
    schedule: ScheduleConfig = dataclasses.field(default_factory=ScheduleConfig)
    storage: StorageConfig = dataclasses.field(default_factory=StorageConfig)
    privacy: PrivacyConfig = dataclasses.field(default_factory=PrivacyConfig)
    model_card: ModelCardConfig = dataclasses.field(default_factory=ModelCardConfig)
    beam_args: list = _field(["--direct_running_mode=in_memory", "--direct_num_workers=1"],
                             "Apache Beam pipeline options.")
    enable_cache: bool = _field(False, "Reuse outputs of unchanged components.")

    def __post_init__(self):
        if not self.name.strip():
            raise ValueError("name must not be empty (the pipeline's name, also its ML "
                             "Metadata context)")
        multi_label = self.data.multi_label
        allowed = MULTI_LABEL_GATE_METRICS if multi_label else tuple(GATE_METRICS)
        if self.eval.metric not in allowed:
            raise ValueError(f"eval.metric '{self.eval.metric}' is for "
                             f"{'single' if multi_label else 'multi'}-label tasks; with "
                             f"data.label_delimiter {'set' if multi_label else 'empty'} use "
                             f"one of {', '.join(allowed)}")
        if self.schedule.feedback_dir:
            self.data.feedback_file()
        if multi_label and self.model.class_weight != "none":
            raise ValueError("model.class_weight balanced is for single-label tasks (unset "
                             "data.label_delimiter or model.class_weight)")

    @property
    def pipeline_root(self) -> str:
        return os.path.join(self.output.root, self.name)

    @property
    def state_dir(self) -> str:
        """The local folder of the ML Metadata database, the run lock and the history."""
        if self.storage.local_dir:
            return self.storage.local_dir
        if is_uri(self.output.root):
            raise ValueError(f"output.root '{self.output.root}' is not a local folder: set "
                             f"storage.local_dir to one for the ML Metadata database, the "
                             f"run lock and the run history")
        return self.output.root

    @property
    def metadata_path(self) -> str:
        return os.path.join(self.state_dir, "metadata.sqlite")

    @property
    def push_dir(self) -> str:
        return os.path.join(self.output.serving_dir, self.output.model_name)

    @property
    def history_path(self) -> str:
        return self.schedule.history_file or os.path.join(self.state_dir, "history.jsonl")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def resolve_path(path: str, base: Optional[str] = None) -> str:
    """A path setting as a runner passes it on: URIs (gs://...), absolute paths and ""
    as given; relative ones joined to ``base`` (e.g. the project folder in the Kubeflow
    image) or, without one, made absolute against the working directory."""
    if not path or "://" in path or os.path.isabs(path):
        return path
    return os.path.join(base, path) if base else os.path.abspath(path)


SECTIONS = {"data": DataConfig, "model": ModelHParams, "eval": EvalConfig,
            "output": OutputConfig, "trainer": TrainerConfig, "kubeflow": KubeflowConfig,
            "vertex": VertexConfig, "schedule": ScheduleConfig,
            "storage": StorageConfig, "privacy": PrivacyConfig,
            "model_card": ModelCardConfig}


def default_value(f: dataclasses.Field) -> Any:
    """A setting's default (a fresh one from its factory)."""
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def option_help(f: dataclasses.Field) -> str:
    """A setting's help as ``--help`` prints it: its text, then its default (an empty
    string as '', a lone space or tab in words: argparse would wrap it away)."""
    default = default_value(f)
    shown = {"": "''", " ": "a space", "\t": "a tab"}.get(default, default) \
        if isinstance(default, str) else default
    return f"{f.metadata.get('help', '')} (default: {shown})"


def section_summary(cls) -> str:
    """The first paragraph of a section's docstring, on one line."""
    return " ".join(cls.__doc__.strip().split("\n\n")[0].split())


def convert(value: Any, kind: Any, key: str) -> Any:
    """A string (from the command line) or parsed value -> the field's type."""
    origin = typing.get_origin(kind)
    if origin is typing.Union:  # Optional[X]
        if value in (None, "", "none", "None"):
            return None
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool) \
            and not math.isfinite(value):  # YAML's .nan and .inf
        raise ValueError(f"{key}: expected a finite number, got {value}")
    if not isinstance(value, str):
        return _typed(value, kind, key)
    if kind is bool:
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{key}: expected true/false, got '{value}'")
    if kind in (int, float):
        try:
            number = kind(value)
        except ValueError:
            raise ValueError(f"{key}: expected {kind.__name__}, got '{value}'") from None
        if not math.isfinite(number):  # 'nan' and 'inf' parse as floats, and switch off
            raise ValueError(f"{key}: expected a finite number, got '{value}'")  # bounds
        return number
    if kind in (list, typing.List[str]) or origin is list:
        return split_list(value, key)
    return value


def _typed(value: Any, kind: Any, key: str) -> Any:
    """A config file's parsed value (JSON or YAML: already typed) -> the field's type, or
    refused naming the setting: taken as it came, a float batch size or a null pattern
    failed minutes later inside a component."""
    def refuse(wanted: str):
        shown = "null" if value is None else value
        return ValueError(f"{key}: expected {wanted}, got {shown}")

    if kind is bool:
        if isinstance(value, bool):
            return value
        raise refuse("true/false")
    if kind in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise refuse(kind.__name__)
        if kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise refuse("int")
            return int(value)
        return float(value)
    if kind is str:
        if isinstance(value, bool) or value is None or not isinstance(value, (int, float)):
            raise refuse("a string" + (" (quote it)" if isinstance(value, bool) else ""))
        return str(value)  # a column by position: text_column: 1
    if kind in (list, typing.List[str]) or typing.get_origin(kind) is list:
        if not isinstance(value, list):
            raise refuse("a list")
        if not all(isinstance(v, str) for v in value):
            raise ValueError(f"{key}: expected a list of strings, got {value}")
        return value
    return value


def split_list(value: str, key: str) -> list:
    """A list setting from one string: a JSON list, else names separated by spaces or, for
    column names (which may hold spaces, like MRPC's '#1 String'), by commas."""
    if value.startswith("["):
        try:
            return json.loads(value)
        except json.JSONDecodeError as error:
            raise ValueError(f"{key}: '{value}' is not a JSON list ({error.msg}); write "
                             f"'[\"a\", \"b\"]' or a b") from None
    if key.endswith("column_names") and "," in value:
        return [name.strip() for name in value.split(",")]
    return value.split()


def field_types(cls) -> dict:
    return typing.get_type_hints(cls)


def load_config(path: Optional[str] = None,
                overrides: Optional[Mapping[str, Any]] = None) -> PipelineConfig:
    """Builds the config from defaults, an optional file and ``section.field`` overrides."""
    values: dict = {}
    if path:
        values = _read_config_file(path)
    for key, value in (overrides or {}).items():
        section, _, name = key.rpartition(".")
        if section and values.get(section) is None:  # absent, or every key commented out
            values[section] = {}
        target = values[section] if section else values
        if not isinstance(target, dict):
            break  # from_dict names the section given as a value
        target[name] = value
    return from_dict(values)


def _read_config_file(path: str) -> dict:
    """A config file's settings (JSON for .json, else YAML), or ValueError naming the file."""
    with open(path, encoding="utf-8") as f:
        if path.endswith(".json"):
            try:
                values = json.load(f)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}: not valid JSON: {error}") from None
        else:
            import yaml
            loader = yaml.SafeLoader(f)  # what safe_load does, keeping the node tree
            try:
                node = loader.get_single_node()
                values = None if node is None else loader.construct_document(node)
            except yaml.YAMLError as error:
                raise ValueError(f"{path}: not valid YAML: {' '.join(str(error).split())}"
                                 f" (indent with spaces, not tabs)") from None
            finally:
                loader.dispose()
            _refuse_empty_blocks(path, node)
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ValueError(f"{path} holds a {type(values).__name__}, not settings: write "
                         f"sections of settings, e.g. data: {{input_dir: ...}}")
    return values


def _refuse_empty_blocks(path: str, node, key: str = "") -> None:
    """ValueError for a value that is an empty YAML block: an unquoted ``|`` or ``>``
    (``label_delimiter: |`` reads as '', so multi-label was off, silently)."""
    import yaml
    if isinstance(node, yaml.MappingNode):
        for name, value in node.value:
            _refuse_empty_blocks(path, value, f"{key}.{name.value}" if key else name.value)
    elif isinstance(node, yaml.ScalarNode) and node.style in ("|", ">") and not node.value:
        raise ValueError(f"{path}: {key} is an empty YAML block (a bare '{node.style}'); "
                         f"quote the value: {key.rpartition('.')[2]}: '{node.style}'")


def closest_name(name: str, known) -> Optional[str]:
    """The known name closest to a mistyped one (difflib), else the first that starts
    with it (an abbreviation), else None: the "did you mean" of settings and options."""
    import difflib
    known = list(known)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6) or \
        [k for k in known if k.startswith(name)][:1]
    return close[0] if close else None


# Settings that were renamed: old key -> what replaces it, as the refusal of the old one
# says it.
RENAMED = {
    "kubeflow.serving_image_tag": (
        "kubeflow.serving_image, the whole image where this was the tag alone: "
        "NAME[:TAG]@sha256:DIGEST, e.g. docker.io/tensorflow/serving:2.18.0@sha256:<digest>"),
}


def _did_you_mean(name: str, known, prefix: str = "") -> str:
    """' (replaced by ...)' for a renamed setting, else ' (did you mean x?)' with the
    closest known name, or ''."""
    if prefix + name in RENAMED:
        return f" (replaced by {RENAMED[prefix + name]})"
    close = closest_name(name, known)
    return f" (did you mean {prefix}{close}?)" if close else ""


def from_dict(values: Mapping[str, Any]) -> PipelineConfig:
    top_types = field_types(PipelineConfig)
    kwargs = {}
    for key, value in values.items():
        if key in SECTIONS:
            cls = SECTIONS[key]
            types = field_types(cls)
            if value is None:  # a section whose every key is commented out
                value = {}
            if not isinstance(value, Mapping):
                raise ValueError(f"'{key}' is a section: give it settings, e.g. "
                                 f"{key}: {{{next(iter(types))}: ...}}")
            unknown = sorted(set(value) - set(types))
            if unknown:
                raise ValueError(f"unknown settings in '{key}': " + ", ".join(
                    name + _did_you_mean(name, types, key + ".") for name in unknown))
            kwargs[key] = cls(**{k: convert(v, types[k], f"{key}.{k}")
                                 for k, v in value.items()})
        elif key in top_types:
            kwargs[key] = convert(value, top_types[key], key)
        else:
            raise ValueError(f"unknown setting '{key}'"
                             f"{_did_you_mean(key, list(top_types) + list(SECTIONS))} "
                             f"(sections: {', '.join(SECTIONS)})")
    return PipelineConfig(**kwargs)
