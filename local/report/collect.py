"""Everything the report shows, gathered from the run summary (ML Metadata) and the
artifacts it names. Each part is read on its own: a part whose component did not run
(or whose files cannot be read) is left out and the report says so.

Tested end to end: tests/e2e/test_report.py.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import Optional

from tfx.dsl.io import fileio

from local.report import data, scoring, training
from local.summary import RunSummary
from models import redaction
from serving import contract


@dataclasses.dataclass
class Report:
    summary: RunSummary
    created: str
    splits: list = dataclasses.field(default_factory=list)  # data.Split
    features: dict = dataclasses.field(default_factory=dict)  # data.feature_table
    anomalies: Optional[list] = None  # None: ExampleValidator's output is not there
    drift: Optional[dict] = None
    training: Optional[training.Training] = None
    gate: list = dataclasses.field(default_factory=list)  # eval_results.GateCheck
    scored: Optional[scoring.Scored] = None
    model_card: Optional[str] = None  # the card's Markdown
    placeholders: dict = dataclasses.field(default_factory=dict)  # "[unused1]" -> "[EMAIL]"
    problems: list = dataclasses.field(default_factory=list)  # parts that could not be read


def _uri(summary: RunSummary, node: str, key: str) -> Optional[str]:
    found = summary.artifacts.get(node, {}).get(key)
    return found[0][1] if found else None


def model_card(summary: RunSummary) -> Optional[str]:
    """The card's Markdown: in the pushed model, else in any model artifact of the run."""
    from components.model_card.card import CARD_FILE

    folders = [summary.pushed_path] if summary.pushed_path else []
    folders += [os.path.join(uri, sub) for outputs in summary.artifacts.values()
                for found in outputs.values() for _, uri in found
                for sub in (contract.SERVING_MODEL_DIR, "")]
    for folder in folders:
        path = os.path.join(folder, CARD_FILE)
        if fileio.exists(path):
            with fileio.open(path) as f:
                return f.read()
    return None


def _part(report: Report, what: str, read, *args):
    """``read(*args)``, or None (noted in the report) when it fails."""
    try:
        return read(*args)
    except Exception as error:  # noqa: BLE001 - one unreadable part must not stop the rest
        logging.warning("report: could not read the %s", what, exc_info=True)
        report.problems.append(f"{what}: {type(error).__name__}: {error}")
        return None


def _evaluation(summary: RunSummary, uri: str) -> list:
    from components import eval_results

    return eval_results.gate_checks(uri, eval_results.read(uri, summary.labels,
                                                           summary.gated))


def collect(summary: RunSummary, privacy: Optional[dict] = None) -> Report:
    """The report's data; ``privacy`` (the run's settings, as the pipeline passes them on)
    adds its custom patterns to what raw texts shown are redacted of."""
    report = Report(summary, time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))
    shown = redaction.text_redactor(privacy)
    statistics = _uri(summary, "StatisticsGen", "statistics")
    transformed = _uri(summary, "Transform", "transformed_examples")
    stats = _part(report, "data statistics", data.read_statistics, statistics) \
        if statistics else None
    if stats is not None:
        report.splits = _part(report, "data statistics", data.splits, stats,
                              transformed) or []
        report.features = _part(report, "feature statistics", data.feature_table, stats,
                                shown) or {}
    anomalies = _uri(summary, "ExampleValidator", "anomalies")
    if anomalies:
        report.anomalies = _part(report, "anomalies", data.anomalies, anomalies, shown)
    drift = _uri(summary, "DriftCheck", "report")
    if drift:
        report.drift = _part(report, "drift report", data.drift, drift)
    model_run = _uri(summary, "Trainer", "model_run")
    if model_run:
        report.training = _part(report, "training logs", training.read, model_run)
    # Texts show redaction's placeholders by type name; custom types need the run's
    # privacy settings, which the Trainer recorded.
    report.placeholders = _part(report, "privacy settings", scoring.placeholder_names,
                                report.training.stats.get("privacy")
                                if report.training else None) or {}
    evaluation = _uri(summary, "Evaluator", "evaluation")
    if evaluation:
        report.gate = _part(report, "gate thresholds", _evaluation, summary, evaluation) or []
    model, examples = _uri(summary, "Trainer", "model"), _uri(summary, "TextExampleGen",
                                                              "examples")
    if model and examples and summary.labels:
        report.scored = _part(report, "candidate's predictions", scoring.score, model,
                              examples, summary.labels, scoring.MAX_EXAMPLES,
                              report.placeholders)
    report.model_card = _part(report, "model card", model_card, summary)
    return report
