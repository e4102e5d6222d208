"""The pipeline on object storage, executed: an S3 bucket on moto's S3 server (a child
process on 127.0.0.1) holds the data, the schema, the pipeline root and the push
destination; Beam (boto3) and TFX and TensorFlow (tensorflow-io, behind tf.io.gfile)
read and write it; the local model server serves the pushed model from it.

Everything that reaches the bucket through tf.io.gfile runs in a child process:
tensorflow-io 0.37.1 aborts the exit of a process that used s3:// (see
serving/filesystems.py), and pytest's own exit must stay clean. This process talks to
the bucket with boto3 only."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.support.object_storage import local_entries
from tests.support.paths import CURATED_SCHEMA, REPO
from tests.support.pipeline_runs import cli_args, labelled_tsv, sample_rows, tiny_overrides

TEXTS = ["a gripping , beautiful film", "dull and lifeless"]


@pytest.mark.storage
@pytest.mark.serving
def test_tiny_pipeline_on_a_bucket_pushes_a_model_the_server_serves_from_it(
        s3, tiny_checkpoint, tmp_path):
    bucket = s3.bucket("pipeline-e2e")
    rows = sample_rows(500)
    s3.put(bucket, "data/span-1/reviews.tsv", labelled_tsv(rows[:250]))
    s3.put(bucket, "data/span-2/reviews.tsv", labelled_tsv(rows[250:]))
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
