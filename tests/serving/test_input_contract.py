"""The served input contract of a model trained on several text columns: the graph's
join is the reader's join, the inputs are named after the columns, and the warmup
requests and model_info.json use them (the exported model end to end:
tests/test_tasks_e2e.py)."""
import csv
import io
import json

import numpy as np
import pytest
import tensorflow as tf

from components.text_example_gen.parsing import ReaderConfig, parse
from models import export, features
from models.hparams import Task
from pipeline.config import PipelineConfig
from pipeline.pipeline import task

# subject, body: empty parts, unicode, the separator and quotes inside a part, spaces.
ROWS = [("Refund", "I was charged twice."), ("", "No subject here"), ("Only subject", ""),
        ("Grüße aus Köln", "Ça marche ? 日本語のテキスト 🙂"), ("a. b", "c. d"),
        (" ", "space subject"), ('He said "no"', "tab\there")]
SEPARATORS = [". ", " ", "", " | ", "\n"]


def _csv(rows) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["subject", "body", "label"])
    writer.writerows([(*row, "x") for row in rows])
    return out.getvalue().encode("utf-8")


def _jsonl(rows) -> bytes:
    return "".join(json.dumps({"subject": s or None, "body": b, "label": "x"}) + "\n"
                   for s, b in rows).encode("utf-8")


@pytest.mark.parametrize("separator", SEPARATORS)
@pytest.mark.parametrize("name,data", [("t.csv", _csv(ROWS)), ("t.tsv", None),
                                       ("t.jsonl", _jsonl(ROWS))])
def test_the_graph_joins_columns_as_the_reader_does(name, data, separator):
    """Every format: the non-empty parts, in order, joined by the separator (a JSON null
    or an empty CSV field is left out, a space is text)."""
    if data is None:
        data = "subject\tbody\tlabel\n".encode() + "".join(
            f"{s}\t{b.replace(chr(9), ' ')}\tx\n" for s, b in ROWS).encode("utf-8")
    records = parse(name, data, ReaderConfig("subject,body", text_separator=separator))
    rows = [(s, b if name != "t.tsv" else b.replace("\t", " ")) for s, b in ROWS]
    joined = export.join_parts([tf.constant([s for s, _ in rows]),
                                tf.constant([b for _, b in rows])], separator)
    assert [v.decode("utf-8") for v in joined.numpy()] == [r.text for r in records]
    assert [export.join_values(row, separator) for row in rows] == [r.text for r in records]


def test_three_columns_and_one_column():
    parts = [tf.constant(["a", "", "", "a"]), tf.constant(["", "", "b", "b"]),
             tf.constant(["c", "", "", "c"])]
    assert export.join_parts(parts, ", ").numpy().tolist() == [b"a, c", b"", b"b", b"a, b, c"]
    assert export.join_parts(parts[:1], ", ") is parts[0]  # one column: the input itself


def test_one_column_models_keep_text_and_text_pair():
    assert features.text_inputs(Task(text_columns=("sentence",))) == {"text": ["text"]}
    pair = Task(text_pair=True, text_columns=("#1 String",), text_pair_columns=("#2 String",))
    assert features.text_inputs(pair) == {"text": ["text"], "text_pair": ["text_pair"]}
    assert features.served_inputs(Task()) == ["text"]


def test_several_columns_are_served_by_name():
    columns = Task(text_columns=("subject", "Body Text", "2"), text_pair=True,
                   text_pair_columns=("answer", "subject"))
    assert features.text_inputs(columns) == {
        "text": ["subject", "Body_Text", "column_2"], "text_pair": ["answer", "subject"]}
    assert features.served_inputs(columns) == ["subject", "Body_Text", "column_2", "answer"]
    # `text`/`text_pair` name a one-column model's inputs (feedback, the client and
    # score tell the kinds apart by them): a column so named is served as column_text.
    titled = Task(text_columns=("title", "text"), text_pair=True,
                  text_pair_columns=("text_pair", "notes"))
    assert features.text_inputs(titled) == {
        "text": ["title", "column_text"], "text_pair": ["column_text_pair", "notes"]}
    with pytest.raises(ValueError, match=r"'a b' and 'a_b' would both be served as the "
                                         r"input 'a_b' \(data.text_column"):
        features.text_inputs(Task(text_columns=("a b", "a_b")))


