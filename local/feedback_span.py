"""Corrected predictions from the model server's feedback log as the next data span.

The span's one file is written for the pipeline's own reader settings (``data.*``): the
format, the file name ``data.file_pattern`` takes, the header or ``data.column_names``,
the text, pair and label columns (a text is put whole in the first of several text
columns, the others left empty, as the reader joins them); then read back with that
reader, so a span that would read differently from what was corrected is never left.

Tested in tests/unit/local/test_feedback_span.py.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import os
import shutil
import tempfile
from typing import Optional

from components.text_example_gen.files import list_spans
from components.text_example_gen.parsing import (ReaderConfig, column_refs, detect_format,
                                                 read_file)
from serving.feedback import CORRECTIONS, EXPORTED, PREDICTIONS, append, read_jsonl

_LINE_BREAKS = str.maketrans({"\t": " ", "\r": " ", "\n": " "})


def export_span(feedback_dir: str, data, min_rows: int = 1) -> Optional[str]:
    """Writes corrected texts as the next span of ``data`` (a ``DataConfig``: input_dir,
    span_pattern, the reader settings) once at least ``min_rows`` are waiting; returns
    the folder, or None. With ``data.text_pair_column`` (sentence pairs), rows recorded
    with a pair are exported; rows recorded without one are left for a setup without it.

    The span appears complete (written aside, read back, then renamed) or not at all;
    exported ids are remembered, so no correction is used twice (a later correction of an
    exported id is not used). Files are only ever appended to, so a server writing at the
    same time loses nothing; a record it is writing, or a torn one, is skipped
    (``read_jsonl``). Several labels (multi-label corrections) are joined with
    ``data.label_delimiter``. With ``data.quoting`` none, tabs and line breaks in a text
    become spaces (the tokenizer reads them alike); a text holding the CSV delimiter then
    cannot be written and is left out, with a warning.
    """
    name = data.feedback_file()  # refuses settings no feedback span fits
    reader = ReaderConfig(**data.reader_settings())
    exported_path = os.path.join(feedback_dir, EXPORTED)
    done = set()
    if os.path.exists(exported_path):
        with open(exported_path, encoding="utf-8") as f:
            done = {line.strip() for line in f}
    latest = {c["id"]: c["label"] for c in read_jsonl(os.path.join(feedback_dir, CORRECTIONS))
              if c["id"] not in done}  # the last correction of an id wins
    rows = {p["id"]: _row(p, latest[p["id"]], reader)
            for p in read_jsonl(os.path.join(feedback_dir, PREDICTIONS))
            if p["id"] in latest and ("text_pair" in p) == reader.text_pair}
    rows = _writable(rows, detect_format(name, reader.file_format), reader)
    if len(rows) < max(1, min_rows):
        return None
    ids = sorted(rows)  # only the rows exported: a correction whose prediction is gone
    spans = list_spans(data.input_dir, data.span_pattern)  # (retention) never blocks
    number = spans[-1][0] + 1 if spans else 1
    folder = os.path.join(data.input_dir, data.span_pattern.replace("{SPAN}", str(number)))
    os.makedirs(data.input_dir, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".feedback-", dir=data.input_dir)
    try:  # on any failure (a full disk): no span, no leftovers, no id marked exported
        path = os.path.join(staging, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(_file_text([rows[i] for i in ids], detect_format(name, reader.file_format),
                               reader))
        _check_reads_back(path, [rows[i] for i in ids], reader)
        size = append(exported_path, "".join(i + "\n" for i in ids).encode())
        try:
            os.rename(staging, folder)
        except BaseException:
            os.truncate(exported_path, size)
            raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def _row(prediction: dict, label, reader: ReaderConfig) -> tuple:
    """(text, pair or None, label field) of one corrected prediction."""
    return (prediction["text"], prediction.get("text_pair") if reader.text_pair else None,
            _label_field(label, reader.label_delimiter))


def _label_field(label, delimiter: str) -> str:
    """A correction's label as the label column holds it."""
    if isinstance(label, str):
        return label
    if len(label) > 1 and not delimiter:
        raise ValueError(f"a correction has several labels {label}, but "
                         "data.label_delimiter is empty: set it as the model was trained")
    return delimiter.join(label)


def _writable(rows: dict, fmt: str, reader: ReaderConfig) -> dict:
    """``rows`` as the file can hold them: unquoted fields without tabs or line breaks,
    and without a comma in a CSV file (those rows left out, with a warning)."""
    if fmt == "jsonl" or reader.quoting == "csv":
        return rows
    clean = {i: tuple(None if v is None else v.translate(_LINE_BREAKS) for v in row)
             for i, row in rows.items()}
    kept = {i: row for i, row in clean.items()
            if fmt == "tsv" or not any(v and "," in v for v in row)}
    if len(kept) < len(clean):
        logging.warning("%d corrected text(s) hold a comma, which a CSV file with "
                        "data.quoting none cannot hold: left out of the feedback span "
                        "(data.quoting csv can hold them)", len(clean) - len(kept))
    return kept


def _file_text(rows: list, fmt: str, reader: ReaderConfig) -> str:
    text_keys, pair_keys = column_refs(reader.text_column), column_refs(reader.text_pair_column)
    label_key = column_refs(reader.label_column)[0]
    if fmt == "jsonl":
        def obj(text, pair, label):  # the other text keys null: the reader leaves them out
            values = dict.fromkeys(text_keys + pair_keys)
            values.update({text_keys[0]: text, label_key: label})
            if pair_keys:
                values[pair_keys[0]] = pair
            return json.dumps(values, ensure_ascii=False) + "\n"
        return "".join(obj(*row) for row in rows)
    columns = reader.column_names or list(dict.fromkeys(text_keys + pair_keys + [label_key]))
    index = lambda ref: columns.index(ref) if ref in columns else int(ref)  # noqa: E731
    out = io.StringIO()
    delimiter = "\t" if fmt == "tsv" else ","
    if reader.quoting == "csv":
        writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    else:  # every field already free of the delimiter and line breaks (_writable)
        writer = csv.writer(out, delimiter=delimiter, lineterminator="\n",
                            quoting=csv.QUOTE_NONE, quotechar=None)
    if not reader.column_names:
        writer.writerow(columns)
    for text, pair, label in rows:
        fields = [""] * len(columns)
        fields[index(text_keys[0])] = text
        if pair_keys:
            fields[index(pair_keys[0])] = pair
        fields[index(label_key)] = label
        writer.writerow(fields)
    return out.getvalue()


def _check_reads_back(path: str, rows: list, reader: ReaderConfig) -> None:
    """Refuses a file the pipeline's reader would read as other texts or labels."""
    records = [(r.text, r.text_pair, r.label) for r in read_file(path, reader)]
    if records != rows:  # the texts themselves stay out of the message (personal data)
        wrong = next((i for i, (got, want) in enumerate(zip(records, rows)) if got != want),
                     min(len(records), len(rows)))
        raise ValueError(
            f"the feedback span would not read back as written with the data.* reader "
            f"settings ({len(records)} rows read of {len(rows)} written; row {wrong + 1} "
            f"differs); nothing was exported")
