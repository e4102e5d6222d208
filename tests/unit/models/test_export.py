"""The served input contract of a model trained on several text columns
(models/export.py): the graph's join is the reader's join, and the warmup requests and
model_info.json use the columns (the exported model end to end: tests/e2e/test_tasks.py)."""
import json

import pytest
import tensorflow as tf

from components.text_example_gen.parsing import ReaderConfig, parse
from models import export
from models.hparams import Task
from tests.support.joined_columns import ROWS, _csv

SEPARATORS = [". ", " ", "", " | ", "\n"]


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
