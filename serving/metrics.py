"""Prometheus metrics named like TF Serving's, and its ``--monitoring_config_file``.

Tested with a model server: tests/serving/test_server.py; the monitoring file by
tests/unit/serving/test_batching.py.
"""
from __future__ import annotations

import re

import prometheus_client as prom
from prometheus_client.parser import text_string_to_metric_families

DEFAULT_PATH = "/monitoring/prometheus/metrics"


def read_monitoring_config(path: str) -> str | None:
    """The metrics path if ``prometheus_config { enable: true }``, else None.

    The file is TF Serving's ``MonitoringConfig`` text proto (its proto is not in
    the pip package, so the two fields are read here).
    """
    with open(path, encoding="utf-8") as f:
        text = re.sub(r"#[^\n]*", "", f.read())
    block = re.fullmatch(r"\s*prometheus_config\s*:?\s*\{(.*)\}\s*", text, re.S)
    if not block:
        raise ValueError(f"{path}: expected 'prometheus_config {{ enable: true ... }}'")
    fields = dict(re.findall(r"(\w+)\s*:\s*(\"[^\"]*\"|\w+)", block.group(1)))
    unknown = set(fields) - {"enable", "path"}
    if unknown:
        raise ValueError(f"{path}: unknown prometheus_config field(s) {sorted(unknown)}")
    if fields.get("enable", "false") != "true":
        return None
    path_value = fields.get("path", f'"{DEFAULT_PATH}"').strip('"')
    if not path_value.startswith("/"):
        raise ValueError(f"{path}: path must start with '/'")
    return path_value


class Metrics:
    """Request counts and latencies per model, API and transport; model load events;
    server-side batches (``--enable_batching``: their sizes and their requests' waits).

    Counts are exported as gauges that only go up: prometheus_client would append
    ``_total`` to a counter's name, and dashboards built for TF Serving expect its names.
    """

    def __init__(self):
        self.registry = prom.CollectorRegistry()
        self.requests = prom.Gauge(
            ":tensorflow:serving:request_count", "Requests, by model and status.",
            ["model_name", "status"], registry=self.registry)
        self.latency = prom.Histogram(
            ":tensorflow:serving:request_latency", "Request latency in microseconds.",
            ["model_name", "API", "entrypoint"], registry=self.registry,
            buckets=[10 * 1.8 ** i for i in range(33)])
        self.examples = prom.Gauge(
            ":tensorflow:serving:request_example_count_total", "Rows (examples) in requests.",
            ["model"], registry=self.registry)
        self.versions = prom.Gauge(
            ":tensorflow:serving:loaded_model_versions", "Model versions loaded and serving.",
            ["model_name"], registry=self.registry)
        self.loads = prom.Gauge(
            ":tensorflow:serving:model_load_count", "Model version state changes.",
            ["model_name", "state"], registry=self.registry)
        # TF Serving's batching session metrics. Its processed_batch_size is a percentile
        # sampler, which its Prometheus exporter leaves out; here it is a histogram.
        self.batches = prom.Gauge(
            ":tensorflow:serving:batching_session:wrapped_run_count",
            "Total count of run calls on the wrapped session (server-side batches run).",
            registry=self.registry)
        self.batch_size = prom.Histogram(
            ":tensorflow:serving:batching_session:processed_batch_size",
            "Rows in each server-side batch, by batcher (model-signature).",
            ["thread_pool_name"], registry=self.registry,
            buckets=[2 ** i for i in range(11)])
        self.queuing = prom.Histogram(
            ":tensorflow:serving:batching_session:queuing_latency",
            "Distribution of wall time spent (in microseconds) in queuing, by batcher.",
            ["thread_pool_name"], registry=self.registry,
            buckets=[100 * 1.2 ** i for i in range(52)])
        self.feedback_dropped = prom.Counter(  # exported as feedback_records_dropped_total
            "feedback_records_dropped", "Predictions answered but not recorded "
            "(--feedback_dir: a full disk, a failed write).", ["model_name"],
            registry=self.registry)

    def count(self, model: str, status: str) -> None:
        """One request with the status it was answered with (TF Serving's
        RecordModelRequestCount): counted by the transports, which see every failure,
        the ones before the model is reached (a body that does not parse, a model that
        does not exist) included."""
        self.requests.labels(model, status).inc()

    def observe(self, model: str, api: str, entrypoint: str, status: str, seconds: float,
                rows: int) -> None:
        """A request that reached its model: its latency (answered ones) and rows."""
        if status == "OK":  # TF Serving times answered requests only
            self.latency.labels(model, api, entrypoint).observe(seconds * 1e6)
        if rows:
            self.examples.labels(model).inc(rows)

    def observe_batch(self, batcher: str, rows: int, queued_seconds) -> None:
        """One server-side batch of ``rows``; each of its requests waited ``queued_seconds``."""
        self.batches.inc()
        self.batch_size.labels(batcher).observe(rows)
        for seconds in queued_seconds:
            self.queuing.labels(batcher).observe(seconds * 1e6)

    def exposition(self) -> bytes:
        return prom.generate_latest(self.registry)


def batching_figures(exposition: str, signature: str) -> dict:
    """The batching-session counts of one signature's batchers (every model and version)
    from a metrics page: ``wrapped_run_count`` (all batchers), ``processed_batch_size_sum``
    and ``_count``, ``queuing_latency_sum`` (microseconds) and ``_count``."""
    prefix = ":tensorflow:serving:batching_session:"
    figures: dict = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            batcher = sample.labels.get("thread_pool_name")
            if not sample.name.startswith(prefix) or sample.name.endswith(
                    ("_bucket", "_created")) or (batcher and not batcher.endswith(
                        f"-{signature}")):
                continue
            key = sample.name[len(prefix):]
            figures[key] = figures.get(key, 0.0) + sample.value
    return figures
