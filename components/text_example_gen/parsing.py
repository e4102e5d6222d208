"""Reading labelled text files strictly, with errors that name file and line.

Formats: CSV and TSV (header row, RFC 4180 quoting: quoted fields may hold
newlines, tabs and doubled quotes) and JSON Lines (one object per line).
Files are UTF-8, with or without a BOM, with LF or CRLF line ends.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
from typing import Iterator

FORMATS = ("csv", "tsv", "jsonl")
_EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl",
               ".json": "jsonl", ".ndjson": "jsonl"}
MAX_REPORTED_PROBLEMS = 20


class InputDataError(ValueError):
    """A data file cannot be ingested; the message names the file and line."""


@dataclasses.dataclass(frozen=True)
class ReaderConfig:
    text_column: str = "text"
    label_column: str = "label"
    file_format: str = "auto"  # auto (from the extension), csv, tsv or jsonl


@dataclasses.dataclass(frozen=True)
class Record:
    line: int  # 1-based line where the record starts
    text: str
    label: str


def detect_format(path: str, configured: str = "auto") -> str:
    if configured != "auto":
        if configured not in FORMATS:
            raise InputDataError(f"unknown file format '{configured}' (one of {FORMATS})")
        return configured
    ext = os.path.splitext(path)[1].lower()
    if ext not in _EXTENSIONS:
        raise InputDataError(
            f"{path}: cannot tell the format from the extension '{ext}'; use .csv, "
            f".tsv or .jsonl, or set data.file_format")
    return _EXTENSIONS[ext]


def decode(path: str, data: bytes) -> str:
    """UTF-8 bytes (optional BOM) -> str, or an error naming the line."""
    nul = data.find(b"\x00")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise InputDataError(
            f"{path}: not a text file (NUL byte at offset {nul}, line {line})")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise InputDataError(
            f"{path}: line {line}: invalid UTF-8 (byte 0x{data[e.start]:02x} at "
            f"offset {e.start}); re-encode the file as UTF-8") from None


def parse(path: str, data: bytes, config: ReaderConfig) -> list[Record]:
    """All records of one file; raises InputDataError listing every bad row."""
    fmt = detect_format(path, config.file_format)
    text = decode(path, data)
    problems: list[str] = []
    rows = _jsonl_rows(text, config, problems) if fmt == "jsonl" else _delimited_rows(
        text, "\t" if fmt == "tsv" else ",", config, problems)
    records = []
    try:
        rows = list(rows)
    except _HeaderError as e:
        raise InputDataError(f"{path}: {e}") from None
    for line, text_value, label in rows:
        if not text_value.strip():
            problems.append(f"line {line}: empty text in '{config.text_column}'")
        elif not label.strip():
            problems.append(f"line {line}: missing label in '{config.label_column}'")
        else:
            records.append(Record(line, text_value, label.strip()))
    if problems:
        shown = "\n  ".join(problems[:MAX_REPORTED_PROBLEMS])
        more = len(problems) - MAX_REPORTED_PROBLEMS
        raise InputDataError(
            f"{path}: {len(problems)} bad row(s):\n  {shown}"
            + (f"\n  ... and {more} more" if more > 0 else ""))
    if not records:
        raise InputDataError(f"{path}: no data rows (only a header, or empty)")
    return records


def _delimited_rows(text: str, delimiter: str, config: ReaderConfig,
                    problems: list[str]) -> Iterator[tuple[int, str, str]]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as e:
        raise _HeaderError(f"line 1: malformed header: {e}") from None
    header = [h.strip() for h in header]
    missing = [c for c in (config.text_column, config.label_column) if c not in header]
    if missing:
        raise _HeaderError(f"columns {missing} not in the header {header}; set "
                           f"data.text_column / data.label_column")
    text_index = header.index(config.text_column)
    label_index = header.index(config.label_column)
    start = reader.line_num + 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            problems.append(f"line {start}: malformed row: {e}")
            return  # the rest of the file cannot be framed reliably
        if row:  # blank lines are skipped
            if len(row) != len(header):
                problems.append(f"line {start}: expected {len(header)} fields, found "
                                f"{len(row)} (unquoted delimiter or newline?)")
            else:
                yield start, row[text_index], row[label_index]
        start = reader.line_num + 1


def _jsonl_rows(text: str, config: ReaderConfig,
                problems: list[str]) -> Iterator[tuple[int, str, str]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            problems.append(f"line {number}: invalid JSON: {e.msg} (column {e.colno})")
            continue
        if not isinstance(obj, dict):
            problems.append(f"line {number}: expected a JSON object, found {type(obj).__name__}")
            continue
        text_value, label = obj.get(config.text_column), obj.get(config.label_column)
        if text_value is not None and not isinstance(text_value, str):
            problems.append(f"line {number}: '{config.text_column}' is not a string")
            continue
        if isinstance(label, (dict, list, float)):
            problems.append(f"line {number}: '{config.label_column}' must be a string "
                            f"or an integer, found {json.dumps(label)}")
            continue
        yield number, text_value or "", "" if label is None else str(label)


class _HeaderError(Exception):
    """The header row is unusable (the caller adds the file name)."""


def read_file(path: str, config: ReaderConfig, opener=None) -> list[Record]:
    """Reads and parses one file (``opener`` defaults to ``open``; Beam passes its own)."""
    opener = opener or (lambda p: open(p, "rb"))
    with opener(path) as f:
        return parse(path, f.read(), config)


def split_buckets(eval_fraction: float) -> tuple[int, int]:
    """Hash buckets (train, eval) for an eval fraction, e.g. 0.1 -> (9, 1) out of 10."""
    if not 0 < eval_fraction < 1:
        raise ValueError(f"eval_fraction must be in (0, 1), got {eval_fraction}")
    eval_buckets = round(eval_fraction * 100)
    return 100 - eval_buckets, eval_buckets
