"""Tasks beyond one label per text, really run with the tiny BERT: a sentence-pair task
(MRPC as GLUE ships it) and a multi-label task, each trained, gated, pushed and served
over gRPC and REST; and a macro-F1 gate that blocks a model accuracy would bless."""
import csv
import glob
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_text  # noqa: F401 - registers the tokenizer ops

from cli.main import main
from models import export
from serving import contract
from serving.client import ServingClientError
from tests.support.paths import REPO, SHARED_DATA
from tests.support.pipeline_runs import cli_args, sample_rows, tiny_overrides
from tests.support.saved_models import NON_CORE_OPS

MODEL = "bert_classifier"
PAIRS = [("The cat sat on the mat .", "A cat was sitting on the mat ."),
         ('He said " no " twice .', "The weather was fine ."),
         ("短い", "a much longer second text " * 20)]


def _pushed(tmp_path) -> str:
    root = tmp_path / "serving_model" / MODEL
    versions = os.listdir(root)
    assert len(versions) == 1
    return str(root / versions[0])


def _served(flags_dir: str):
    from serving.client import GrpcClient, RestClient, Target
    from serving.process import ServerProcess

    server = ServerProcess(["--model_name", MODEL, "--model_base_path", flags_dir])
    return server, lambda: (GrpcClient(server.grpc_address, Target(MODEL), timeout=60),
                            RestClient(server.rest_url, Target(MODEL), timeout=60))


def _examples(rows) -> np.ndarray:
    from serving.client import make_example
    return np.array([make_example(row).SerializeToString() for row in rows], dtype=object)


def _tf_serving_ops_only(version_dir: str) -> None:
    ops = export.saved_model_ops(version_dir)
    result = subprocess.run([sys.executable, "-c", NON_CORE_OPS, json.dumps(sorted(ops))],
                            capture_output=True, text=True, cwd=REPO, timeout=300)
    non_core = set(json.loads(result.stdout.strip().splitlines()[-1]))
    assert non_core <= export.TF_SERVING_TF_TEXT_OPS, non_core - export.TF_SERVING_TF_TEXT_OPS


@pytest.fixture(scope="module")
def mrpc_as_shipped(tmp_path_factory):
    """The first 400 pairs of GLUE's MRPC train.tsv, byte for byte: BOM, no quoting."""
    folder = tmp_path_factory.mktemp("mrpc")
    with open(os.path.join(SHARED_DATA, "mrpc", "train.tsv"), "rb") as f:
        lines = f.read().split(b"\n")
    (folder / "train.tsv").write_bytes(b"\n".join(lines[:401]) + b"\n")
    return str(folder)


