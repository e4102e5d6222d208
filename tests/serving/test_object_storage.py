"""Each custom component's file I/O on an S3 bucket (moto's S3 server, a child process on
127.0.0.1), in a child process: tensorflow-io 0.37.1 aborts the exit of a process that
used s3:// (see serving/filesystems.py)."""
import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.support.object_storage import local_entries
from tests.support.paths import CURATED_SCHEMA
from tests.support.pipeline_runs import labelled_tsv, sample_rows


@pytest.mark.storage
def test_each_custom_components_file_io_runs_on_the_bucket(s3, tiny_checkpoint, tmp_path):
    from tests.support.serving_models import export_half_plus_two, write_predict_warmup

    bucket = s3.bucket("component-io")
    rows = sample_rows(600)
    s3.put(bucket, "data/span-1/reviews.tsv", labelled_tsv(rows[:200]))
    s3.put(bucket, "data/span-2/reviews.tsv", labelled_tsv(rows[200:400]))
    drifted = [r for r in rows[400:] if r[1] == "1"][:90] + \
        [r for r in rows[400:] if r[1] == "0"][:10]
    s3.put(bucket, "data/span-3/reviews.tsv", labelled_tsv(drifted))
    with open(CURATED_SCHEMA, "rb") as f:
        s3.put(bucket, "artifacts/schema/schema.pbtxt", f.read())
    model = export_half_plus_two(str(tmp_path / "model"), 1)
    write_predict_warmup(model, "serving_default", {"x": np.array([1.0, 2.0], np.float32)})
    s3.put_folder(model, bucket, "artifacts/model/Format-Serving")

    code = ("import json, sys; from tests.serving.test_object_storage import component_io; "
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
