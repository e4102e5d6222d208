"""Corrected predictions from the model server's feedback log as the next data span.

The span's one file is written for the pipeline's own reader settings (``data.*``): the
format, the file name ``data.file_pattern`` takes, the header or ``data.column_names``,
the text, pair and label columns (a text is put whole in the first of several text
columns, the others left empty, as the reader joins them); then read back with that
reader, so a span that would read differently from what was corrected is never left. A
correction the settings cannot hold as written (an empty text, a comma in an unquoted
CSV file) is left out, with a warning naming its
prediction id, and stays waiting; the others are exported.

Tested in tests/unit/local/test_feedback_span.py.
"""
from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import logging
import os
import shutil
import tempfile
from typing import TYPE_CHECKING, Optional

from components.text_example_gen.files import list_spans
from components.text_example_gen.parsing import (InputDataError, ReaderConfig, column_refs,
                                                 detect_format, parse, read_alike, read_file)
from serving.feedback import CORRECTIONS, EXPORTED, PREDICTIONS, append, read_jsonl, rewrite
from serving.filesystems import sync

if TYPE_CHECKING:
    from pipeline.config import DataConfig

_TABS_AND_LINE_BREAKS = str.maketrans({"\t": " ", "\r": " ", "\n": " "})


def export_span(feedback_dir: str, data: "DataConfig", min_rows: int = 1,
                model: Optional[str] = None, after: int = 0) -> Optional[str]:
    """Writes corrected texts as the next span of ``data`` (a ``DataConfig``: input_dir,
    span_pattern, the reader settings) once at least ``min_rows`` are waiting; returns
    the folder, or None. With ``data.text_pair_column`` (sentence pairs), rows recorded
    with a pair are exported; rows recorded without one are left for a setup without it.
    ``model``: only predictions of that model name (a server recording several models'
    keeps the others waiting). The span is numbered above the newest span folder and
    above ``after`` (the highest span the run history has seen: a number reused after a
    span was removed would never be seen as new). One text (and pair), case and spaces
    aside, corrected under several ids is written once, with its latest correction; the
    others are marked exported with it.

    The span appears complete (written aside, read back, then renamed) or not at all;
    exported ids are remembered, so no correction is used twice (a later correction of an
    exported id is not used), and an export killed at any point is finished or undone by
    the next (``_recover``). Files are only ever appended to, so a server writing at the
    same time loses nothing; a record it is writing, or a torn one, is skipped
    (``read_jsonl``). Several labels (multi-label corrections) are joined with
    ``data.label_delimiter``. With ``data.quoting`` none, tabs and line breaks in a text
    become spaces (the tokenizer reads them alike). A row the reader would not read back
    as written is left out, with a warning naming its prediction id.
    """
    name = data.feedback_file()  # refuses settings no feedback span fits
    if not os.path.isdir(feedback_dir):
        return None
    with _export_lock(feedback_dir) as held:
        if not held:
            logging.warning("feedback: another export is under way in %s; not exporting",
                            feedback_dir)
            return None
        _recover(feedback_dir, data.input_dir)
        return _export(feedback_dir, data, name, min_rows, model, after)


