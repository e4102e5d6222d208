"""What happened in a pipeline run, read back from ML Metadata.

Per component: status and wall time; then eval metrics (candidate and
baseline), the gate decision, and the pushed version (or why nothing was pushed).
"""
from __future__ import annotations

import dataclasses
import re
from typing import Optional

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

EXIT_OK, EXIT_FAILED, EXIT_BLOCKED = 0, 1, 2
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
    gate_failures: list = dataclasses.field(default_factory=list)
    serving_check: Optional[str] = None  # the check's verdict, when it ran
    serving_ok: Optional[bool] = None
    pushed_version: Optional[str] = None
    pushed_path: Optional[str] = None
    error: Optional[str] = None
    span: Optional[int] = None  # the newest span ingested (with data.span_pattern)
    drift: Optional[str] = None  # DriftCheck's verdict
    started_from: Optional[str] = None  # checkpoint, or warm start from a blessed model

    @property
    def exit_code(self) -> int:
        if self.error:
            return EXIT_FAILED
        return EXIT_OK if self.pushed_version else EXIT_BLOCKED

    def format(self) -> str:
        lines = [f"Pipeline '{self.pipeline}' run {self.run_id or '?'}", "",
                 f"  {'component':<34}{'status':<10}{'time':>9}"]
        for c in self.components:
            seconds = f"{c.seconds:8.1f}s" if c.seconds is not None else f"{'-':>9}"
            lines.append(f"  {c.name:<34}{c.status:<10}{seconds}")
        details = [f"Span: {self.span}" if self.span is not None else "",
                   f"Drift: {self.drift}" if self.drift else "",
                   f"Training started {self.started_from}" if self.started_from else ""]
        if any(details):
            lines += [""] + [d for d in details if d]
        if self.metrics:
            lines += ["", "Evaluation (eval split):"]
            for slice_name, values in sorted(self.metrics.items(), key=lambda kv: kv[0] != ""):
                base = self.baseline_metrics.get(slice_name, {})
                shown = ", ".join(_metric_text(name, value, base.get(name))
                                  for name, value in sorted(values.items()))
                lines.append(f"  {slice_name or 'overall':<30} {shown}")
        if self.blessed is not None:
            lines += ["", "Gate: " + ("BLESSED" if self.blessed else "NOT BLESSED")]
            lines += [f"  - {failure}" for failure in self.gate_failures]
        if self.serving_check and self.blessed:
            lines.append(f"Serving check: {'PASSED' if self.serving_ok else 'FAILED'} "
                         f"({self.serving_check})")
        if self.pushed_version:
            lines.append(f"Pushed: version {self.pushed_version} -> {self.pushed_path}")
        elif not self.error:
            why = "the serving check failed" if self.blessed and self.serving_ok is False \
                else "the model was not blessed"
            lines.append(f"Pushed: nothing ({why})")
        if self.error:
            lines += ["", f"FAILED: {self.error}", "Nothing was pushed; the served models are "
                      "unchanged."]
        return "\n".join(lines)


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
    import json
    import os
    try:
        with open(os.path.join(model_run_uri, "train_stats.json"), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _read_evaluation(summary: RunSummary, uri: str) -> None:
    import tensorflow_model_analysis as tfma
    for per_slice in tfma.load_metrics(uri):
        slice_name = ";".join(f"{s.column}={s.bytes_value.decode() or s.int64_value}"
                              for s in per_slice.slice_key.single_slice_keys)
        for kv in per_slice.metric_keys_and_values:
            if kv.key.is_diff or not kv.value.HasField("double_value"):
                continue
            target = summary.baseline_metrics if kv.key.model_name == "baseline" \
                else summary.metrics
            target.setdefault(slice_name, {})[kv.key.name] = kv.value.double_value.value
    validation = tfma.load_validation_result(uri)
    for per_slice in validation.metric_validations_per_slice:
        for failure in per_slice.failures:
            change = " (change vs baseline)" if failure.metric_key.is_diff else ""
            summary.gate_failures.append(
                f"{failure.metric_key.name}{change}"
                f": {failure.metric_value.double_value.value:.4f} fails "
                f"{_threshold_text(failure.metric_threshold)}")


def _threshold_text(threshold) -> str:
    if threshold.HasField("value_threshold"):
        return f"lower bound {threshold.value_threshold.lower_bound.value:.4f}"
    return f"allowed change {threshold.change_threshold.absolute.value:+.4f}"


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
        if node == "TextExampleGen" and outputs.get("examples") and spans:
            summary.span = _custom(outputs["examples"][0], "span")
        if node == "DriftCheck" and outputs.get("report"):
            summary.drift = _custom(outputs["report"][0], "drift")
        if node == "Trainer" and outputs.get("model_run"):
            summary.started_from = _read_stats(outputs["model_run"][0].uri).get("started_from")
        if node == "Evaluator" and outputs.get("evaluation"):
            _read_evaluation(summary, outputs["evaluation"][0].uri)
            if outputs.get("blessing"):
                summary.blessed = bool(_custom(outputs["blessing"][0], "blessed"))
        if node == "ServingCheck" and outputs.get("blessing"):
            summary.serving_ok = bool(_custom(outputs["blessing"][0], "blessed"))
            summary.serving_check = _custom(outputs["blessing"][0], "reason")
        if node == "Pusher" and outputs.get("pushed_model"):
            pushed = outputs["pushed_model"][0]
            if _custom(pushed, "pushed"):
                summary.pushed_version = str(_custom(pushed, "pushed_version"))
                summary.pushed_path = _custom(pushed, "pushed_destination")
    if summary.error is None and any(c.status == "failed" for c in summary.components):
        summary.error = "a component failed (see the log above)"
    return summary
