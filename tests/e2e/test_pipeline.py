"""The whole pipeline, really run: tiny BERT, real TFX components, Beam and SavedModels."""
import glob
import json
import os
import subprocess
import sys

import pytest

from cli.main import main
from models import export
from serving.client import ServingClientError
from tests.support.paths import REPO
from tests.support.pipeline_runs import cli_args, sample_rows, tiny_overrides
from tests.support.saved_models import NON_CORE_OPS

LABELS = {"0": "negative", "1": "positive"}
TEXTS = ["a gripping , beautiful film", "dull and lifeless", "中性的评论"]

LOAD_AND_PREDICT = """
import json, os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"
import tensorflow as tf
import tensorflow_text  # registers the tokenizer ops
model = tf.saved_model.load(sys.argv[1])
texts = json.loads(sys.argv[2])
by_text = model.signatures["predict_text"](text=tf.constant(texts))
examples = [tf.train.Example(features=tf.train.Features(feature={"text": tf.train.Feature(
    bytes_list=tf.train.BytesList(value=[t.encode()]))})).SerializeToString() for t in texts]
by_example = model.signatures["serving_default"](examples=tf.constant(examples))
warmup = 0
from tensorflow_serving.apis import prediction_log_pb2
for record in tf.data.TFRecordDataset(
        os.path.join(sys.argv[1], "assets.extra", "tf_serving_warmup_requests")):
    log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
    if log.HasField("classify_log"):
        request = log.classify_log.request
        examples = [e.SerializeToString() for e in request.input.example_list.examples]
        scores = model.signatures["classify"](inputs=tf.constant(examples))["scores"]
        assert scores.shape[0] == len(examples)
    else:
        request = log.predict_log.request
        signature = model.signatures[request.model_spec.signature_name]
        out = signature(**{k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()})
        rows = len(next(iter(request.inputs.values())).string_val)
        assert out["probabilities"].shape[0] == rows
    warmup += 1
result = {name: {k: v.numpy().tolist() if v.dtype != tf.string else
                 [s.decode() for s in v.numpy()] for k, v in out.items()}
          for name, out in (("text", by_text), ("examples", by_example))}
# An empty batch, which TF Serving passes on to the model: zero rows back, not an error.
nothing = tf.constant([], tf.string)
empty = {"predict_text": model.signatures["predict_text"](text=nothing),
         "serving_default": model.signatures["serving_default"](examples=nothing),
         "classify": model.signatures["classify"](inputs=nothing)}
empty = {name: {k: v.shape.as_list() for k, v in out.items()} for name, out in empty.items()}
print(json.dumps(dict(result, warmup_requests=warmup, empty=empty)))
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


@pytest.mark.serving
def test_pipeline_pushes_a_servable_model_and_gate_blocks_a_worse_one(
        tmp_path, tiny_checkpoint, three_class_data, capsys):
    overrides = tiny_overrides(tmp_path, tiny_checkpoint, three_class_data,
                               **{"data.text_column": "review",
                                  "data.label_column": "sentiment",
                                  "data.schema_path": ""})
    assert main(cli_args(overrides)) == 0
    out = capsys.readouterr().out
    for component in ("TextExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator",
                      "DataGate", "Transform", "Trainer", "Evaluator", "ServingCheck",
                      "Pusher"):
        assert f"  {component}" in out and "failed" not in out
    assert "Gate: BLESSED" in out and "text_length_bucket=<=16" in out
    assert "Serving check: PASSED (loaded; 6 warmup requests answered over gRPC and REST)" \
        in out

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

    result = subprocess.run([sys.executable, "-c", LOAD_AND_PREDICT, str(version_dir),
                             json.dumps(TEXTS)],
                            capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    outputs = json.loads(result.stdout.strip().splitlines()[-1])
    for name in ("text", "examples"):
        got = outputs[name]
        assert len(got["probabilities"]) == 3 and len(got["probabilities"][0]) == 3
        assert all(abs(sum(p) - 1) < 1e-4 for p in got["probabilities"])
        assert [info["labels"][i] for i in got["class_id"]] == got["label"]
    assert outputs["text"] == outputs["examples"]
    assert outputs["warmup_requests"] == 6  # 3 signatures x batch sizes 1 and 8
    assert outputs["empty"] == {
        "predict_text": {"probabilities": [0, 3], "class_id": [0], "label": [0]},
        "serving_default": {"probabilities": [0, 3], "class_id": [0], "label": [0]},
        "classify": {"classes": [0, 3], "scores": [0, 3]}}

    check_served_model_matches_in_process(str(model_root), outputs, info["labels"], capsys)
    check_every_signature_folds(str(version_dir), outputs)

    # Only ops stock TF Serving registers: core TensorFlow + tf-text 2.12's tokenizer ops.
    ops = export.saved_model_ops(str(version_dir))
    result = subprocess.run([sys.executable, "-c", NON_CORE_OPS, json.dumps(sorted(ops))],
                            capture_output=True, text=True, cwd=REPO, timeout=300)
    non_core = set(json.loads(result.stdout.strip().splitlines()[-1]))
    assert non_core <= export.TF_SERVING_TF_TEXT_OPS, non_core - export.TF_SERVING_TF_TEXT_OPS
    assert {"WordpieceTokenizeWithOffsets", "RegexSplitWithOffsets"} <= non_core
    assert not any("RoundRobin" in op or op.startswith("FastWordpiece") for op in ops)

    # Second run: a bar this model cannot clear (perfect accuracy; above 1 is refused as a
    # setting). Not blessed, nothing pushed, exit code 2.
    overrides["eval.min_accuracy"] = 1.0
    assert main(cli_args(overrides)) == 2
    out = capsys.readouterr().out
    assert "Gate: NOT BLESSED" in out and "lower bound 1.0000" in out
    assert "(baseline 0." in out  # the first run's model is the baseline now
    assert "Pushed: nothing" in out
    assert os.listdir(model_root) == versions


def check_served_model_matches_in_process(model_base: str, in_process: dict, labels: list,
                                          capsys):
    """The pushed model behind the local server: every transport, format and signature
    answers what the SavedModel answers in-process."""
    import base64

    import numpy as np
    import requests

    from serving.client import GrpcClient, RestClient, Target
    from serving.process import ServerProcess

    expected = in_process["text"]
    examples = [tf_example(t) for t in TEXTS]
    with ServerProcess(["--model_name", "bert_classifier", "--model_base_path", model_base,
                        "--enable_batching"]) as server:
        grpc_client = GrpcClient(server.grpc_address, Target("bert_classifier"), timeout=60)
        rest_client = RestClient(server.rest_url, Target("bert_classifier"), timeout=60)
        texts = np.array(TEXTS, dtype=object)
        answers = {
            "grpc text": grpc_client.predict({"text": texts}, "predict_text"),
            "grpc examples": grpc_client.predict({"examples": np.array(examples)}),
            "rest instances": rest_client.predict({"text": texts}, "predict_text"),
            "rest inputs": rest_client.predict({"text": texts}, "predict_text",
                                               row_format=False),
            "rest b64 examples": rest_client.predict({"examples": np.array(examples)}),
        }
        for name, got in answers.items():
            np.testing.assert_allclose(got["probabilities"], expected["probabilities"],
                                       atol=1e-5, err_msg=name)
            assert [int(c) for c in got["class_id"]] == expected["class_id"], name
            assert [v.decode() if isinstance(v, bytes) else v for v in got["label"]] == \
                expected["label"], name
        for client in (grpc_client, rest_client):
            predictions = client.predict_texts(TEXTS)
            assert [p.label for p in predictions] == expected["label"]
            with pytest.raises(ServingClientError, match="single texts, not sentence pairs"):
                client.predict_texts(TEXTS, pairs=TEXTS)  # the model would ignore them
            for p, probabilities in zip(predictions, expected["probabilities"]):
                assert list(p.probabilities) == labels
                np.testing.assert_allclose(list(p.probabilities.values()), probabilities,
                                           atol=1e-5)
        # A served request with raw bytes in JSON: {"b64": ...} of a serialized example.
        response = requests.post(f"{server.rest_url}/v1/models/bert_classifier:predict",
                                 json={"instances": [
                                     {"b64": base64.b64encode(examples[0]).decode()}]})
        assert response.json()["predictions"][0]["label"] == expected["label"][0]

        # The CLI over both transports: one JSON line per text.
        for server_url in (f"grpc://{server.grpc_address}", server.rest_url):
            capsys.readouterr()
            assert main(["predict", "--server", server_url, "--model", "bert_classifier",
                         *TEXTS]) == 0
            lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
            assert [line["label"] for line in lines] == expected["label"]
            assert [line["text"] for line in lines] == TEXTS


def check_every_signature_folds(version_dir: str, in_process: dict) -> None:
    """--bfloat16_fold_weights's folding (serving/precision.py; it needs no bfloat16 CPU)
    of every signature with weights, in this process, where the pipeline's components
    already ran the same redaction: the redaction's tf.while_loop, which several
    signatures run, failed to fold in all but the first (a duplicate function name in the
    runtime), and a folded signature answers as the SavedModel does."""
    import numpy as np
    import tensorflow as tf

    from serving.precision import FoldedSignature, fold_weights

    loaded = tf.saved_model.load(version_dir)
    folded = fold_weights(dict(loaded.signatures), "bert_classifier 1")
    unfolded = {key for key, fn in folded.items() if not isinstance(fn, FoldedSignature)}
    assert unfolded == {key for key, fn in loaded.signatures.items() if not fn.variables}
    assert not {"predict_text", "serving_default", "classify"} & unfolded, unfolded
    examples = tf.constant([tf_example(t) for t in TEXTS])
    for key, inputs in (("predict_text", {"text": tf.constant(TEXTS)}),
                        ("serving_default", {"examples": examples})):
        got = folded[key](**inputs)
        np.testing.assert_allclose(got["probabilities"].numpy(),
                                   in_process["text"]["probabilities"], atol=1e-5)
    scores = folded["classify"](inputs=examples)["scores"].numpy()
    np.testing.assert_allclose(scores, in_process["text"]["probabilities"], atol=1e-5)
    assert folded["redact_text"](text=tf.constant(["mail a@b.example"]))["text"].numpy()[0] \
        == b"mail [unused1]"


def tf_example(text: str) -> bytes:
    from serving.client import make_example
    return make_example({"text": text}).SerializeToString()