@pytest.mark.serving
def test_sentence_pair_task_end_to_end(tmp_path, tiny_checkpoint, mrpc_as_shipped, capsys):
    overrides = tiny_overrides(tmp_path, tiny_checkpoint, mrpc_as_shipped, **{
        "data.text_column": "#1 String", "data.text_pair_column": "#2 String",
        "data.label_column": "Quality", "data.quoting": "none", "data.schema_path": "",
        "data.eval_fraction": 0.2, "model.truncation": "head_tail", "model.head_tokens": 8})
    assert main(cli_args(overrides)) == 0
    out = capsys.readouterr().out
    assert "Gate: BLESSED" in out and "Pushed: version" in out
    assert re.search(r"auc=0\.\d{4}", out) and "sparse_categorical_accuracy=" in out
    assert "Per class (eval split):" in out and "Confusion matrix (eval split):" in out
    assert re.search(r"\[UNK\] word pieces: \d+\.\d% of the training split", out)

    version = _pushed(tmp_path)
    model = tf.saved_model.load(version)
    by_text = model.signatures[contract.TEXT_SIGNATURE]
    assert set(by_text.structured_input_signature[1]) == {"text", "text_pair"}
    texts, pairs = [a for a, _ in PAIRS], [b for _, b in PAIRS]
    expected = by_text(text=tf.constant(texts), text_pair=tf.constant(pairs))
    swapped = by_text(text=tf.constant(pairs), text_pair=tf.constant(texts))
    # order counts (the tiny model has barely learned: its outputs differ only slightly)
    assert not np.array_equal(expected["probabilities"], swapped["probabilities"])
    examples = _examples([{"text": a, "text_pair": b} for a, b in PAIRS])
    by_example = model.signatures[contract.EXAMPLES_SIGNATURE](examples=tf.constant(examples))
    np.testing.assert_allclose(by_example["probabilities"], expected["probabilities"],
                               atol=1e-6)
    labels = [v.decode() for v in expected["label"].numpy()]
    _tf_serving_ops_only(version)

    server, clients = _served(os.path.dirname(version))
    with server:
        grpc_client, rest_client = clients()
        inputs = {"text": np.array(texts, dtype=object), "text_pair": np.array(pairs, dtype=object)}
        for name, got in {
                "grpc text": grpc_client.predict(inputs, "predict_text"),
                "rest text": rest_client.predict(inputs, "predict_text"),
                "grpc examples": grpc_client.predict({"examples": examples}),
                "rest examples": rest_client.predict({"examples": examples})}.items():
            np.testing.assert_allclose(got["probabilities"], expected["probabilities"],
                                       atol=1e-5, err_msg=name)
        for client in (grpc_client, rest_client):
            predictions = client.predict_texts(texts, pairs)
            assert [p.label for p in predictions] == labels
            assert [p.text_pair for p in predictions] == pairs
        with pytest.raises(ValueError, match="3 texts but 2 pairs"):
            grpc_client.predict_texts(texts, pairs[:2])
        for client in (grpc_client, rest_client):  # a pair model's second text is not optional
            with pytest.raises(ServingClientError, match="takes sentence pairs"):
                client.predict_texts(texts)
        for url in (f"grpc://{server.grpc_address}", server.rest_url):
            capsys.readouterr()
            assert main(["predict", "--server", url, "--model", MODEL, "--pairs",
                         *[f"{a}\t{b}" for a, b in PAIRS]]) == 0
            lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
            assert [(line["text"], line["text_pair"], line["label"]) for line in lines] == \
                list(zip(texts, pairs, labels))

    assert main(["score", "--model", os.path.dirname(version), "--data",
                 os.path.join(mrpc_as_shipped, "train.tsv"), "--text_column", "#1 String",
                 "--text_pair_column", "#2 String", "--label_column", "Quality",
                 "--quoting", "none"]) == 0
    assert re.search(r"400 examples, accuracy 0\.\d{4}.*label 1: \d+/2\d\d correct, F1",
                     capsys.readouterr().out, re.S)


@pytest.fixture(scope="module")
def tagged_data(tmp_path_factory):
    """Several tags per text: its sentiment, plus 'long' for texts of over 15 words."""
    folder = tmp_path_factory.mktemp("tags")
    rows = []
    for text, label in sample_rows(400):
        tags = ["positive" if label == "1" else "negative"]
        if len(text.split()) > 15:
            tags.append("long")
        rows.append(f"{text}\t{'|'.join(tags)}\n")
    (folder / "tags.tsv").write_text("text\ttags\n" + "".join(rows))
    return str(folder)


@pytest.mark.serving
def test_multi_label_task_end_to_end(tmp_path, tiny_checkpoint, tagged_data, capsys):
    overrides = tiny_overrides(tmp_path, tiny_checkpoint, tagged_data, **{
        "data.text_column": "text", "data.label_column": "tags",
        "data.label_delimiter": "|", "data.schema_path": "", "eval.metric": "micro_f1",
        "model.threshold": 0.4,
        "trainer.workers": 2})  # multi-label under MultiWorkerMirroredStrategy too
    assert main(cli_args(overrides)) == 0
    out = capsys.readouterr().out
    assert "Gate: BLESSED" in out and "Pushed: version" in out
    for metric in ("subset_accuracy=", "micro_f1=", "macro_f1=", "example_count="):
        assert metric in out
    assert re.search(r"\n  long +\d\.\d{4} +\d\.\d{4} +\d\.\d{4} +\d+\n", out)

    version = _pushed(tmp_path)
    info = json.loads(open(os.path.join(version, "assets.extra", "model_info.json")).read())
    assert info["multi_label"] and info["threshold"] == 0.4
    names = info["labels"]
    assert sorted(names) == ["long", "negative", "positive"]
    texts = ["a gripping , beautiful film", "dull " * 30, "中性的评论"]
    expected = tf.saved_model.load(version).signatures[contract.TEXT_SIGNATURE](
        text=tf.constant(texts))
    scores = expected["probabilities"].numpy()
    assert scores.shape == (3, 3) and ((scores > 0) & (scores < 1)).all()
    label_sets = [[v.decode() for v in row] for row in expected["label_set"].numpy()]
    for row, chosen in zip(scores, label_sets):  # predicted labels, best first, "" padded
        ranked = [names[i] for i in np.argsort(-row) if row[i] >= 0.4]
        assert chosen == ranked + [""] * (3 - len(ranked))
    _tf_serving_ops_only(version)

    server, clients = _served(os.path.dirname(version))
    with server:
        grpc_client, rest_client = clients()
        for client in (grpc_client, rest_client):
            got = client.predict({"text": np.array(texts, dtype=object)}, "predict_text")
            np.testing.assert_allclose(got["probabilities"], scores, atol=1e-5)
            assert [[v.decode() if isinstance(v, bytes) else v for v in row]
                    for row in got["label_set"]] == label_sets
            for prediction, row in zip(client.predict_texts(texts), scores):
                np.testing.assert_allclose([prediction.probabilities[n] for n in names], row,
                                           atol=1e-5)

    # The gate on the chosen multi-label metric: a bar this model does not reach (a
    # perfect score; above 1 is refused as a setting).
    overrides["eval.min_accuracy"] = 1.0
    assert main(cli_args(overrides)) == 2
    out = capsys.readouterr().out
    assert re.search(r"NOT BLESSED\n(  - .*\n)*  - micro_f1 0\.\d{4} is below the lower bound "
                     r"1\.0000 \(eval\.min_accuracy\)", out)


