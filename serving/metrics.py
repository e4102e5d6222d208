"""Prometheus metrics named like TF Serving's, and its ``--monitoring_config_file``.

Tested with a model server: tests/serving/test_server.py; the monitoring file by
tests/unit/serving/test_batching.py.
"""
from __future__ import annotations

import re

import prometheus_client as prom

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
    """Request counts and latencies per model, API and transport; model load events.

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
        self.feedback_dropped = prom.Counter(  # exported as feedback_records_dropped_total
            "feedback_records_dropped", "Predictions answered but not recorded "
            "(--feedback_dir: a full disk, a failed write).", ["model_name"],
            registry=self.registry)

    def observe(self, model: str, api: str, entrypoint: str, status: str, seconds: float,
                rows: int) -> None:
        self.requests.labels(model, status).inc()
        self.latency.labels(model, api, entrypoint).observe(seconds * 1e6)
        if rows:
            self.examples.labels(model).inc(rows)

    def exposition(self) -> bytes:
        return prom.generate_latest(self.registry)
