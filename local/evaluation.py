"""The Evaluator's output as the run summary shows it: per-class figures and the
confusion matrix as text lines. Reading TFMA's files is components/eval_results.py's job
(the model card component and the run report read them too).

Tested by tests/unit/components/test_eval_results.py; end to end:
tests/e2e/test_pipeline.py.
"""
from __future__ import annotations

from typing import Sequence

from components.eval_results import label_of

CORNER = "true \\ predicted"


def per_class_lines(per_class: dict, labels: Sequence[str]) -> list:
    width = max([len("class")] + [len(label_of(c, labels)) for c in per_class]) + 2
    lines = [f"  {'class':<{width}}{'precision':>10}{'recall':>9}{'f1':>9}{'support':>9}"]
    for class_id in sorted(per_class):
        v = per_class[class_id]
        lines.append(f"  {label_of(class_id, labels):<{width}}{v.get('precision', 0):>10.4f}"
                     f"{v.get('recall', 0):>9.4f}{v.get('f1', 0):>9.4f}"
                     f"{v.get('support', 0):>9.0f}")
    return lines


def confusion_lines(confusion: dict, labels: Sequence[str]) -> list:
    """Rows: true class; columns: predicted class."""
    ids = sorted({c for pair in confusion for c in pair if c >= 0})
    names = [label_of(c, labels) for c in ids]
    width = max([len(CORNER)] + [len(n) for n in names]) + 2
    cell = max([8] + [len(n) + 2 for n in names])
    lines = [f"  {CORNER:<{width}}" + "".join(f"{n:>{cell}}" for n in names)]
    for actual, name in zip(ids, names):
        lines.append(f"  {name:<{width}}" + "".join(
            f"{confusion.get((actual, predicted), 0):>{cell}.0f}" for predicted in ids))
    return lines
