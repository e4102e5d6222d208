"""DriftCheck component: stops the run when the newest span drifted from the last span
that was accepted.

Reads both spans' raw files (as TextExampleGen does, with the reader settings as
``ReaderConfig.to_json()`` wrote them), profiles them with the model's own tokenizer
(a sentence pair's two texts together) and compares labels, text lengths and [UNK]
share against the configured limits, or a curated schema's drift comparators where it
has them (see ``drift.py``). Runs before Transform, so a drifted data drop never reaches
training; ``action='warn'`` only records it. Its report's ``drift`` property says the
verdict, or that drift was not checked and why; ``limits`` the limits and where each
came from; ``span`` and ``baseline_span`` the two spans compared; ``accepted_spans``
every span accepted so far (a window span not among them refuses the run).

The baseline is the span of the latest report a DriftCheck published: a check that
stopped its run publishes none, so a span that drifted is never the next one's
baseline (span 3 is compared with span 1 when span 2 was refused, and refused too if it
shares span 2's skew). A span accepted with ``action='warn'`` is a baseline, and a
rerun of it keeps its verdict. When that span's folder is gone, the newest accepted span
left is; with none left the run is refused. Without such a report (the first run with
spans), the previous span is.
"""

import itertools
import json
import os
from typing import Optional

from tfx.dsl.component.experimental.annotations import (InputArtifact, OutputArtifact,
                                                        Parameter)
from tfx.dsl.component.experimental.decorators import component
from tfx import types
from tfx.dsl.io import fileio
from tfx.types import standard_artifacts
from tfx.utils import io_utils

from components.drift_check import drift
from serving import contract



class DriftReport(types.Artifact):
    """DriftCheck's verdict (``drift.json``); its own type, so the resolver of the last
    accepted span finds DriftCheck's reports and no other component's."""

    TYPE_NAME = "bert_pipeline.DriftReport"  # namespaced, as KFP v2 needs custom types


class DataDriftError(RuntimeError):
    """The newest span drifted beyond the configured limits."""


NOT_CHECKED = "not checked: "  # how a verdict says that drift was not checked
SETTINGS = {"label_l_infinity": "data.max_label_l_infinity",  # the configured limits
            "length_js_divergence": "data.max_length_js_divergence",
            "unknown_share_increase": "data.max_unknown_share_increase"}


def span_profile(files: list, reader_config, checkpoint: str,
                 custom_patterns: list = ()) -> drift.SpanProfile:
    """Profile of the rows in ``files``, tokenized with the checkpoint's vocabulary; a
    sentence pair's length and [UNK] pieces count both its texts, as the model reads them.
    ``custom_patterns``: the run's own types, replaced where an error quotes a row."""
    from components.text_example_gen import parsing
    from models import checkpoint as checkpoint_lib
    from models.tokenizer import UNK, BertTextTokenizer

    # TFX's file layer (tf.io.gfile): any local path or URI, in or out of a Beam pipeline
    records = (r for path in files for r in parsing.iter_file(
        path, reader_config, opener=lambda name: fileio.open(name, "rb"),
        custom_patterns=custom_patterns))
    folder = checkpoint_lib.resolve_checkpoint_dir(checkpoint)
    vocab = checkpoint_lib.read_vocab(folder)
    tokenizer = BertTextTokenizer(vocab, checkpoint_lib.is_lower_case(folder), 1 << 20)
    unk_id = vocab.index(UNK)
    counts = drift.ProfileCounts()  # a batch of rows at a time: the span is not held
    while batch := list(itertools.islice(records, 1024)):
        pieces, unknown = _word_pieces(tokenizer, unk_id, [r.text for r in batch])
        if reader_config.text_pair:
            pair_pieces, pair_unknown = _word_pieces(tokenizer, unk_id,
                                                     [r.text_pair for r in batch])
            pieces = [a + b for a, b in zip(pieces, pair_pieces)]
            unknown = [a + b for a, b in zip(unknown, pair_unknown)]
        # each label of a multi-label row, as TFDV's statistics and the model count them
        counts.add([r.labels or (r.label,) for r in batch], pieces, unknown)
    return counts.profile()


def _word_pieces(tokenizer, unk_id: int, texts: list) -> tuple[list, list]:
    """(word pieces, [UNK] pieces) of each text, [CLS] and [SEP] not counted."""
    import tensorflow as tf

    ids = tokenizer(tf.constant(texts))[:, 1:-1]
    return (ids.row_lengths().numpy().tolist(),
            tf.reduce_sum(tf.cast(ids == unk_id, tf.int64), axis=1).numpy().tolist())


