"""Drift between two spans of labelled text.

A span's profile holds its label distribution, a histogram of text lengths in
word pieces and its share of unknown ([UNK]) word pieces. Two profiles are
compared as TFDV's drift comparators do: L-infinity distance for the labels,
Jensen-Shannon divergence (base 2, 0..1) for the lengths; the [UNK] share may
not grow by more than a set amount.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Dict, List, Optional, Sequence

# Upper bounds of the text-length buckets, in word pieces ([CLS]/[SEP] excluded).
LENGTH_BOUNDS = (4, 8, 16, 32, 64, 128, 256, 512)


@dataclasses.dataclass
class SpanProfile:
    rows: int
    labels: Dict[str, int]
    lengths: List[int]  # rows per length bucket (len(LENGTH_BOUNDS) + 1 buckets)
    unknown_share: float  # [UNK] pieces / all pieces


def length_bucket(pieces: int) -> int:
    return next((i for i, bound in enumerate(LENGTH_BOUNDS) if pieces <= bound),
                len(LENGTH_BOUNDS))


class ProfileCounts:
    """A span's profile, counted batch by batch: the rows themselves are not kept."""

    def __init__(self):
        self.rows, self.pieces, self.unknown = 0, 0, 0
        self.labels: Dict[str, int] = {}
        self.lengths = [0] * (len(LENGTH_BOUNDS) + 1)

    def add(self, labels: Sequence[Sequence[str]], piece_counts: Sequence[int],
            unknown_counts: Sequence[int]) -> None:
        """Rows given as each row's labels (one, or several when multi-label), word pieces
        and [UNK] pieces."""
        self.rows += len(labels)
        for row in labels:
            for label in row:
                self.labels[label] = self.labels.get(label, 0) + 1
        for count in piece_counts:
            self.lengths[length_bucket(count)] += 1
        self.pieces += sum(piece_counts)
        self.unknown += sum(unknown_counts)

    def profile(self) -> SpanProfile:
        """The profile of the rows added so far."""
        return SpanProfile(self.rows, dict(self.labels), list(self.lengths),
                           self.unknown / self.pieces if self.pieces else 0.0)


def _normalise(counts: Dict) -> Dict:
    total = sum(counts.values())
    return {k: v / total for k, v in counts.items()} if total else {}


def l_infinity(a: Dict[str, int], b: Dict[str, int]) -> float:
    p, q = _normalise(a), _normalise(b)
    return max((abs(p.get(k, 0.0) - q.get(k, 0.0)) for k in set(p) | set(q)), default=0.0)


def jensen_shannon(a: Sequence[int], b: Sequence[int]) -> float:
    p = _normalise(dict(enumerate(a)))
    q = _normalise(dict(enumerate(b)))

    def kl(x, m):
        return sum(x[k] * math.log2(x[k] / m[k]) for k in x if x[k] > 0)

    keys = set(p) | set(q)
    m = {k: (p.get(k, 0.0) + q.get(k, 0.0)) / 2 for k in keys}
    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


@dataclasses.dataclass
class DriftLimits:
    label_l_infinity: Optional[float] = None
    length_js_divergence: Optional[float] = None
    unknown_share_increase: Optional[float] = None
    sources: Dict[str, str] = dataclasses.field(default_factory=dict)  # limit -> where from

    def describe(self) -> str:
        """Each limit with where it came from, as the run summary shows them."""
        return ", ".join(f"{key}<={value:.4f}" + (f" ({self.sources[key]})"
                                                   if key in self.sources else "")
                         for key, value in dataclasses.asdict(self).items()
                         if key != "sources" and value is not None)


def compare(newest: SpanProfile, previous: SpanProfile, limits: DriftLimits,
            newest_name: str, previous_name: str) -> tuple[list[str], dict]:
    """(problems, figures): one line per limit exceeded, and every measured distance."""
    figures = {"label_l_infinity": l_infinity(newest.labels, previous.labels),
               "length_js_divergence": jensen_shannon(newest.lengths, previous.lengths),
               "unknown_share_increase": newest.unknown_share - previous.unknown_share}
    what = {"label_l_infinity": "label distribution (L-infinity distance)",
            "length_js_divergence": "text length in word pieces (Jensen-Shannon divergence)",
            "unknown_share_increase": "share of [UNK] word pieces (increase)"}
    problems = []
    for key, value in figures.items():
        limit = getattr(limits, key)
        if limit is not None and value > limit:
            problems.append(f"{newest_name} vs {previous_name}: {what[key]} {value:.4f} "
                            f"exceeds {limit:.4f}")
    return problems, figures


def limits_from_schema(schema, label_feature: str, text_feature: str,
                       defaults: DriftLimits) -> DriftLimits:
    """``defaults`` (the config's limits), except where the schema has a drift comparator
    (a curated schema's label infinity_norm, text jensen_shannon_divergence): it wins. An
    inferred schema has none, so every limit is the config's: drift is never off."""
    limits = dataclasses.replace(defaults, sources=dict(defaults.sources))
    schema_source = "schema's drift_comparator"
    for feature in schema.feature:
        comparator = feature.drift_comparator
        if feature.name == label_feature and comparator.HasField("infinity_norm"):
            limits.label_l_infinity = comparator.infinity_norm.threshold
            limits.sources["label_l_infinity"] = schema_source
        if feature.name == text_feature and comparator.HasField("jensen_shannon_divergence"):
            limits.length_js_divergence = comparator.jensen_shannon_divergence.threshold
            limits.sources["length_js_divergence"] = schema_source
    return limits