@pytest.mark.serving
def test_macro_f1_gate_blocks_what_accuracy_would_bless(tmp_path, tiny_checkpoint, capsys):
    """95% of the rows are one class; the rare class's texts are no different, so the
    model always answers the common class: accuracy about 0.95 (a 0.9 accuracy bar would
    pass it) but macro-F1 below 0.5, under a 0.7 bar."""
    data = tmp_path / "data"
    data.mkdir()
    rows = [(text, "rare" if i % 20 == 0 else "common")
            for i, (text, _) in enumerate(sample_rows(600))]
    (data / "tickets.tsv").write_text("sentence\tlabel\n" + "".join(
        f"{t}\t{label}\n" for t, label in rows))
    overrides = tiny_overrides(tmp_path, tiny_checkpoint, str(data), **{
        "data.schema_path": "", "data.eval_fraction": 0.25, "eval.metric": "macro_f1",
        "eval.min_accuracy": 0.7, "model.learning_rate": 1e-3, "model.epochs": 2})
    assert main(cli_args(overrides)) == 2
    out = capsys.readouterr().out
    overall = re.search(r"overall +(.*)\n", out).group(1)
    accuracy = float(re.search(r"sparse_categorical_accuracy=(\d\.\d+)", overall).group(1))
    macro_f1 = float(re.search(r"macro_f1=(\d\.\d+)", overall).group(1))
    assert accuracy >= 0.9 and macro_f1 < 0.7
    assert f"macro_f1 {macro_f1:.4f} is below the lower bound 0.7000 (eval.min_accuracy)" in out
    assert re.search(r"\n  rare +\d\.\d{4} +0\.\d{4} +\d\.\d{4} +\d+\n", out)
    assert "Pushed: nothing (the model was not blessed)" in out

    # Balanced class weights reach the Trainer, computed from the train split's counts
    # (their effect on a model: tests/unit/models/test_trainer.py).
    overrides["model.class_weight"] = "balanced"
    main(cli_args(overrides))
    stats = sorted(glob.glob(str(tmp_path / "pipeline_output" / "*" / "Trainer" / "model_run"
                                 / "*" / "train_stats.json")), key=os.path.getmtime)
    with open(stats[-1]) as f:
        trained = json.load(f)
    counts = trained["label_counts"]
    assert counts["rare"] * 15 < counts["common"]
    assert trained["class_weight"] == pytest.approx(
        {label: sum(counts.values()) / (2 * count) for label, count in counts.items()})


