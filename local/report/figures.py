"""The report's charts, drawn with matplotlib (no pyplot: figures are not shown
anywhere) and embedded as inline SVG without external references."""
from __future__ import annotations

import io
import re
from typing import Sequence

import numpy as np
from matplotlib import rc_context
from matplotlib.figure import Figure

from components.eval_results import label_of

STYLE = {"svg.fonttype": "none", "svg.hashsalt": "report", "font.size": 9,
         "axes.spines.top": False, "axes.spines.right": False}
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")
# Whatever names an outside document in matplotlib's SVG: the XML prolog, the DOCTYPE,
# the metadata block and namespace declarations (HTML needs none of them inline).
_EXTERNAL = re.compile(r"<\?xml[^>]*\?>|<!DOCTYPE[^>]*>|<metadata>.*?</metadata>|"
                       r"\s+xmlns(:\w+)?=\"[^\"]*\"", re.S)


def to_svg(figure: Figure) -> str:
    buffer = io.StringIO()
    with rc_context(STYLE):
        figure.savefig(buffer, format="svg", bbox_inches="tight",
                       metadata={"Date": None, "Creator": None, "Format": None,
                                 "Type": None})
    svg = _EXTERNAL.sub("", buffer.getvalue()).strip()
    return svg.replace("<svg ", '<svg role="img" ', 1)


def _figure(width: float = 6.4, height: float = 3.0, columns: int = 1):
    with rc_context(STYLE):
        figure = Figure(figsize=(width, height))
        axes = figure.subplots(1, columns)
    return figure, axes


def class_shares(splits: Sequence) -> str:
    """Share of rows per class, one bar per split."""
    with rc_context(STYLE):
        figure, axes = _figure(height=0.5 + 0.35 * max(len(s.classes) for s in splits))
        labels = sorted({label for s in splits for label in s.classes})
        height = 0.8 / len(splits)
        for i, split in enumerate(splits):
            total = sum(split.classes.values()) or 1
            shares = [100 * split.classes.get(label, 0) / total for label in labels]
            axes.barh(np.arange(len(labels)) + i * height, shares, height,
                      label=f"{split.name} ({split.rows} rows)", color=COLORS[i % 6])
        axes.set_yticks(np.arange(len(labels)) + height * (len(splits) - 1) / 2, labels)
        axes.set_xlabel("% of the split's label values")
        axes.legend(loc="best", frameon=False)
        return to_svg(figure)


def length_histogram(splits: Sequence) -> str:
    """Word pieces per text ([CLS]/[SEP] included), share of each split's rows."""
    with rc_context(STYLE):
        figure, axes = _figure()
        drawn = [s for s in splits if s.has_lengths]
        top = max(int(s.lengths.max()) for s in drawn)
        edges = np.linspace(0, top + 1, min(top + 1, 60) + 1)
        for i, split in enumerate(drawn):
            axes.hist(split.lengths, bins=edges, density=True, histtype="step",
                      linewidth=1.5, color=COLORS[i % 6],
                      label=f"{split.name} (median {np.median(split.lengths):.0f})")
        axes.set_xlabel("word pieces per text")
        axes.set_ylabel("share of rows")
        axes.legend(frameon=False)
        return to_svg(figure)


def training_curves(series_by_metric: dict) -> str:
    """One panel per metric (loss, accuracy): every series against the training step."""
    with rc_context(STYLE):
        metrics = [m for m, series in series_by_metric.items() if series]
        figure, axes = _figure(width=3.4 * len(metrics), columns=len(metrics))
        for panel, metric in zip(np.atleast_1d(axes), metrics):
            for i, (label, points) in enumerate(series_by_metric[metric].items()):
                steps, values = zip(*points)
                panel.plot(steps, values, marker="o" if len(points) < 12 else None,
                           markersize=3, color=COLORS[i % 6], label=label)
            panel.set_xlabel("training step")
            panel.set_title(metric)
            panel.legend(frameon=False, fontsize=7)
        return to_svg(figure)


def candidate_vs_baseline(candidate: dict, baseline: dict) -> str:
    """Overall metrics in [0, 1] of both models side by side."""
    with rc_context(STYLE):
        names = sorted(n for n, v in candidate.items() if not n.endswith("example_count")
                       and 0.0 <= v <= 1.0)
        figure, axes = _figure(height=0.6 + 0.3 * len(names))
        y = np.arange(len(names))
        axes.barh(y + 0.2, [candidate[n] for n in names], 0.4, label="candidate",
                  color=COLORS[0])
        if baseline:
            axes.barh(y - 0.2, [baseline.get(n, 0.0) for n in names], 0.4,
                      label="baseline", color=COLORS[1])
        axes.set_yticks(y, names)
        axes.set_xlim(0, 1)
        axes.legend(loc="best", frameon=False)
        return to_svg(figure)


def confusion_matrix(confusion: dict, labels: Sequence[str]) -> str:
    """Rows: true class; columns: predicted class; cells: eval examples."""
    with rc_context(STYLE):
        ids = sorted({c for pair in confusion for c in pair if c >= 0})
        names = [label_of(c, labels) for c in ids]
        cells = np.array([[confusion.get((a, p), 0) for p in ids] for a in ids])
        side = 1.2 + 0.6 * len(ids)
        figure, axes = _figure(width=side + 1, height=side)
        axes.imshow(cells, cmap="Blues")
        for (row, column), count in np.ndenumerate(cells):
            axes.text(column, row, f"{count:.0f}", ha="center", va="center",
                      color="white" if count > cells.max() / 2 else "black")
        axes.set_xticks(range(len(ids)), names, rotation=30, ha="right")
        axes.set_yticks(range(len(ids)), names)
        axes.set_xlabel("predicted")
        axes.set_ylabel("true")
        return to_svg(figure)


def reliability(rows: Sequence, multi_label: bool) -> str:
    """Accuracy against confidence per bin (a calibrated model follows the diagonal),
    and how many rows each bin holds."""
    with rc_context(STYLE):
        figure, (curve, counts) = _figure(width=6.8, columns=2)
        lows, highs, sizes, confidences, accuracies = zip(*rows)
        widths = np.array(highs) - np.array(lows)
        curve.bar(lows, accuracies, widths, align="edge", color=COLORS[0], alpha=0.7,
                  edgecolor="white", label="observed")
        curve.plot([0, 1], [0, 1], linestyle="--", color="grey", label="calibrated")
        curve.plot(confidences, accuracies, marker="o", color=COLORS[3], markersize=3)
        curve.set_xlim(0, 1)
        curve.set_ylim(0, 1)
        what = "label score" if multi_label else "top-class probability"
        curve.set_xlabel(what)
        curve.set_ylabel("share true" if multi_label else "accuracy")
        curve.legend(frameon=False, loc="upper left")
        counts.bar(lows, sizes, widths, align="edge", color=COLORS[2], edgecolor="white")
        counts.set_xlim(0, 1)
        counts.set_xlabel(what)
        counts.set_ylabel("rows" if not multi_label else "(row, label) pairs")
        return to_svg(figure)
