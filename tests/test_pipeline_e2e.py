"""The whole pipeline, really run: tiny BERT, real TFX components, Beam and SavedModels."""
import glob
import json
import os
import subprocess
import sys

import pytest

from cli.main import main
from models import export
from tests.conftest import REPO, cli_args, sample_rows, tiny_overrides

LABELS = {"0": "negative", "1": "positive"}

LOAD_AND_PREDICT = """
import json, os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"
import tensorflow as tf
import tensorflow_text  # registers the tokenizer ops
model = tf.saved_model.load(sys.argv[1])
texts = ["a gripping , beautiful film", "dull and lifeless", "中性的评论"]
by_text = model.signatures["predict_text"](text=tf.constant(texts))
examples = [tf.train.Example(features=tf.train.Features(feature={"text": tf.train.Feature(
    bytes_list=tf.train.BytesList(value=[t.encode()]))})).SerializeToString() for t in texts]
by_example = model.signatures["serving_default"](examples=tf.constant(examples))
warmup = 0
from tensorflow_serving.apis import prediction_log_pb2
for record in tf.data.TFRecordDataset(
        os.path.join(sys.argv[1], "assets.extra", "tf_serving_warmup_requests")):
    request = prediction_log_pb2.PredictionLog.FromString(record.numpy()).predict_log.request
    signature = model.signatures[request.model_spec.signature_name]
    out = signature(**{k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()})
    assert out["probabilities"].shape[0] == len(next(iter(request.inputs.values())).string_val)
    warmup += 1
result = {name: {k: v.numpy().tolist() if v.dtype != tf.string else
                 [s.decode() for s in v.numpy()] for k, v in out.items()}
          for name, out in (("text", by_text), ("examples", by_example))}
print(json.dumps(dict(result, warmup_requests=warmup)))
"""

# Run with TensorFlow alone: which of the model's ops does core TF not register?
NON_CORE_OPS = """
import json, os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"
import tensorflow as tf
from tensorflow.python.framework import op_def_registry
print(json.dumps(sorted(op for op in json.loads(sys.argv[1]) if op_def_registry.get(op) is None)))
"""


@pytest.fixture(scope="module")
def three_class_data(tmp_path_factory):
    """A few hundred rows, string labels, three classes (one made of a distinct text style)."""
    folder = tmp_path_factory.mktemp("data")
    rows = [(text, LABELS[label]) for text, label in sample_rows(300)]
    rows += [(f"the plot is about item number {i} , neither good nor bad", "neutral")
             for i in range(100)]
    with open(folder / "reviews.csv", "w", encoding="utf-8", newline="") as f:
        import csv
        writer = csv.writer(f)
        writer.writerow(["review", "sentiment"])
        writer.writerows(rows)
    return str(folder)


def test_pipeline_pushes_a_servable_model_and_gate_blocks_a_worse_one(
        tmp_path, tiny_checkpoint, three_class_data, capsys):
    overrides = tiny_overrides(tmp_path, tiny_checkpoint, three_class_data,
                               **{"data.text_column": "review",
                                  "data.label_column": "sentiment",
                                  "data.schema_path": ""})
    assert main(cli_args(overrides)) == 0
    out = capsys.readouterr().out
    for component in ("TextExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator",
                      "DataGate", "Transform", "Trainer", "Evaluator", "Pusher"):
        assert f"  {component}" in out and "failed" not in out
    assert "Gate: BLESSED" in out and "text_length_bucket=<=16" in out

    model_root = tmp_path / "serving_model" / "bert_classifier"
    versions = os.listdir(model_root)
    assert len(versions) == 1 and versions[0].isdigit()
    version_dir = model_root / versions[0]
    assert (version_dir / "saved_model.pb").exists()
    assert f"Pushed: version {versions[0]}" in out
    assert glob.glob(str(tmp_path / "pipeline_output" / "*" / "Trainer" / "model_run" / "*"
                         / "tensorboard" / "train" / "events.out.tfevents.*"))
    info = json.loads((version_dir / "assets.extra" / "model_info.json").read_text())
    assert sorted(info["labels"]) == ["negative", "neutral", "positive"]
    # No optimizer state in the pushed model: variables are about the weights' size.
    variables = sum(f.stat().st_size for f in (version_dir / "variables").iterdir())
    assert variables < 2.5 * 4 * 1.1e6, variables

    result = subprocess.run([sys.executable, "-c", LOAD_AND_PREDICT, str(version_dir)],
                            capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    outputs = json.loads(result.stdout.strip().splitlines()[-1])
    for name in ("text", "examples"):
        got = outputs[name]
        assert len(got["probabilities"]) == 3 and len(got["probabilities"][0]) == 3
        assert all(abs(sum(p) - 1) < 1e-4 for p in got["probabilities"])
        assert [info["labels"][i] for i in got["class_id"]] == got["label"]
    assert outputs["text"] == outputs["examples"]
    assert outputs["warmup_requests"] == 4  # 2 signatures x batch sizes 1 and 8

    # Only ops stock TF Serving registers: core TensorFlow + tf-text 2.12's tokenizer ops.
    ops = export.saved_model_ops(str(version_dir))
    result = subprocess.run([sys.executable, "-c", NON_CORE_OPS, json.dumps(sorted(ops))],
                            capture_output=True, text=True, cwd=REPO, timeout=300)
    non_core = set(json.loads(result.stdout.strip().splitlines()[-1]))
    assert non_core <= export.TF_SERVING_TF_TEXT_OPS, non_core - export.TF_SERVING_TF_TEXT_OPS
    assert {"WordpieceTokenizeWithOffsets", "RegexSplitWithOffsets"} <= non_core
    assert not any("RoundRobin" in op or op.startswith("FastWordpiece") for op in ops)

    # Second run: a bar no model can clear. Not blessed, nothing pushed, exit code 2.
    overrides["eval.min_accuracy"] = 1.01
    assert main(cli_args(overrides)) == 2
    out = capsys.readouterr().out
    assert "Gate: NOT BLESSED" in out and "lower bound 1.0100" in out
    assert "(baseline 0." in out  # the first run's model is the baseline now
    assert "Pushed: nothing" in out
    assert os.listdir(model_root) == versions