def test_the_pipeline_passes_the_columns_and_separator_to_the_trainer():
    config = PipelineConfig()
    config.data.text_column, config.data.text_separator = "1, 2", ". "
    config.data.column_names = ["class", "title", "description"]
    assert task(config) == Task(text_columns=("title", "description"),
                                text_separator=". ")
    config.data.column_names = []
    assert task(config).text_columns == ("1", "2")  # positions in a header: kept as given
    config.data.text_column = "a b,a_b"
    with pytest.raises(ValueError, match="would both be served"):
        task(config)


def test_warmup_requests_use_the_served_inputs(tmp_path):
    from serving.servable import read_warmup_logs
    columns = Task(text_columns=("subject", "body"), text_separator=". ")
    (tmp_path / "assets.extra").mkdir()
    export.write_warmup_requests(str(tmp_path / "assets.extra" / "tf_serving_warmup_requests"),
                                 columns)
    logs = list(read_warmup_logs(str(tmp_path)))
    predict = [log.predict_log.request for log in logs if log.HasField("predict_log")]
    by_signature = {r.model_spec.signature_name: set(r.inputs) for r in predict}
    assert by_signature == {"predict_text": {"subject", "body"}, "serving_default": {"examples"}}
    classify = [log.classify_log.request for log in logs if log.HasField("classify_log")]
    assert len(classify) == 2
    for request in classify:
        for example in request.input.example_list.examples:
            assert set(example.features.feature) == {"subject", "body"}
    text = [r for r in predict if r.model_spec.signature_name == "predict_text"][-1]
    examples = [r for r in predict if r.model_spec.signature_name == "serving_default"][-1]
    subjects, bodies = (tf.make_ndarray(text.inputs[n]) for n in ("subject", "body"))
    joined = [tf.train.Example.FromString(e).features.feature["text"].bytes_list.value[0]
              for e in tf.make_ndarray(examples.inputs["examples"])]
    assert joined == [export.join_values([s.decode(), b.decode()], ". ").encode()
                      for s, b in zip(subjects, bodies)]
    assert b"" in subjects  # the empty part is exercised


def test_model_info_states_the_contract():
    columns = Task(text_columns=("subject", "body"), text_separator=". ")
    assert export.input_contract(columns, {"redact": "all", "custom_patterns": []}) == {
        "text_columns": ["subject", "body"], "text_pair_columns": [], "text_separator": ". ",
        "empty_parts": "left out",
        "signatures": {"predict_text": ["subject", "body"], "classify": ["subject", "body"],
                       "serving_default": ["text"]},
        "privacy": {"redact": "all", "custom_patterns": []}}
    single = export.input_contract(Task(text_columns=("sentence",)), None)
    assert single["signatures"] == {"predict_text": ["text"], "classify": ["text"],
                                    "serving_default": ["text"]}
    assert single["privacy"] == {"redact": "none"}


