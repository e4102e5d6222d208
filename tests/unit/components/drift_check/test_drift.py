"""Span drift (components/drift_check/drift.py): distances, limits from the curated schema
or the config, and the problems a comparison names."""
import pytest
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from components.drift_check import drift
from tests.support.paths import CURATED_SCHEMA


def test_distances():
    assert drift.l_infinity({"a": 50, "b": 50}, {"a": 5, "b": 5}) == 0.0
    assert drift.l_infinity({"a": 90, "b": 10}, {"a": 50, "b": 50}) == pytest.approx(0.4)
    assert drift.l_infinity({"a": 1}, {"b": 1}) == 1.0  # disjoint label sets
    assert drift.jensen_shannon([1, 0], [0, 1]) == pytest.approx(1.0)  # base 2: 0..1
    assert drift.jensen_shannon([3, 1, 0], [6, 2, 0]) == pytest.approx(0.0)
    assert 0 < drift.jensen_shannon([3, 1], [1, 3]) < 1
    assert [drift.length_bucket(n) for n in (0, 4, 5, 512, 513)] == [0, 0, 1, 7, 8]


def _profile(labels, pieces, unknown) -> drift.SpanProfile:
    """The profile of rows added in two batches, as a span's batches are."""
    counts = drift.ProfileCounts()
    counts.add(labels[:7], pieces[:7], unknown[:7])
    counts.add(labels[7:], pieces[7:], unknown[7:])
    return counts.profile()


def test_limits_come_from_the_curated_schema_and_compare_names_each_problem():
    schema = text_format.Parse(open(CURATED_SCHEMA).read(), schema_pb2.Schema())
    limits = drift.limits_from_schema(schema, "label", "text",
                                      drift.DriftLimits(0.9, 0.9, 0.02))
    assert (limits.label_l_infinity, limits.length_js_divergence,
            limits.unknown_share_increase) == (0.25, 0.25, 0.02)
    previous = _profile([["0"], ["1"]] * 50, [10] * 100, [0] * 100)
    same = _profile([["1"], ["0"]] * 40, [10] * 80, [0] * 80)
    assert drift.compare(same, previous, limits, "span 2", "span 1")[0] == []
    shifted = _profile([["1"]] * 90 + [["0"]] * 10, [200] * 100, [20] * 100)
    problems, figures = drift.compare(shifted, previous, limits, "span 3", "span 2")
    assert figures["label_l_infinity"] == pytest.approx(0.4)
    assert figures["unknown_share_increase"] == pytest.approx(0.1)
    assert problems == [
        "span 3 vs span 2: label distribution (L-infinity distance) 0.4000 exceeds 0.2500",
        "span 3 vs span 2: text length in word pieces (Jensen-Shannon divergence) 1.0000 "
        "exceeds 0.2500",
        "span 3 vs span 2: share of [UNK] word pieces (increase) 0.1000 exceeds 0.0200"]


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
