"""Prometheus metrics named like TF Serving's, and its ``--monitoring_config_file``.

Tested with a model server: tests/serving/test_server.py; the monitoring file by
tests/unit/serving/test_batching.py.
"""
from __future__ import annotations


import prometheus_client as prom
from google.protobuf import descriptor_pb2, text_format
from prometheus_client.parser import text_string_to_metric_families

from serving.descriptors import message_class

DEFAULT_PATH = "/monitoring/prometheus/metrics"


def _monitoring_config_class():
    """``tensorflow.serving.MonitoringConfig`` (monitoring_config.proto), built here: the
    tensorflow-serving-api wheel does not ship it. Same package, names and numbers."""
    field = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/config/monitoring_config.proto",
        package="tensorflow.serving", syntax="proto3")
    prometheus = proto.message_type.add(name="PrometheusConfig")
    prometheus.field.add(name="enable", number=1, type=field.TYPE_BOOL,
                         label=field.LABEL_OPTIONAL)
    prometheus.field.add(name="path", number=2, type=field.TYPE_STRING,
                         label=field.LABEL_OPTIONAL)
    monitoring = proto.message_type.add(name="MonitoringConfig")
    monitoring.field.add(name="prometheus_config", number=1, type=field.TYPE_MESSAGE,
                         type_name=".tensorflow.serving.PrometheusConfig",
                         label=field.LABEL_OPTIONAL)
    return message_class(proto, "tensorflow.serving.MonitoringConfig")


MonitoringConfigProto = _monitoring_config_class()


def read_monitoring_config(path: str) -> str | None:
    """The metrics path if ``prometheus_config { enable: true }``, else None: the file is
    read as TF Serving reads it (its ``MonitoringConfig`` text proto; an empty path is
    the default one, as its HTTP server takes it)."""
    config = MonitoringConfigProto()
    with open(path, encoding="utf-8") as f:
        try:
            text_format.Parse(f.read(), config)
        except text_format.ParseError as error:
            raise ValueError(f"{path}: not a MonitoringConfig text proto (e.g. "
                             f"'prometheus_config {{ enable: true }}'): {error}") from None
    if not config.prometheus_config.enable:
        return None
    path_value = config.prometheus_config.path or DEFAULT_PATH
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
