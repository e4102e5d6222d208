"""Corrected predictions from the model server's feedback log as the next data span."""
from __future__ import annotations

import csv
import os
import shutil
import tempfile
from typing import Optional

from components.text_example_gen.files import list_spans
from serving.feedback import CORRECTIONS, EXPORTED, PREDICTIONS, append, read_jsonl


def export_span(feedback_dir: str, input_dir: str, span_pattern: str, text_column: str,
                label_column: str, min_rows: int = 1, text_pair_column: str = "",
                label_delimiter: str = "") -> Optional[str]:
    """Writes corrected texts as the next span (``<input_dir>/<span folder>/feedback.tsv``)
    once at least ``min_rows`` are waiting; returns the folder, or None. With
    ``text_pair_column`` (sentence pairs), rows recorded with a pair have it in that
    column; rows recorded without one are left for a later run with no pair column.

    The span appears complete (written aside, then renamed) or not at all; exported ids
    are remembered, so no correction is used twice (a later correction of an exported id is
    not used). Files are only ever appended to, so a server writing at the same time
    loses nothing; a record it is writing, or a torn one, is skipped (``read_jsonl``).
    Several labels (multi-label corrections) are joined with ``label_delimiter``.
    """
    exported_path = os.path.join(feedback_dir, EXPORTED)
    done = set()
    if os.path.exists(exported_path):
        with open(exported_path, encoding="utf-8") as f:
            done = {line.strip() for line in f}
    latest = {c["id"]: c["label"] for c in read_jsonl(os.path.join(feedback_dir, CORRECTIONS))
              if c["id"] not in done}  # the last correction of an id wins
    texts = {p["id"]: [p["text"]] + ([p["text_pair"]] if text_pair_column else [])
             for p in read_jsonl(os.path.join(feedback_dir, PREDICTIONS))
             if p["id"] in latest and ("text_pair" in p) == bool(text_pair_column)}
    if len(texts) < max(1, min_rows):
        return None
    # only the rows exported: a correction whose prediction is gone (retention) never blocks
    latest = {i: _label_field(latest[i], label_delimiter) for i in texts}
    spans = list_spans(input_dir, span_pattern)
    number = spans[-1][0] + 1 if spans else 1
    folder = os.path.join(input_dir, span_pattern.replace("{SPAN}", str(number)))
    os.makedirs(input_dir, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".feedback-", dir=input_dir)
    try:  # on any failure (a full disk): no span, no leftovers, no id marked exported
        with open(os.path.join(staging, "feedback.tsv"), "w", encoding="utf-8",
                  newline="") as f:
            writer = csv.writer(f, delimiter="\t", lineterminator="\n")
            writer.writerow([text_column] + ([text_pair_column] if text_pair_column else [])
                            + [label_column])
            writer.writerows(texts[i] + [latest[i]] for i in sorted(texts))
        size = append(exported_path, "".join(i + "\n" for i in sorted(texts)).encode())
        try:
            os.rename(staging, folder)
        except BaseException:
            os.truncate(exported_path, size)
            raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def _label_field(label, delimiter: str) -> str:
    """A correction's label as the label column holds it."""
    if isinstance(label, str):
        return label
    if len(label) > 1 and not delimiter:
        raise ValueError(f"a correction has several labels {label}, but "
                         "data.label_delimiter is empty: set it as the model was trained")
    return delimiter.join(label)