def span_files(input_base: str, folder: str, span_pattern: str, patterns: list) -> list:
    """The span's data files, found as TextExampleGen finds them (hidden files skipped)."""
    from components.text_example_gen.files import data_files
    return sorted(f for p in patterns
                  for f in data_files(os.path.join(input_base, p.replace(span_pattern, folder))))


def write_report(folder: str, result: dict) -> None:
    """``drift.json`` in the report artifact's folder (a local path or a URI)."""
    fileio.makedirs(folder)
    with fileio.open(os.path.join(folder, contract.DRIFT_REPORT_FILE), "w") as f:
        f.write(json.dumps(result, indent=2))


def of_this_data(accepted, source: str) -> bool:
    """Whether ``accepted`` is a report on this data (its ``source``; reports from before
    sources were recorded count as this data's): another pipeline's, which KFP's query,
    scoped by type alone, may return, is not."""
    return accepted is not None and (not accepted.has_custom_property("source") or
                                     accepted.get_string_custom_property("source") == source)


def accepted_spans(newest: int, spans: dict, accepted, source: str = "") -> set:
    """The spans DriftChecks of this data accepted before ``newest``'s run: ``accepted``'s
    ``accepted_spans`` (reports before it: its span and the ones before it); with no
    report of this data, or one of a higher span (spans renumbered: the history starts
    again), every span before ``newest`` (they came before any check)."""
    if not of_this_data(accepted, source):
        return {n for n in spans if n < newest}
    span = accepted.get_int_custom_property("span")
    if span > newest:
        return {n for n in spans if n < newest}
    if accepted.has_custom_property("accepted_spans"):
        return set(json.loads(accepted.get_string_custom_property("accepted_spans")))
    return {n for n in spans if n <= span} | {span}


def baseline_span(newest: int, spans: dict, accepted,
                  source: str = "") -> tuple[Optional[int], str]:
    """(the span to compare ``newest`` with, why that one): the span of ``accepted`` (the
    last published report) when it is older and still there, the one that report compared
    with when it was a run of this same span, else the newest accepted span still there
    (never a refused one: None when there is none). A report of other data (its
    ``source``: another pipeline's, which KFP's query, scoped by type alone, may return)
    is no baseline."""
    previous = max((n for n in spans if n < newest), default=None)
    if not of_this_data(accepted, source):
        return previous, "the previous span"
    span = accepted.get_int_custom_property("span")
    if span == newest and accepted.has_custom_property("baseline_span"):
        span = accepted.get_int_custom_property("baseline_span")  # a rerun of this span
    if span in spans and span < newest:
        return span, "the previous span" if span == previous else "the last accepted span"
    if span > newest:  # spans renumbered: the history starts again
        return previous, f"the previous span (the last accepted, {span}, is not before it)"
    still_there = [n for n in accepted_spans(newest, spans, accepted, source)
                   if n in spans and n < newest]
    if not still_there:
        return None, f"no accepted span left (the last accepted, {span}, is gone)"
    return max(still_there), f"the newest accepted span left (the last, {span}, is gone)"


