"""What happened in a pipeline run, read back from ML Metadata.

Per component: status and wall time; the share of [UNK] word pieces in training;
then eval metrics (candidate and baseline), per-class figures and the confusion
matrix, the gate decision (each failed threshold with both values), and the pushed
version (or why nothing was pushed).
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Optional

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from components import eval_results
from local import evaluation, small_data
from models.hparams import POOLING_WORDS
from serving import contract

EXIT_OK, EXIT_FAILED, EXIT_BLOCKED = 0, 1, 2
# Shown for every slice (the gated metric too); the overall line shows every metric.
SLICE_METRICS = ("example_count", "sparse_categorical_accuracy", "subset_accuracy")
_STATE = metadata_store_pb2.Execution.State


@dataclasses.dataclass
class ComponentRun:
    name: str
    status: str  # complete, cached, failed, running, not run
    seconds: Optional[float] = None


@dataclasses.dataclass
class RunSummary:
    pipeline: str
    run_id: Optional[str] = None
    components: list = dataclasses.field(default_factory=list)
    metrics: dict = dataclasses.field(default_factory=dict)  # slice -> {metric: value}
    baseline_metrics: dict = dataclasses.field(default_factory=dict)
    blessed: Optional[bool] = None
    baseline_dropped: Optional[str] = None  # why the Evaluator compared with no baseline
    gate_failures: list = dataclasses.field(default_factory=list)
    serving_check: Optional[str] = None  # the check's verdict, when it ran
    serving_ok: Optional[bool] = None
    pushed_version: Optional[str] = None
    pushed_path: Optional[str] = None
    push_cached: Optional[str] = None  # enable_cache reused a push: "version N, <path>"
    serving_folder: Optional[str] = None  # what the push destination holds, as listed
    error: Optional[str] = None
    span: Optional[int] = None  # the newest span ingested (with data.span_pattern)
    drift: Optional[str] = None  # DriftCheck's verdict, or "not checked: <why>"
    drift_limits: Optional[str] = None  # the limits DriftCheck applied, and their sources
    started_from: Optional[str] = None  # checkpoint, or warm start from a blessed model
    pooling: Optional[str] = None  # what the classifier reads (model.pooling, resolved)
    training_hint: Optional[str] = None  # the model looks undertrained (local/small_data.py)
    labels: list = dataclasses.field(default_factory=list)  # class names, by class id
    per_class: dict = dataclasses.field(default_factory=dict)  # class id -> figures
    confusion: dict = dataclasses.field(default_factory=dict)  # (true, predicted) -> count
    unknown_share: Optional[float] = None  # [UNK] share of the training word pieces
    unknown_share_limit: Optional[float] = None
    checkpoint: Optional[str] = None
    gated: str = ""  # the metric the gate uses (eval.metric)
    redactions: dict = dataclasses.field(default_factory=dict)  # split -> {type: count}
    train_rows_in_eval: int = 0  # train rows TextExampleGen dropped: their text is in eval
    # Lineage: node -> ML Metadata execution id; node -> output key -> [(artifact id, uri)]
    executions: dict = dataclasses.field(default_factory=dict)
    artifacts: dict = dataclasses.field(default_factory=dict)
    tensorboard_dir: Optional[str] = None  # the Trainer's TensorBoard logs
    report_path: Optional[str] = None  # the run's HTML report (local/report)
    report_error: Optional[str] = None  # why no report was written

    @property
    def serving_status(self) -> Optional[str]:
        """PASSED or FAILED (with the check's reason), skipped, or None (not run)."""
        if not self.serving_check:
            return None
        if self.blessed is False:  # ServingCheck loads only a blessed model
            return "skipped: the model was not blessed"
        return f"{'PASSED' if self.serving_ok else 'FAILED'} ({self.serving_check})"

    @property
    def exit_code(self) -> int:
        if self.error:
            return EXIT_FAILED
        return EXIT_OK if self.pushed_version or self.push_cached else EXIT_BLOCKED

    def format(self) -> str:
        lines = [f"Pipeline '{self.pipeline}' run {self.run_id or '?'}", "",
                 f"  {'component':<34}{'status':<10}{'time':>9}"]
        for c in self.components:
            seconds = f"{c.seconds:8.1f}s" if c.seconds is not None else f"{'-':>9}"
            lines.append(f"  {c.name:<34}{c.status:<10}{seconds}")
        details = [f"Span: {self.span}" if self.span is not None else "",
                   f"Drift: {self.drift}" if self.drift else "",
                   f"Drift limits: {self.drift_limits}" if self.drift_limits else "",
                   f"Training started {self.started_from}" if self.started_from else "",
                   f"The classifier reads {POOLING_WORDS[self.pooling]} (model.pooling)"
                   if self.pooling in POOLING_WORDS else ""]
        if self.unknown_share is not None:
            details.append(f"[UNK] word pieces: {100 * self.unknown_share:.1f}% of the "
                           f"training split")
            limit = self.unknown_share_limit
            if limit is not None and self.unknown_share > limit:
                details.append(
                    f"WARNING: more [UNK] word pieces than data.max_unknown_share "
                    f"({100 * limit:.1f}%): the vocabulary of '{self.checkpoint}' does not "
                    f"fit this text (another language or script?); use a checkpoint whose "
                    f"vocabulary covers it (model.checkpoint, e.g. a multilingual BERT)")
        for group in lookalike_labels(self.labels):
            details.append(f"WARNING: labels {', '.join(repr(label) for label in group)} are "
                           f"separate classes but differ only in case, spaces or number "
                           f"format; if they mean the same class, write them one way in "
                           f"the data")
        if self.redactions:
            details.append(redaction_line(self.redactions))
        if self.train_rows_in_eval:
            details.append(f"Train rows dropped as their text is also in eval (case and "
                           f"spaces aside, after redaction): {self.train_rows_in_eval}")
        if any(details):
            lines += [""] + [d for d in details if d]
        if self.metrics:
            lines += ["", "Evaluation (eval split):"]
            for slice_name, values in sorted(self.metrics.items(), key=lambda kv: kv[0] != ""):
                base = self.baseline_metrics.get(slice_name, {})
                shown = ", ".join(_metric_text(name, value, base.get(name))
                                  for name, value in sorted(values.items())
                                  if not slice_name or name in SLICE_METRICS + (self.gated,))
                lines.append(f"  {slice_name or 'overall':<30} {shown}")
        if self.per_class:
            lines += ["", "Per class (eval split):"]
            lines += evaluation.per_class_lines(self.per_class, self.labels)
        if self.confusion:
            lines += ["", "Confusion matrix (eval split):"]
            lines += evaluation.confusion_lines(self.confusion, self.labels)
        small = [small_data.low_support_warning(self.per_class, self.labels),
                 self.training_hint]
        if any(small):
            lines += [""] + [line for line in small if line]
        if self.blessed is not None:
            lines += ["", "Gate: " + ("BLESSED" if self.blessed else "NOT BLESSED")]
            lines += [f"  - {failure}" for failure in self.gate_failures]
            if self.baseline_dropped:
                lines.append(f"  no baseline: {self.baseline_dropped}")
        if self.serving_status:
            lines.append(f"Serving check: {self.serving_status}")
        if self.pushed_version:
            lines.append(f"Pushed: version {self.pushed_version} -> {self.pushed_path}")
        elif self.push_cached:
            lines.append(f"Pushed: nothing new (the Pusher was cached: {self.push_cached}, "
                         f"was pushed by an earlier run)")
        elif not self.error:
            why = "the serving check failed" if self.blessed and self.serving_ok is False \
                else "the model was not blessed"
            lines.append(f"Pushed: nothing ({why})")
        folder = f"Serving folder {self.serving_folder}" if self.serving_folder else ""
        if self.error:  # what the serving folder holds now, as listed: never assumed
            lines += ["", f"FAILED: {self.error}"]
            lines += [f"Nothing was pushed. {folder}".strip()] if not self.pushed_version \
                else [folder] if folder else []
        elif folder:
            lines.append(folder)
        if self.report_path or self.report_error:
            lines += ["", f"Report: {self.report_path or 'not written: ' + self.report_error}"]
        if self.tensorboard_dir:
            lines.append(f"Training curves: tensorboard --logdir {self.tensorboard_dir}")
        return "\n".join(lines)


def redaction_line(redactions: dict) -> str:
    """'Redacted at ingestion: train email=3 phone=2; eval none found'."""
    splits = [f"{split} " + (" ".join(f"{name}={n}" for name, n in counts.items() if n)
                             or "none found")
              for split, counts in sorted(redactions.items(), key=lambda kv: kv[0] != "train")]
    return "Redacted at ingestion: " + "; ".join(splits)


def _metric_text(name: str, value: float, baseline: Optional[float]) -> str:
    if name.endswith("example_count"):
        return f"{name}={value:.0f}"
    return f"{name}={value:.4f}" + ("" if baseline is None else f" (baseline {baseline:.4f})")


def root_cause(error: BaseException) -> str:
    """The innermost useful message of a (possibly Beam-wrapped) exception."""
    seen = error
    while True:
        inner = seen.__cause__ or (None if seen.__suppress_context__ else seen.__context__)
        if inner is None:
            break
        seen = inner
    message = str(seen) or type(seen).__name__
    # Beam appends " [while running '...']" and sometimes the traceback text.
    message = re.sub(r"\s*\[while running '[^']*'\]", "", message)
    return f"{type(seen).__name__}: {message.strip()}"


def _outputs(store, execution_id: int) -> dict:
    events = store.get_events_by_execution_ids([execution_id])
    outputs: dict = {}
    ids = [e.artifact_id for e in events if e.type in (metadata_store_pb2.Event.OUTPUT,
                                                        metadata_store_pb2.Event.DECLARED_OUTPUT)]
    artifacts = {a.id: a for a in store.get_artifacts_by_id(ids)} if ids else {}
    for e in events:
        if e.artifact_id in artifacts:
            key = e.path.steps[0].key if e.path.steps else ""
            outputs.setdefault(key, []).append(artifacts[e.artifact_id])
    return outputs


def _custom(artifact, name):
    value = artifact.custom_properties.get(name)
    if value is None:
        return None
    return value.string_value or value.int_value


def _read_stats(model_run_uri: str) -> dict:
    from tfx.dsl.io import fileio

    path = os.path.join(model_run_uri, contract.TRAIN_STATS_FILE)  # a local path or a URI
    if not fileio.exists(path):
        return {}
    try:
        with fileio.open(path) as f:
            return json.load(f)
    except ValueError:
        return {}


def _read_evaluation(summary: RunSummary, uri: str, gated: str) -> None:
    summary.gated = gated
    result = eval_results.read(uri, summary.labels, gated)
    summary.metrics, summary.baseline_metrics = result.metrics, result.baseline_metrics
    summary.per_class, summary.confusion = result.per_class, result.confusion
    summary.gate_failures += result.failures


def _gated_metric(pipeline) -> str:
    """The metric with a change threshold in the Evaluator's config (eval.metric)."""
    for component in pipeline.components:
        if component.id == "Evaluator":
            config = json.loads(component.exec_properties["eval_config"])
            for spec in config.get("metrics_specs", []):
                for metric in spec.get("metrics", []):
                    for threshold in metric.get("per_slice_thresholds", []):
                        if "change_threshold" in threshold.get("threshold", {}):
                            return json.loads(metric.get("config") or "{}").get(
                                "name", _snake(metric["class_name"]))
    return ""


def _snake(class_name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", class_name).lower()


def lookalike_labels(labels: list) -> list:
    """Groups of labels that are likely one class written two ways ('pos'/'POS', '1'/'1.0')."""
    def normal(label: str) -> str:
        text = " ".join(label.split()).casefold()
        try:
            return repr(float(text))
        except ValueError:
            return text
    groups: dict = {}
    for label in labels:
        groups.setdefault(normal(label), []).append(label)
    return [group for group in groups.values() if len(group) > 1]


def _labels(model_uri: str) -> list:
    """The class names of the Trainer's model (gs:// and s3:// too); [] without them."""
    import tensorflow as tf

    from models.export import read_label_names
    path = os.path.join(model_uri, contract.SERVING_MODEL_DIR, contract.ASSETS_EXTRA,
                        contract.LABELS_FILE)
    return read_label_names(path) if tf.io.gfile.exists(path) else []


def _serving_folder(pipeline) -> Optional[str]:
    """What the Pusher's destination really holds (listed now), if the pipeline pushes."""
    from components.atomic_pusher import serving_folder
    from tfx.proto import pusher_pb2
    from tfx.utils import proto_utils

    for component in pipeline.components:
        if component.id == "Pusher":
            destination = component.exec_properties.get("push_destination")
            if isinstance(destination, str):
                destination = proto_utils.json_to_proto(destination,
                                                        pusher_pb2.PushDestination())
            if destination is not None and destination.HasField("filesystem"):
                return serving_folder.inspect(
                    destination.filesystem.base_directory).describe()
    return None


def _reads_spans(pipeline) -> bool:
    """Whether the pipeline's TextExampleGen ingests the newest ``{SPAN}`` folder."""
    return any(c.id == "TextExampleGen" and "{SPAN}" in str(c.exec_properties["input_config"])
               for c in pipeline.components)


def collect(pipeline, started: float, error: Optional[BaseException] = None) -> RunSummary:
    """Summarises the newest run of ``pipeline`` (the one the runner ran, in the ML
    Metadata store it names) started at or after ``started``."""
    summary = RunSummary(pipeline=pipeline.pipeline_info.pipeline_name,
                         error=root_cause(error) if error else None)
    node_ids = [c.id for c in pipeline.components]
    spans = _reads_spans(pipeline)
    store = metadata_store.MetadataStore(pipeline.metadata_connection_config)
    runs = [c for c in store.get_contexts_by_type("pipeline_run")
            if c.create_time_since_epoch >= started * 1000 - 1000]
    by_node: dict = {}
    if runs:
        run = max(runs, key=lambda c: c.create_time_since_epoch)
        summary.run_id = run.name
        node_type_id = store.get_context_type("node").id
        for execution in store.get_executions_by_context(run.id):
            node = next((c.name.split(".", 1)[-1] for c in
                         store.get_contexts_by_execution(execution.id)
                         if c.type_id == node_type_id), None)
            if node:
                by_node[node] = execution
    for node in node_ids:
        execution = by_node.get(node)
        if execution is None:
            summary.components.append(ComponentRun(node, "not run"))
            continue
        status = _STATE.Name(execution.last_known_state).lower()
        seconds = (execution.last_update_time_since_epoch
                   - execution.create_time_since_epoch) / 1000
        summary.components.append(ComponentRun(node, status, seconds))
        outputs = _outputs(store, execution.id)
        summary.executions[node] = execution.id
        summary.artifacts[node] = {key: [(a.id, a.uri) for a in found]
                                   for key, found in outputs.items()}
        if node == "TextExampleGen" and outputs.get("examples") and spans:
            summary.span = _custom(outputs["examples"][0], "span")
        if node == "TextExampleGen" and outputs.get("examples"):
            summary.redactions = json.loads(_custom(outputs["examples"][0], "redactions")
                                            or "{}")
            summary.train_rows_in_eval = _custom(outputs["examples"][0],
                                                 "train_rows_in_eval") or 0
        if node == "DriftCheck" and outputs.get("report"):
            summary.drift = _custom(outputs["report"][0], "drift")
            summary.drift_limits = _custom(outputs["report"][0], "limits")
        if node == "Trainer" and outputs.get("model_run"):
            stats = _read_stats(outputs["model_run"][0].uri)
            summary.started_from = stats.get("started_from")
            summary.pooling = stats.get("pooling")
            summary.training_hint = small_data.short_training_hint(stats)
            summary.unknown_share = stats.get("unknown_share")
            summary.unknown_share_limit = stats.get("unknown_share_limit")
            summary.checkpoint = stats.get("checkpoint")
            summary.tensorboard_dir = os.path.join(outputs["model_run"][0].uri, "tensorboard")
        if node == "Trainer" and outputs.get("model"):
            summary.labels = _labels(outputs["model"][0].uri)
        if node == "Evaluator" and outputs.get("evaluation"):
            _read_evaluation(summary, outputs["evaluation"][0].uri, _gated_metric(pipeline))
            summary.baseline_dropped = _custom(outputs["evaluation"][0], "baseline_dropped")
            if outputs.get("blessing"):
                summary.blessed = bool(_custom(outputs["blessing"][0], "blessed"))
        if node == "ServingCheck" and outputs.get("blessing"):
            summary.serving_ok = bool(_custom(outputs["blessing"][0], "blessed"))
            summary.serving_check = _custom(outputs["blessing"][0], "reason")
        if node == "Pusher" and outputs.get("pushed_model"):
            pushed = outputs["pushed_model"][0]
            if _custom(pushed, "pushed") and status == "cached":  # an earlier run's push
                summary.push_cached = (f"version {_custom(pushed, 'pushed_version')}, "
                                       f"{_custom(pushed, 'pushed_destination')}")
            elif _custom(pushed, "pushed"):
                summary.pushed_version = str(_custom(pushed, "pushed_version"))
                summary.pushed_path = _custom(pushed, "pushed_destination")
    summary.serving_folder = _serving_folder(pipeline)
    drifted = re.search(r"data drift: (.*) \(limits: (.*); set data\.drift_action",
                        summary.error or "")
    if drifted:  # DriftCheck stopped the run: its error says what drifted, and the limits
        summary.drift, summary.drift_limits = drifted.groups()
    elif summary.drift is None:  # drift is never off without a word
        summary.drift = ("not checked: the run stopped before DriftCheck"
                         if "DriftCheck" in node_ids else
                         "not checked: no data.span_pattern (drift compares each data drop, "
                         "a span, with the last accepted one)")
    if summary.error is None and any(c.status == "failed" for c in summary.components):
        summary.error = "a component failed (see the log above)"
    return summary