class JoinedLength(tf.Module):
    """A column model in this project's shape: predict_text and classify take subject and
    body, joined in the graph with ". "; 'long' or 'short' by the joined length."""

    def _scores(self, columns):
        text = export.join_parts([columns["subject"], columns["body"]], ". ")
        p_long = tf.sigmoid(tf.cast(tf.strings.length(text), tf.float32) - 10.0)
        return tf.stack([1.0 - p_long, p_long], axis=1)

    @tf.function(input_signature=[{n: tf.TensorSpec([None], tf.string, name=n)
                                   for n in ("subject", "body")}])
    def predict_text(self, columns):
        return {"probabilities": self._scores(columns)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify(self, inputs):
        columns = tf.io.parse_example(inputs, {n: tf.io.FixedLenFeature([], tf.string)
                                               for n in ("subject", "body")})
        scores = self._scores(columns)
        return {"scores": scores,
                "classes": tf.tile(tf.constant([["short", "long"]]), [tf.shape(scores)[0], 1])}


@pytest.mark.serving
def test_clients_send_the_columns_by_name(tmp_path, capsys):
    """Over a real server: REST :predict instances as objects, gRPC Predict, and Classify
    with the columns as tf.Example features all join in the graph; the client refuses a
    row lacking a column, a column the model does not take, and plain texts."""
    from cli.main import main
    from models.export import set_method_name
    from serving.client import GrpcClient, RestClient, ServingClientError, Target
    from serving.process import ServerProcess

    module = JoinedLength()
    version = str(tmp_path / "columns" / "1")
    tf.saved_model.save(module, version, signatures={
        "predict_text": module.predict_text.get_concrete_function(),
        "classify": module.classify.get_concrete_function()})
    set_method_name(version, "classify", "tensorflow/serving/classify")
    rows = [{"subject": "", "body": "short"}, {"subject": "Hi", "body": "a"},
            {"subject": "Grüße", "body": ""}, {"subject": "long subject", "body": "body"}]
    joined = [export.join_values([r["subject"], r["body"]], ". ") for r in rows]
    assert joined == ["short", "Hi. a", "Grüße", "long subject. body"]
    with ServerProcess(["--model_name", "columns", "--model_base_path",
                        str(tmp_path / "columns"), "--feedback_dir", str(tmp_path / "fb")]) \
            as server:
        target = Target("columns")
        with GrpcClient(server.grpc_address, target) as by_grpc, \
                RestClient(server.rest_url, target) as by_rest:
            for client in (by_grpc, by_rest):
                inputs = {n: np.array([r[n] for r in rows], dtype=object)
                          for n in ("subject", "body")}
                by_predict = client.predict(inputs, "predict_text")
                by_predict = by_predict.get("probabilities", by_predict.get("output"))
                predictions = client.predict_columns(rows)
                assert [p.columns for p in predictions] == rows
                # feedback records texts only: not recorded, and the server says so
                assert [p.id for p in predictions] == [None] * 4
                assert "feedback not recorded for model 'columns' version 1: its examples " \
                       "have no single 'text' feature" in server.log()
                assert [p.label for p in predictions] == [
                    "long" if len(t.encode()) > 10 else "short" for t in joined]
                np.testing.assert_allclose(
                    [[p.probabilities["short"], p.probabilities["long"]] for p in predictions],
                    by_predict, atol=1e-6)
                with pytest.raises(ServingClientError, match=r"row 1: model 'columns' takes "
                                                             r"body, subject; missing 'body'"):
                    client.predict_columns([rows[0], {"subject": "x"}])
                with pytest.raises(ServingClientError, match=r"row 0: .*unknown 'text'"):
                    client.predict_columns([dict(rows[0], text="x")])
                with pytest.raises(ServingClientError, match=r"takes the columns body, "
                                                             r"subject.*--columns"):
                    client.predict_texts(joined)
        assert server.log().count("feedback not recorded") == 1  # once per version
        capsys.readouterr()
        assert main(["predict", "--server", server.rest_url, "--model", "columns",
                     "--columns", json.dumps(rows[3])]) == 0
        [line] = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
        assert line["columns"] == rows[3] and line["label"] == "long" and "text" not in line
    assert main(["predict", "--columns", "subject: hi"]) == 1
    assert "--columns: text 1 is invalid JSON" in capsys.readouterr().err
    assert main(["predict", "--columns", "--pairs", "{}"]) == 1
    assert "--pairs or --columns, not both" in capsys.readouterr().err


def test_score_refuses_a_join_other_than_the_models(tmp_path):
    """``score`` joins the file's columns itself (the reader): other columns or another
    separator than the model's would score texts the model never sees in serving."""
    from cli.score import score_file
    module = JoinedLength()
    version = tmp_path / "columns" / "1"
    tf.saved_model.save(module, str(version), signatures={
        "predict_text": module.predict_text.get_concrete_function()})
    (version / "assets.extra").mkdir()
    (version / "assets.extra" / "model_info.json").write_text(json.dumps({
        "input": export.input_contract(Task(text_columns=("subject", "body"),
                                            text_separator=". "), None)}))
    (tmp_path / "t.csv").write_bytes(_csv([(s, b) for s, b in ROWS if s.strip() and b]))
    for reader in (ReaderConfig("body", text_separator=". "), ReaderConfig("subject,body"),
                   ReaderConfig("body,subject", text_separator=". ")):
        with pytest.raises(ValueError, match=r"trained on the text columns subject,body "
                                             r"joined with '\. ': score with --text_column "
                                             r"subject,body --text_separator '\. '"):
            score_file(str(tmp_path / "columns"), str(tmp_path / "t.csv"), reader)