@pytest.fixture(scope="module")
def tickets(tmp_path_factory):
    """Support tickets as two text columns, subject and body (some subjects empty,
    some non-ASCII), joined by the reader with ". "."""
    folder = tmp_path_factory.mktemp("tickets")
    with open(folder / "tickets.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["subject", "body", "label"])
        for i, (text, label) in enumerate(sample_rows(400)):
            words = text.split()
            subject = "" if i % 7 == 0 else (
                "Grüße, " if i % 11 == 0 else "") + " ".join(words[:3])
            writer.writerow([subject, " ".join(words[3:]) or "…", label])
    return str(folder)


@pytest.mark.serving
def test_two_text_columns_are_the_served_inputs_joined_in_the_graph(
        tmp_path, tiny_checkpoint, tickets, capsys):
    """A model trained on ``subject,body`` joined with ". " serves ``subject`` and
    ``body`` (predict_text, and classify's tf.Example features) and joins them in its
    graph as the reader did (empty parts left out): the same probabilities as the joined
    text through TFMA's serving_default, over gRPC and REST, through the client, the
    ``predict`` command and ``score``; model_info.json and the model card say so."""
    from components.text_example_gen.parsing import ReaderConfig, read_file

    overrides = tiny_overrides(tmp_path, tiny_checkpoint, tickets, **{
        "data.text_column": "subject,body", "data.text_separator": ". ",
        "data.schema_path": "", "privacy.redact": "email"})
    assert main(cli_args(overrides)) == 0
    assert "Pushed: version" in capsys.readouterr().out

    version = _pushed(tmp_path)
    info = json.loads(open(os.path.join(version, "assets.extra", "model_info.json")).read())
    assert info["input"] == {
        "text_columns": ["subject", "body"], "text_pair_columns": [], "text_separator": ". ",
        "empty_parts": "left out",
        "signatures": {"predict_text": ["subject", "body"], "classify": ["subject", "body"],
                       "serving_default": ["text"]},
        "privacy": {"redact": "email", "custom_patterns": []}}
    names = info["labels"]
    card = open(os.path.join(version, "assets.extra", "model_card.md")).read()
    assert "## Input contract" in card
    assert "| predict_text | subject, body | strings |" in card and '". "' in card

    model = tf.saved_model.load(version)
    by_columns = model.signatures[contract.TEXT_SIGNATURE]
    assert set(by_columns.structured_input_signature[1]) == {"subject", "body"}
    records = read_file(os.path.join(tickets, "tickets.csv"), ReaderConfig(
        "subject,body", text_separator=". "))
    with open(os.path.join(tickets, "tickets.csv"), encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))[:24]
    joined = [r.text for r in records[:24]]
    assert any(not row["subject"] for row in rows) and any("Grüße" in t for t in joined)
    subjects = np.array([row["subject"] for row in rows], dtype=object)
    bodies = np.array([row["body"] for row in rows], dtype=object)
    expected = model.signatures[contract.EXAMPLES_SIGNATURE](
        examples=tf.constant(_examples([{"text": t} for t in joined])))["probabilities"]
    got = by_columns(subject=tf.constant(subjects), body=tf.constant(bodies))
    np.testing.assert_allclose(got["probabilities"], expected, atol=1e-6)
    _tf_serving_ops_only(version)
    # the serving check replays the warmup requests, which send the columns
    from serving.check import check_model
    from serving.servable import read_warmup_logs
    sent = {log.predict_log.request.model_spec.signature_name:
            set(log.predict_log.request.inputs) for log in read_warmup_logs(version)
            if log.HasField("predict_log")}
    assert sent == {"predict_text": {"subject", "body"}, "serving_default": {"examples"}}
    result = check_model(version)
    assert result.ok and result.requests == 6, result.reason

    columns = [{"subject": s, "body": b} for s, b in zip(subjects, bodies)]
    server, clients = _served(os.path.dirname(version))
    with server:
        grpc_client, rest_client = clients()
        for client in (grpc_client, rest_client):
            name = type(client).__name__
            got = client.predict({"subject": subjects, "body": bodies}, "predict_text")
            np.testing.assert_allclose(got["probabilities"], expected, atol=1e-5,
                                       err_msg=name)
            scores = [[dict(row)[n] for n in names] for row in client.classify(columns)]
            np.testing.assert_allclose(scores, expected, atol=1e-5, err_msg=name)
            predictions = client.predict_columns(columns)
            assert [p.columns for p in predictions] == columns
            np.testing.assert_allclose(
                [[p.probabilities[n] for n in names] for p in predictions],
                expected, atol=1e-5, err_msg=name)
            with pytest.raises(ServingClientError, match=r"takes the columns body, subject"):
                client.predict_texts(joined)
            with pytest.raises(ServingClientError, match=r"row 0: .*missing 'body'"):
                client.predict_columns([{"subject": "a"}])
        for url in (f"grpc://{server.grpc_address}", server.rest_url):
            capsys.readouterr()
            assert main(["predict", "--server", url, "--model", MODEL, "--columns",
                         *[json.dumps(c) for c in columns[:3]]]) == 0
            lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
            assert [line["columns"] for line in lines] == columns[:3]
            np.testing.assert_allclose([[line["probabilities"][n] for n in names]
                                        for line in lines], expected[:3], atol=1e-5)

    assert main(["score", "--model", os.path.dirname(version), "--data",
                 os.path.join(tickets, "tickets.csv"), "--text_column", "subject,body",
                 "--text_separator", ". "]) == 0
    assert re.search(r"400 examples, accuracy 0\.\d{4}", capsys.readouterr().out)
