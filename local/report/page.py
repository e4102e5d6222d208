"""The report as one self-contained HTML page (Jinja2; CSS and SVG charts inline, no
script, nothing fetched).

Tested end to end: tests/e2e/test_report.py.
"""
from __future__ import annotations

import collections
import logging
import os
import re
from typing import Optional

import jinja2
from markupsafe import Markup, escape

from components.eval_results import label_of
from local import small_data
from local.report import figures, scoring
from local.report.collect import Report

TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")
SECTIONS = (("components", "Components"), ("data", "Data"), ("anomalies", "Anomalies"),
            ("drift", "Drift"), ("training", "Training"), ("evaluation", "Evaluation"),
            ("serving", "Serving"), ("lineage", "Lineage"), ("model-card", "Model card"))
# Inline Markdown that would make a link or load an image: kept as plain text.
_LINK_PATTERNS = ("link", "image_link", "image_reference", "reference", "short_reference",
                  "short_image_ref", "autolink", "automail", "html")


def markdown_html(text: str) -> Markup:
    """The model card's Markdown as HTML: raw HTML escaped, no links or images."""
    import markdown

    converter = markdown.Markdown(extensions=["tables"])
    converter.preprocessors.deregister("html_block")
    for name in _LINK_PATTERNS:
        if name in converter.inlinePatterns:
            converter.inlinePatterns.deregister(name)
    # The card's headings sit below the report's own (h1 -> h3, ...).
    return Markup(re.sub(r"<(/?)h([1-4])>", lambda m: f"<{m[1]}h{int(m[2]) + 2}>",
                         converter.convert(text)))


def chart(element_id: str, svg: Optional[str], caption: str) -> Markup:
    if not svg:
        return Markup("")
    return Markup(f'<figure class="chart" id="{escape(element_id)}">{svg}'
                  f"<figcaption>{escape(caption)}</figcaption></figure>")


def number(name: str, value) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if name.endswith("count") or name == "support" else f"{value:.4f}"


def _verdict(report: Report) -> dict:
    s = report.summary
    if s.error:
        return {"text": "FAILED", "css": "failed"}
    if s.pushed_version:
        return {"text": f"PUSHED version {s.pushed_version}", "css": "ok"}
    return {"text": "NOT BLESSED" if s.blessed is False else "NOT PUSHED", "css": "blocked"}


def _draw(report: Report) -> dict:
    """Every chart the data allows (a chart that fails is logged and left out)."""
    s, drawn = report.summary, {}
    plans = {
        "classes": (figures.class_shares, report.splits) if report.splits else None,
        "lengths": (figures.length_histogram, report.splits)
        if any(sp.has_lengths for sp in report.splits) else None,
        "training": (figures.training_curves, {m: report.training.series(m)
                                               for m in ("loss", "accuracy")})
        if report.training and report.training.curves else None,
        "baseline": (figures.candidate_vs_baseline, s.metrics.get("", {}),
                     s.baseline_metrics.get("", {})) if s.metrics.get("") else None,
        "confusion": (figures.confusion_matrix, s.confusion, s.labels) if s.confusion
        else None,
        "calibration": (figures.reliability, report.scored.reliability(),
                        report.scored.multi_label)
        if report.scored and len(report.scored.texts) else None,
    }
    for name, plan in plans.items():
        if plan is None:
            continue
        try:
            drawn[name] = plan[0](*plan[1:])
        except Exception as error:  # noqa: BLE001 - a chart must not cost the report
            logging.warning("report: chart %s failed", name, exc_info=True)
            report.problems.append(f"chart {name}: {type(error).__name__}: {error}")
    return drawn


def _training_rows(report: Report) -> list:
    stats = report.training.stats if report.training else {}
    rows = [("training examples", stats.get("train_examples")), ("steps", stats.get("steps")),
            ("examples/s", stats.get("examples_per_second")),
            ("precision", stats.get("precision")),
            ("fit seconds", stats.get("fit_seconds")),
            ("class weights", stats.get("class_weight"))]
    rows += [(f"final {k}", v) for k, v in sorted(stats.get("final", {}).items())]
    return [(label, f"{value:.4g}" if isinstance(value, float) else value)
            for label, value in rows if value is not None]


def render(report: Report) -> str:
    s = report.summary
    drawn = _draw(report)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["named"] = lambda text: scoring.readable(str(text), report.placeholders)
    slices = sorted(s.metrics.items(), key=lambda kv: (kv[0] != "", kv[0]))
    lengths = [sp for sp in report.splits if sp.has_lengths]
    scored = report.scored
    total = s.metrics.get("", {}).get("example_count")
    failed = [c.name for c in s.components if c.status == "failed"]
    redactions = dict(sorted(s.redactions.items(), key=lambda kv: kv[0] != "train"))
    return env.get_template("report.html.j2").render(
        r=report, s=s, sections=SECTIONS, verdict=_verdict(report), chart=chart,
        number=number, figures=collections.defaultdict(lambda: None, drawn),
        classes=sorted({label for sp in report.splits for label in sp.classes}),
        redactions=redactions,
        redaction_types=sorted({kind for counts in redactions.values() for kind in counts}),
        length_caption="Word pieces per text ([CLS] and [SEP] included), from Transform's "
                       "output: " + ", ".join(f"{sp.name} {sp.lengths_of} rows"
                                              for sp in lengths) + ".",
        training_rows=_training_rows(report),
        metric_names=sorted({m for values in s.metrics.values() for m in values}),
        slices=slices,
        per_class=[(c, dict(v, label=label_of(c, s.labels)))
                   for c, v in sorted(s.per_class.items())],
        support_warning=small_data.low_support_warning(s.per_class, s.labels),
        calibration_caption=(
            f"Reliability diagram of {len(scored.texts)} eval examples; expected calibration "
            f"error {scored.expected_calibration_error():.4f}.") if scored else "",
        scored_of=f" (of {total:.0f})" if total else "",
        card_html=markdown_html(report.model_card) if report.model_card else None,
        stopped_at=", ".join(failed),
        not_run=[c.name for c in s.components if c.status == "not run"])