@component
def DriftCheck(examples: InputArtifact[standard_artifacts.Examples],
               schema: InputArtifact[standard_artifacts.Schema],
               report: OutputArtifact[DriftReport],
               input_base: Parameter[str], span_pattern: Parameter[str],
               file_patterns: Parameter[str], reader_config: Parameter[str],
               checkpoint: Parameter[str], label_feature: Parameter[str],
               text_feature: Parameter[str], max_unknown_share_increase: Parameter[float],
               max_label_l_infinity: Parameter[float],
               max_length_js_divergence: Parameter[float], action: Parameter[str] = "fail",
               window_spans: Parameter[int] = 1,
               accepted: InputArtifact[DriftReport] = None, privacy: Parameter[str] = ""):
    """Compares the span ``examples`` came from with the last accepted span (``accepted``:
    the latest report a DriftCheck published), or the previous span without one; the
    spans of the training window (``window_spans``) newer than the last accepted one were
    refused, and are a problem too. ``privacy``: the run's privacy settings as JSON
    (their custom patterns are replaced where an error quotes a row)."""
    from tensorflow_metadata.proto.v0 import schema_pb2

    from components.text_example_gen.files import list_spans, training_window
    from components.text_example_gen.parsing import ReaderConfig

    # TFX 1.16 keeps the span in a custom property; older TFX in the typed one
    newest = int(examples.get_int_custom_property("span") or examples.span)
    spans = dict(list_spans(input_base, span_pattern))
    source = f"{input_base.rstrip('/')}/{span_pattern}"  # the data this check judges
    previous, chosen = baseline_span(newest, spans, accepted, source)
    before = accepted_spans(newest, spans, accepted, source)
    # a rerun of a span accepted with data.drift_action=warn: its verdict stands
    accepted_drift = (of_this_data(accepted, source) and
                      accepted.get_int_custom_property("span") == newest and
                      bool(accepted.get_int_custom_property("drifted")))
    schema_proto = io_utils.parse_pbtxt_file(
        os.path.join(schema.uri, "schema.pbtxt"), schema_pb2.Schema())
    limits = drift.limits_from_schema(schema_proto, label_feature, text_feature,
                                      drift.DriftLimits(max_label_l_infinity,
                                                        max_length_js_divergence,
                                                        max_unknown_share_increase,
                                                        sources=dict(SETTINGS)))
    result = {"span": newest, "previous_span": previous, "baseline": chosen, "problems": [],
              "figures": {}, "limits": limits.describe()}
    distances: list = []  # the drift the limits measure (the rest: window, baseline, cache)
    window = [n for n, _ in training_window(sorted(spans.items()), newest, window_spans)]
    unaccepted = [n for n in window if n not in before]
    if unaccepted:
        result["problems"].append(
            f"span(s) {', '.join(map(str, unaccepted))} of the training window "
            f"(data.window_spans {window_spans}) were not accepted by a drift check (one "
            f"refused them, or none saw them: they came between two runs): remove their "
            f"folders, accept them with data.drift_action=warn, or train one span at a "
            f"time (data.window_spans 1)")
    read = examples.get_string_custom_property("window_spans_read") \
        if examples.has_custom_property("window_spans_read") else None
    if read is not None and sorted(json.loads(read)) != window:
        result["problems"].append(
            f"the examples hold the window's spans {json.loads(read)} but its folders are "
            f"now spans {window} (a cached TextExampleGen, enable_cache, made them before "
            f"a span was removed or added): run again with enable_cache false")
    if previous is None and chosen.startswith("no accepted span"):
        result["problems"].append(
            f"{chosen}: no span to compare span {newest} with; restore the accepted span's "
            f"folder, or accept span {newest} with data.drift_action=warn")
        verdict = "; ".join(result["problems"])
    elif previous is None:
        verdict = "; ".join(result["problems"]) or (
            f"{NOT_CHECKED}span {newest} is the first span (no earlier span to compare "
            f"with)")
    else:
        patterns = json.loads(file_patterns)
        config = ReaderConfig.from_json(reader_config)
        custom = json.loads(privacy).get("custom_patterns", []) if privacy else []
        profiles = [span_profile(span_files(input_base, spans[n], span_pattern, patterns),
                                 config, checkpoint, custom) for n in (newest, previous)]
        if not profiles[1].rows:  # the baseline must be read, or nothing was compared
            result["problems"].append(
                f"span {previous} ({spans[previous]}), the baseline, has no rows in files "
                f"matching {', '.join(patterns)}: nothing to compare span {newest} with "
                f"(data.file_pattern changed?)")
        if not profiles[0].rows or not profiles[1].rows:
            verdict = "; ".join(result["problems"]) or (
                f"{NOT_CHECKED}span {newest} ({spans[newest]}) has no rows in files "
                f"matching {', '.join(patterns)}")
        else:
            distances, figures = drift.compare(*profiles, limits, f"span {newest}",
                                               f"span {previous}")
            problems = distances + result["problems"]  # the distances first, then the rest
            result.update(problems=problems, figures=figures)
            shown = ", ".join(f"{k}={v:.4f}" for k, v in figures.items())
            which = "" if chosen == "the previous span" else f" ({chosen})"
            verdict = ("; ".join(problems) + which + (
                " (data.drift_action=warn: training anyway)" if action == "warn" else
                " (accepted before with data.drift_action=warn: its verdict stands)"
                if accepted_drift and problems == distances else "")
                       if problems else f"span {newest} vs {previous}{which}: no drift "
                                        f"({shown})")
    report.set_string_custom_property("accepted_spans", json.dumps(
        sorted(n for n in before | set(window) | {newest} if n in spans or n == newest)))
    write_report(report.uri, result)
    report.set_string_custom_property("drift", verdict[:2000])
    report.set_string_custom_property("limits", result["limits"])
    report.set_int_custom_property("drifted", int(bool(distances)))
    report.set_int_custom_property("span", newest)
    report.set_string_custom_property("source", source)
    if previous is not None:
        report.set_int_custom_property("baseline_span", previous)
    # a rerun of a span accepted with warn keeps that verdict on its drift, never on the
    # rest (a window span none accepted, a cached window, a baseline without rows)
    others = [p for p in result["problems"] if p not in distances]
    if action == "fail" and (others or (distances and not accepted_drift)):
        # the verdict (as the summary and history show it), then the limits
        raise DataDriftError(f"data drift: {verdict} (limits: {result['limits']}; set "
                             f"data.drift_action=warn to train anyway)")