def _export(feedback_dir: str, data: "DataConfig", name: str, min_rows: int,
            model: Optional[str], after: int) -> Optional[str]:
    reader, fmt = data.reader_config(), detect_format(name, data.file_format)
    exported_path = os.path.join(feedback_dir, EXPORTED)
    done = _exported(exported_path)
    latest, when = {}, {}  # the last correction of an id wins
    for position, c in enumerate(read_jsonl(os.path.join(feedback_dir, CORRECTIONS))):
        if c["id"] not in done:
            latest[c["id"]], when[c["id"]] = c["label"], position
    corrected = [p for p in read_jsonl(os.path.join(feedback_dir, PREDICTIONS))
                 if p["id"] in latest and ("text_pair" in p) == reader.text_pair]
    predictions = {p["id"]: p for p in corrected if model is None or p.get("model") == model}
    others = sorted({str(p.get("model")) for p in corrected} - {model})
    if model is not None and others:  # a server started with another --model_name?
        logging.warning("feedback: %d corrections of model(s) %s wait: this pipeline exports "
                        "those of output.model_name '%s' only", len(corrected) -
                        len(predictions), ", ".join(others), model)
    rows = _writable({i: _row(p, latest[i], reader) for i, p in predictions.items()},
                     name, fmt, reader)
    rows, superseded = _latest_per_text(rows, predictions, when)
    if len(rows) < max(1, min_rows):
        return None
    ids = sorted(rows)  # only the rows exported: a correction whose prediction is gone
    spans = list_spans(data.input_dir, data.span_pattern)  # (retention) never blocks
    number = max(spans[-1][0] if spans else 0, after) + 1
    folder = os.path.join(data.input_dir, data.span_pattern.replace("{SPAN}", str(number)))
    os.makedirs(data.input_dir, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=data.input_dir)
    pending = os.path.join(feedback_dir, PENDING)
    try:  # on any failure before the rename (a full disk): no span, no id marked exported
        path = os.path.join(staging, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(_file_text([rows[i] for i in ids], fmt, reader))
        sync(path)  # on disk before anything says it is exported
        _check_reads_back(path, ids, [rows[i] for i in ids], reader)
        sync(os.path.dirname(path))
        rewrite(pending, [{"staging": staging, "span": folder, "file": name,
                           "ids": ids + superseded}], durable=True)
        os.rename(staging, folder)
    except BaseException:
        if os.path.exists(pending):  # first: a record whose span is gone must not survive
            os.remove(pending)
        shutil.rmtree(staging, ignore_errors=True)
        raise
    sync(data.input_dir)  # the rename on disk; then the ids (a failure: _recover)
    _mark_exported(exported_path, pending, ids + superseded)
    return folder


def _latest_per_text(rows: dict, predictions: dict, when: dict):
    """(rows with one id per text and pair, case and spaces aside: the latest corrected;
    the ids of the others, sorted)."""
    def key(i):
        p = predictions[i]
        return tuple(read_alike(p.get(name) or "") for name in ("text", "text_pair"))
    kept: dict = {}
    for i in sorted(rows, key=lambda i: when[i]):
        kept[key(i)] = i  # a later correction of the same text replaces the earlier
    chosen = set(kept.values())
    if len(chosen) < len(rows):
        logging.warning("feedback: %d corrections of texts corrected again later (case and "
                        "spaces aside) are not exported; the latest of each is",
                        len(rows) - len(chosen))
    return {i: rows[i] for i in chosen}, sorted(set(rows) - chosen)


STAGING_PREFIX = ".feedback-"  # in data.input_dir: a span being written
PENDING = ".exporting.jsonl"  # in the feedback folder: the export under way (span, ids)
LOCK = ".export.lock"  # in the feedback folder: one export at a time


@contextlib.contextmanager
def _export_lock(feedback_dir: str):
    """Yields whether this process holds the feedback folder's export lock (not waited
    for: a scheduler tick beside another simply skips its export)."""
    fd = os.open(os.path.join(feedback_dir, LOCK), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # releases the lock


def _exported(exported_path: str) -> set:
    """The ids marked exported: whole lines only (a torn last line is not marked)."""
    if not os.path.exists(exported_path):
        return set()
    with open(exported_path, "rb") as f:
        lines = f.read().split(b"\n")[:-1]  # the part after the last newline is torn
    return {line.decode("utf-8").strip() for line in lines if line.strip()}


def _mark_exported(exported_path: str, pending: str, ids: list) -> None:
    """Appends the ``ids`` not yet marked, then drops the record of the export."""
    done = _exported(exported_path)
    append(exported_path, "".join(i + "\n" for i in ids if i not in done).encode())
    os.remove(pending)


def _recover(feedback_dir: str, input_dir: str) -> None:
    """Finishes or undoes an export that was stopped (killed, or a full disk): a span in
    place gets its ids marked exported; otherwise the record goes and its rows stay
    waiting. Staging folders left behind are removed (under the lock no export is
    writing one)."""
    pending = os.path.join(feedback_dir, PENDING)
    if os.path.exists(pending):
        with open(pending, encoding="utf-8") as f:
            record = json.load(f)  # written whole (rewrite)
        if os.path.exists(os.path.join(record["span"], record["file"])) \
                and not os.path.exists(record["staging"]):
            _mark_exported(os.path.join(feedback_dir, EXPORTED), pending, record["ids"])
            logging.warning("feedback: marked the %d rows of %s exported (its export was "
                            "stopped before it could)", len(record["ids"]), record["span"])
        else:
            os.remove(pending)
    if os.path.isdir(input_dir):
        for leftover in os.listdir(input_dir):
            if leftover.startswith(STAGING_PREFIX):
                shutil.rmtree(os.path.join(input_dir, leftover))


def _row(prediction: dict, label, reader: ReaderConfig) -> tuple:
    """(text, pair or None, label field) of one corrected prediction."""
    return (prediction["text"], prediction.get("text_pair") if reader.text_pair else None,
            _label_field(label, reader.label_delimiter))


def _label_field(label, delimiter: str) -> Optional[str]:
    """A correction's label as the label column holds it; None for several labels with
    data.label_delimiter empty (the row cannot be written: _writable leaves it out)."""
    if isinstance(label, str):
        return label
    if len(label) > 1 and not delimiter:
        return None
    return delimiter.join(label)


def _writable(rows: dict, name: str, fmt: str, reader: ReaderConfig) -> dict:
    """The ``rows`` (by prediction id) the file can hold as they are: each written alone and
    read back with the reader. Without quoting, tabs and line breaks become spaces first."""
    if fmt != "jsonl" and reader.quoting == "none":
        rows = {i: tuple(None if v is None else v.translate(_TABS_AND_LINE_BREAKS) for v in row)
                for i, row in rows.items()}
    kept = {i: row for i, row in rows.items() if _reads_back(row, name, fmt, reader)}
    left_out = sorted(set(rows) - set(kept))
    if left_out:
        logging.warning(
            "%d corrected text(s) cannot be written as the data.* reader settings read them "
            "(an empty text, a comma in a CSV file with data.quoting none, or several "
            "labels with data.label_delimiter empty): "
            "left out of the feedback span, still waiting; prediction ids %s",
            len(left_out), ", ".join(left_out[:20]))
    return kept


def _reads_back(row: tuple, name: str, fmt: str, reader: ReaderConfig) -> bool:
    if row[2] is None:  # no label field the settings can hold (_label_field)
        return False
    try:
        records = parse(name, _file_text([row], fmt, reader).encode("utf-8"), reader)
    except (InputDataError, csv.Error):
        return False
    return _as_rows(records) == [row]


def _file_text(rows: list, fmt: str, reader: ReaderConfig) -> str:
    """(text, pair, label) rows as the text of a ``fmt`` file the reader reads: JSON Lines,
    or delimited with a header (or ``column_names``' order) and the reader's quoting."""
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

    def index(ref: str) -> int:  # names first, then 0-based positions, as the reader
        return columns.index(ref) if ref in columns else int(ref)

    out = io.StringIO()
    delimiter = "\t" if fmt == "tsv" else ","
    if reader.quoting == "csv":
        writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
        # a lone carriage return is a line end to the reader: quote every field of its row
        quoted = csv.writer(out, delimiter=delimiter, lineterminator="\n",
                            quoting=csv.QUOTE_ALL)
    else:  # fields free of tabs and line breaks (_writable); a CSV comma fails read-back
        writer = quoted = csv.writer(out, delimiter=delimiter, lineterminator="\n",
                                     quoting=csv.QUOTE_NONE, quotechar=None)
    if not reader.column_names:
        writer.writerow(columns)
    for text, pair, label in rows:
        fields = [""] * len(columns)
        fields[index(text_keys[0])] = text
        if pair_keys:
            fields[index(pair_keys[0])] = pair
        fields[index(label_key)] = label
        (quoted if any("\r" in field for field in fields) else writer).writerow(fields)
    return out.getvalue()


def _check_reads_back(path: str, ids: list, rows: list, reader: ReaderConfig) -> None:
    """Refuses a file the pipeline's reader would read as other texts or labels (each row
    alone read back already: this guards the rows together)."""
    records = _as_rows(read_file(path, reader))
    if records != rows:  # the texts themselves stay out of the message (personal data)
        wrong = next((i for i, (got, want) in enumerate(zip(records, rows)) if got != want),
                     min(len(records), len(rows) - 1))
        raise ValueError(
            f"the feedback span would not read back as written with the data.* reader "
            f"settings ({len(records)} rows read of {len(rows)} written; first difference at "
            f"prediction id {ids[wrong]}); nothing was exported")


def _as_rows(records: list) -> list:
    """The reader's records as the (text, pair, label) rows the export writes."""
    return [(r.text, r.text_pair, r.label) for r in records]
