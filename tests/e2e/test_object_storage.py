"""The pipeline on object storage, executed: an S3 bucket on moto's S3 server (a child
process on 127.0.0.1) holds the data, the schema, the pipeline root and the push
destination; Beam (boto3) and TFX and TensorFlow (tensorflow-io, behind tf.io.gfile)
read and write it; the local model server serves the pushed model from it. First, what
the storage settings resolve to (no bucket needed).

Everything that reaches the bucket through tf.io.gfile runs in a child process:
tensorflow-io 0.37.1 aborts the exit of a process that used s3:// (see
serving/filesystems.py), and pytest's own exit must stay clean. This process talks to
the bucket with boto3 only.
"""
import dataclasses
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from pipeline.config import load_config
from serving.process import free_port
from tests.support.paths import CURATED_SCHEMA, REPO
from tests.support.pipeline_runs import cli_args, sample_rows, tiny_overrides

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "us-east-1"}
# Endpoint variables of the machine, if any, are left out: the settings must do it.
ENDPOINT_VARIABLES = ("S3_ENDPOINT", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")
TEXTS = ["a gripping , beautiful film", "dull and lifeless"]


class S3Server:
    """moto's S3 server, a child process on a free 127.0.0.1 port."""

    def __init__(self, log_path: str, timeout: float = 60.0):
        import boto3

        self.endpoint = f"http://127.0.0.1:{free_port()}"
        port = self.endpoint.rsplit(":", 1)[1]
        self.env = {k: v for k, v in os.environ.items() if k not in ENDPOINT_VARIABLES}
        # moto's request recorder (off until start_recording) writes beside the log
        self.env.update(CREDENTIALS, PYTHONPATH=REPO,
                        MOTO_RECORDER_FILEPATH=log_path + ".recording")
        self._log = open(log_path, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", port],
            stdout=self._log, stderr=subprocess.STDOUT, env=self.env)
        self.client = boto3.client("s3", endpoint_url=self.endpoint,
                                   aws_access_key_id="testing",
                                   aws_secret_access_key="testing", region_name="us-east-1")
        deadline = time.monotonic() + timeout
        while True:  # polls until the server answers S3's ListBuckets
            if self.process.poll() is not None:
                raise RuntimeError(f"moto's server exited with {self.process.returncode}; "
                                   f"see {log_path}")
            try:
                self.client.list_buckets()
                break
            except Exception:  # noqa: BLE001 - not listening yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def bucket(self, name: str) -> str:
        self.client.create_bucket(Bucket=name)
        return name

    def put(self, bucket: str, key: str, body) -> None:
        self.client.put_object(Bucket=bucket, Key=key,
                               Body=body.encode() if isinstance(body, str) else body)

    def put_folder(self, local: str, bucket: str, prefix: str) -> None:
        for folder, _, files in os.walk(local):
            for name in files:
                path = os.path.join(folder, name)
                self.client.upload_file(path, bucket,
                                        f"{prefix}/{os.path.relpath(path, local)}")

    def keys(self, bucket: str, prefix: str = "") -> list:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                      Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def read(self, bucket: str, key: str) -> bytes:
        return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()

    def start_recording(self) -> None:
        """From now on the server records every request (moto's recorder)."""
        import requests
        requests.post(f"{self.endpoint}/moto-api/recorder/reset-recording", timeout=30)
        requests.post(f"{self.endpoint}/moto-api/recorder/start-recording", timeout=30)

    def recording(self) -> list:
        """(method, path with query) of every request since ``start_recording``, in order."""
        import json

        import requests
        text = requests.get(f"{self.endpoint}/moto-api/recorder/download-recording",
                            timeout=30).text
        entries = [json.loads(line) for line in text.splitlines() if line.strip()]
        return [(e["method"], e["url"].split("://", 1)[-1].split("/", 1)[-1])
                for e in entries]

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self._log.close()


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    server = S3Server(str(tmp_path_factory.mktemp("moto") / "moto.log"))
    yield server
    server.close()


def test_storage_settings_drive_every_s3_client_and_keep_local_state_local(
        tmp_path, monkeypatch):
    from apache_beam.options.pipeline_options import PipelineOptions, S3Options

    from local.local_runner import local_pipeline

    monkeypatch.chdir(tmp_path)
    for name in ENDPOINT_VARIABLES + ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(name, "")  # restored after the test, whatever the runner sets
    config = load_config(None, {
        "data.input_dir": "s3://b/data", "output.root": "s3://b/out",
        "output.serving_dir": "s3://b/serving", "storage.s3_endpoint": "http://127.0.0.1:9",
        "storage.s3_region": "eu-west-1", "storage.local_dir": "state",
        "beam_args": "--direct_num_workers=1 --s3_region_name=us-east-2"})
    pipeline = local_pipeline(config)
    assert os.environ["S3_ENDPOINT"] == os.environ["AWS_ENDPOINT_URL_S3"] == \
        "http://127.0.0.1:9"
    assert os.environ["AWS_REGION"] == os.environ["AWS_DEFAULT_REGION"] == "eu-west-1"
    s3_options = PipelineOptions(pipeline.beam_pipeline_args).view_as(S3Options)
    assert s3_options.s3_endpoint_url == "http://127.0.0.1:9"
    assert s3_options.s3_region_name == "us-east-2"  # an explicit beam_args option wins
    assert pipeline.pipeline_info.pipeline_root == "s3://b/out/bert-text-classifier"
    components = {c.id: c for c in pipeline.components}
    assert components["TextExampleGen"].exec_properties["input_base"] == "s3://b/data"
    assert "s3://b/serving/bert_classifier" in str(
        components["Pusher"].exec_properties["push_destination"])
    assert pipeline.metadata_connection_config.sqlite.filename_uri == \
        str(tmp_path / "state" / "metadata.sqlite")
    assert os.listdir(tmp_path) == ["state"]  # no local "s3:" folder


@pytest.mark.parametrize("settings,message", [
    ({"output.root": "s3://b/out"}, "output.root 's3://b/out' is not a local folder: set "
                                    "storage.local_dir"),
    ({"storage.s3_endpoint": "127.0.0.1:9000"}, "storage.s3_endpoint must be an http:// or "
                                                "https:// URL"),
    ({"storage.local_dir": "gs://b/state"}, "storage.local_dir must be a local folder"),
])
def test_bad_storage_settings_are_named(settings, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, settings).metadata_path


def span_tsv(rows) -> str:
    return "sentence\tlabel\n" + "".join(f"{text}\t{label}\n" for text, label in rows)


def local_entries(folder: str) -> list:
    """Every file and folder under ``folder``, relative to it."""
    return sorted(os.path.relpath(os.path.join(d, n), folder)
                  for d, dirs, files in os.walk(folder) for n in dirs + files)


@pytest.mark.e2e  # a real pipeline run
@pytest.mark.storage
@pytest.mark.serving
def test_tiny_pipeline_on_a_bucket_pushes_a_model_the_server_serves_from_it(
        s3, tiny_checkpoint, tmp_path):
    bucket = s3.bucket("pipeline-e2e")
    rows = sample_rows(500)
    s3.put(bucket, "data/span-1/reviews.tsv", span_tsv(rows[:250]))
    s3.put(bucket, "data/span-2/reviews.tsv", span_tsv(rows[250:]))
    with open(CURATED_SCHEMA, "rb") as f:
        s3.put(bucket, "schema/schema.pbtxt", f.read())
    state, cwd = tmp_path / "state", tmp_path / "cwd"
    cwd.mkdir()
    settings = tiny_overrides(tmp_path, tiny_checkpoint, f"s3://{bucket}/data", **{
        "data.span_pattern": "span-{SPAN}", "data.window_spans": 2,
        "data.eval_fraction": 0.2, "data.schema_path": f"s3://{bucket}/schema/schema.pbtxt",
        "output.root": f"s3://{bucket}/pipeline_output",
        "output.serving_dir": f"s3://{bucket}/serving_model",
        "storage.s3_endpoint": s3.endpoint, "storage.local_dir": str(state)})

    run = subprocess.run([sys.executable, "-m", "cli.main", *cli_args(settings)], cwd=cwd,
                         env=s3.env, capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    for component in ("ImportSchemaGen", "TextExampleGen", "StatisticsGen",
                      "ExampleValidator", "DataGate", "DriftCheck", "Transform", "Trainer",
                      "Evaluator", "ServingCheck", "Pusher"):
        assert f"  {component} " in run.stdout
    assert "failed" not in run.stdout and "Gate: BLESSED" in run.stdout
    assert "Drift: span 2 vs 1: no drift" in run.stdout
    assert "Serving check: PASSED" in run.stdout
    assert f"Training started from the checkpoint {tiny_checkpoint}" in run.stdout
    [version] = [line.split()[2] for line in run.stdout.splitlines()
                 if line.startswith("Pushed: version ")]
    push = f"s3://{bucket}/serving_model/bert_classifier"
    assert f"Pushed: version {version} -> {push}/{version}" in run.stdout

    # Every component's output is in the bucket ...
    keys = s3.keys(bucket, "pipeline_output/bert-text-classifier/")
    artifacts = {key.split("/")[2] + "/" + key.split("/")[3] + ":" + key.rsplit("/", 1)[1]
                 for key in keys}
    for expected in ("ImportSchemaGen/schema:schema.pbtxt",
                     "StatisticsGen/statistics:FeatureStats.pb",
                     "ExampleValidator/anomalies:SchemaDiff.pb",
                     "DriftCheck/report:drift.json",
                     "Transform/transform_graph:saved_model.pb",
                     "Trainer/model:saved_model.pb", "Trainer/model_run:train_stats.json",
                     "Evaluator/blessing:BLESSED", "ServingCheck/blessing:INFRA_BLESSED"):
        assert expected in artifacts, sorted(artifacts)
    examples = [k for k in keys if "/TextExampleGen/examples/" in k]
    assert any("/Split-train/" in k for k in examples)
    assert any("/Split-eval/" in k for k in examples)
    [report] = [k for k in keys if k.endswith("/drift.json")]
    drift = json.loads(s3.read(bucket, report))
    assert (drift["span"], drift["previous_span"], drift["problems"]) == (2, 1, [])
    # ... and so is the pushed version, complete.
    pushed = s3.keys(bucket, f"serving_model/bert_classifier/{version}/")
    for name in ("saved_model.pb", "variables/variables.index",
                 "assets.extra/tf_serving_warmup_requests", "assets.extra/model_info.json",
                 "assets.extra/model_card.md"):
        assert f"serving_model/bert_classifier/{version}/{name}" in pushed

    # Nothing reached a local folder, except the state that needs a local disk and the
    # run reports (read in a local browser).
    assert sorted(os.listdir(state)) == ["history.jsonl", "metadata.sqlite", "reports",
                                         "run.lock"]
    assert all(os.path.exists(os.path.join(state, "reports", run, "index.html"))
               for run in os.listdir(state / "reports"))
    assert os.listdir(cwd) == []
    assert not [p for p in local_entries(str(tmp_path)) if "s3:" in p or bucket in p
                or p.startswith(("pipeline_output", "serving_model"))]
    assert not [p for p in os.listdir(REPO) if "s3:" in p or bucket in p]
    with open(state / "history.jsonl", encoding="utf-8") as f:
        assert str(json.loads(f.readlines()[-1])["pushed_version"]) == version

    # The local model server serves the pushed model straight from the bucket.
    served = served_predictions(push, dict(s3.env, S3_ENDPOINT=s3.endpoint))
    assert served["versions"] == [int(version)]
    local_copy = tmp_path / "download"
    for key in pushed:
        target = local_copy / os.path.relpath(key, f"serving_model/bert_classifier/{version}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(s3.read(bucket, key))
    np.testing.assert_allclose(served["grpc"], in_process_probabilities(str(local_copy)),
                               atol=1e-5)
    np.testing.assert_allclose(served["rest"], served["grpc"], atol=1e-5)


def served_predictions(model_base_path: str, env: dict) -> dict:
    """Available versions and the probabilities of TEXTS over gRPC and REST."""
    from serving.client import GrpcClient, RestClient, Target
    from serving.process import ServerProcess

    texts = np.array(TEXTS, dtype=object)
    with ServerProcess(["--model_name", "bert_classifier", "--model_base_path",
                        model_base_path], env=env, timeout=300) as server:
        target = Target("bert_classifier")
        with GrpcClient(server.grpc_address, target, timeout=60) as grpc_client, \
                RestClient(server.rest_url, target, timeout=60) as rest_client:
            versions = [int(s["version"]) for s in grpc_client.status()
                        if s["state"] == "AVAILABLE"]
            by_grpc = grpc_client.predict({"text": texts}, "predict_text")
            by_rest = rest_client.predict({"text": texts}, "predict_text")
    return {"versions": versions, "grpc": by_grpc["probabilities"],
            "rest": by_rest["probabilities"]}


LOAD_AND_PREDICT = """
import json, sys
import tensorflow as tf
import tensorflow_text  # noqa: F401  the tokenizer's ops
model = tf.saved_model.load(sys.argv[1])
out = model.signatures["predict_text"](text=tf.constant(json.loads(sys.argv[2])))
print(json.dumps(out["probabilities"].numpy().tolist()))
"""


def in_process_probabilities(saved_model_dir: str) -> list:
    result = subprocess.run([sys.executable, "-c", LOAD_AND_PREDICT, saved_model_dir,
                             json.dumps(TEXTS)], capture_output=True, text=True, cwd=REPO,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.storage
@pytest.mark.serving
def test_each_custom_components_file_io_runs_on_the_bucket(s3, tiny_checkpoint, tmp_path):
    from tests.support.serving_models import export_half_plus_two, write_predict_warmup

    bucket = s3.bucket("component-io")
    rows = sample_rows(600)
    s3.put(bucket, "data/span-1/reviews.tsv", span_tsv(rows[:200]))
    s3.put(bucket, "data/span-2/reviews.tsv", span_tsv(rows[200:400]))
    drifted = [r for r in rows[400:] if r[1] == "1"][:90] + \
        [r for r in rows[400:] if r[1] == "0"][:10]
    s3.put(bucket, "data/span-3/reviews.tsv", span_tsv(drifted))
    with open(CURATED_SCHEMA, "rb") as f:
        s3.put(bucket, "artifacts/schema/schema.pbtxt", f.read())
    model = export_half_plus_two(str(tmp_path / "model"), 1)
    write_predict_warmup(model, "serving_default", {"x": np.array([1.0, 2.0], np.float32)})
    s3.put_folder(model, bucket, "artifacts/model/Format-Serving")

    code = ("import json, sys; from tests.e2e.test_object_storage import component_io; "
            "from serving.filesystems import exit_process; "
            "print(json.dumps(component_io(*sys.argv[1:]))); exit_process(0)")
    run = subprocess.run([sys.executable, "-c", code, f"s3://{bucket}", s3.endpoint,
                          tiny_checkpoint], cwd=tmp_path, env=s3.env, capture_output=True,
                         text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-5000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])

    # TextExampleGen: spans listed in the bucket, a span's file read by Beam, the
    # examples written back by Beam and read by TensorFlow.
    assert result["spans"] == [[1, "span-1"], [2, "span-2"], [3, "span-3"]]
    assert result["examples_written"] == 200
    assert [k for k in s3.keys(bucket, "io/examples/") if k.endswith(".gz")]
    # DataGate: statistics and anomalies read from the bucket.
    assert result["data_gate_clean"] == "passed"
    assert "split 'eval', feature 'label': Unexpected string values" in result["data_gate_bad"]
    # DriftCheck: both spans read from the bucket, the report written to it, then the stop.
    assert result["drift_error"].startswith("data drift: span 3 vs span 2: label distribution")
    report = json.loads(s3.read(bucket, "io/drift/drift.json"))
    assert (report["span"], report["previous_span"]) == (3, 2)
    assert report["figures"]["label_l_infinity"] > 0.25 and report["problems"]
    # ServingCheck: the candidate read from the bucket, the blessing written to it.
    assert s3.keys(bucket, "io/infra_blessing/") == ["io/infra_blessing/INFRA_BLESSED"]
    assert s3.read(bucket, "io/infra_blessing/INFRA_BLESSED").decode() == \
        "loaded; 1 warmup requests answered over gRPC and REST\n"
    assert not [p for p in local_entries(str(tmp_path)) if "s3:" in p or bucket in p]


def component_io(root: str, endpoint: str, checkpoint: str) -> dict:
    """Each custom component's executor on artifacts and data under ``root`` (a bucket);
    runs in a child process (see the module's docstring)."""
    import apache_beam as beam
    from google.protobuf import json_format
    from tensorflow_metadata.proto.v0 import anomalies_pb2, statistics_pb2
    from tfx.dsl.io import fileio
    from tfx.types import artifact_utils, standard_artifacts

    from components.data_gate.component import DataGate
    from components.drift_check.component import DriftCheck
    from components.serving_check.component import ServingCheck
    from components.text_example_gen import executor as example_gen
    from components.text_example_gen.files import list_spans
    from pipeline.config import PipelineConfig, StorageConfig

    storage = StorageConfig(s3_endpoint=endpoint)
    os.environ.update(storage.environment())
    data = PipelineConfig().data  # the shipped sample's columns: sentence, label
    result = {"spans": list_spans(f"{root}/data", "span-{SPAN}")}

    properties = {"input_base": f"{root}/data", "custom_config": json_format.MessageToJson(
        example_gen.reader_config_to_proto(data.reader_config()))}
    read = example_gen.Executor().GetInputSourceToExamplePTransform()
    options = beam.options.pipeline_options.PipelineOptions(
        storage.beam_args() + ["--direct_running_mode=in_memory", "--direct_num_workers=1"])
    with beam.Pipeline(options=options) as pipeline:
        _ = (pipeline | read(properties, "span-2/*")
             | beam.Map(lambda example: example.SerializeToString())
             | beam.io.WriteToTFRecord(f"{root}/io/examples/part", file_name_suffix=".gz"))
    import tensorflow as tf
    result["examples_written"] = sum(1 for _ in tf.data.TFRecordDataset(
        fileio.glob(f"{root}/io/examples/part*"), compression_type="GZIP"))

    def artifact(kind, uri, **splits):
        made = kind()
        made.uri = uri
        if splits:
            made.split_names = artifact_utils.encode_split_names(list(splits))
            for split, message in splits.items():
                fileio.makedirs(f"{uri}/Split-{split}")
                with fileio.open(f"{uri}/Split-{split}/{message[0]}", "wb") as f:
                    f.write(message[1].SerializeToString())
        return made

    def statistics(*labels):
        stats = statistics_pb2.DatasetFeatureStatisticsList()
        dataset = stats.datasets.add(num_examples=10 * len(labels))
        feature = dataset.features.add(name="label")
        for label in labels:
            feature.string_stats.rank_histogram.buckets.add(label=label, sample_count=10)
        return "FeatureStats.pb", stats

    clean = ("SchemaDiff.pb", anomalies_pb2.Anomalies())
    bad = anomalies_pb2.Anomalies()
    bad.anomaly_info["label"].short_description = "Unexpected string values"
    bad.anomaly_info["label"].description = "Examples contain values missing from the schema"
    gate = DataGate.EXECUTOR_SPEC.executor_class()
    stats = artifact(standard_artifacts.ExampleStatistics, f"{root}/io/statistics",
                     train=statistics("0", "1"), eval=statistics("0", "1"))
    for name, eval_anomalies in (("clean", clean), ("bad", ("SchemaDiff.pb", bad))):
        anomalies = artifact(standard_artifacts.ExampleAnomalies, f"{root}/io/{name}",
                             train=clean, eval=eval_anomalies)
        try:
            gate.Do({"statistics": [stats], "anomalies": [anomalies]}, {},
                    {"label_feature": "label"})
            result[f"data_gate_{name}"] = "passed"
        except RuntimeError as error:
            result[f"data_gate_{name}"] = str(error)

    examples = artifact(standard_artifacts.Examples, f"{root}/io/examples")
    examples.set_int_custom_property("span", 3)
    try:
        DriftCheck.EXECUTOR_SPEC.executor_class().Do(
            {"examples": [examples],
             "schema": [artifact(standard_artifacts.Schema, f"{root}/artifacts/schema")]},
            {"report": [artifact(standard_artifacts.ExampleAnomalies, f"{root}/io/drift")]},
            {"input_base": f"{root}/data", "span_pattern": "span-{SPAN}",
             "file_patterns": json.dumps(["span-{SPAN}/*"]),
             "reader_config": json.dumps(dataclasses.asdict(data.reader_config())),
             "checkpoint": checkpoint, "label_feature": "label", "text_feature": "text",
             "max_unknown_share_increase": data.max_unknown_share_increase,
             "max_label_l_infinity": data.max_label_l_infinity,
             "max_length_js_divergence": data.max_length_js_divergence, "action": "fail"})
    except RuntimeError as error:
        result["drift_error"] = str(error)

    blessed = artifact(standard_artifacts.ModelBlessing, f"{root}/io/model_blessing")
    blessed.set_int_custom_property("blessed", 1)
    ServingCheck.EXECUTOR_SPEC.executor_class().Do(
        {"model": [artifact(standard_artifacts.Model, f"{root}/artifacts/model")],
         "model_blessing": [blessed]},
        {"blessing": [artifact(standard_artifacts.InfraBlessing, f"{root}/io/infra_blessing")]},
        {"model_name": "half", "timeout_seconds": 120})
    return result
