"""Reading labelled text files strictly, with errors that name file, line and setting.

Formats: CSV and TSV and JSON Lines (one object per line). Delimited files have a
header row, or none when ``column_names`` names their columns; ``quoting='csv'``
follows RFC 4180 (quoted fields may hold newlines, tabs and doubled quotes),
``quoting='none'`` reads every quote as text, one row per line (GLUE's TSV files).
Columns are picked by name or 0-based position; several text columns are joined
with ``text_separator``; ``text_pair_column`` gives a sentence pair's second text;
``label_delimiter`` splits a label field into several labels (multi-label).
Files are UTF-8, with or without a BOM, with LF or CRLF line ends.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
from typing import Iterator, Optional, Sequence

from models.redaction import excerpt

FORMATS = ("csv", "tsv", "jsonl")
QUOTING = {"csv": csv.QUOTE_MINIMAL, "none": csv.QUOTE_NONE}
_EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl",
               ".json": "jsonl", ".ndjson": "jsonl"}
MAX_REPORTED_PROBLEMS = 20


class InputDataError(ValueError):
    """A data file cannot be ingested; the message names the file and line."""


@dataclasses.dataclass(frozen=True)
class ReaderConfig:
    text_column: str = "text"  # a name or 0-based position; several: comma-separated
    label_column: str = "label"
    file_format: str = "auto"  # auto (from the extension), csv, tsv or jsonl
    column_names: Sequence[str] = ()  # the columns of headerless CSV/TSV files
    quoting: str = "csv"  # csv (RFC 4180) or none (quotes are text)
    text_separator: str = " "  # joins several text columns
    text_pair_column: str = ""  # the second text of a sentence pair (same syntax)
    label_delimiter: str = ""  # splits the label field: several labels per text

    def __post_init__(self):
        object.__setattr__(self, "column_names", tuple(self.column_names))
        if self.quoting not in QUOTING:
            raise ValueError(f"data.quoting must be one of {sorted(QUOTING)}, "
                             f"not '{self.quoting}'")

    @property
    def multi_label(self) -> bool:
        return bool(self.label_delimiter)


@dataclasses.dataclass(frozen=True)
class Record:
    line: int  # 1-based line where the record starts
    text: str
    label: str  # the label field as read (stripped)
    text_pair: Optional[str] = None  # with ReaderConfig.text_pair_column
    labels: tuple = ()  # every label of the row (one unless label_delimiter is set)


def column_refs(setting: str) -> list[str]:
    """'title, description' -> ['title', 'description'] (names or positions)."""
    return [ref.strip() for ref in setting.split(",") if ref.strip()]


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
    if fmt == "jsonl":
        rows = _jsonl_rows(text, config, problems)
    else:
        rows = _delimited_rows(text, "\t" if fmt == "tsv" else ",", config, problems)
    try:
        rows = list(rows)
    except _SettingError as e:
        raise InputDataError(f"{path}: {e}") from None
    records = [record for record in (_record(row, config, problems) for row in rows)
               if record is not None]
    if problems:
        shown = "\n  ".join(problems[:MAX_REPORTED_PROBLEMS])
        more = len(problems) - MAX_REPORTED_PROBLEMS
        raise InputDataError(
            f"{path}: {len(problems)} bad row(s):\n  {shown}"
            + (f"\n  ... and {more} more" if more > 0 else ""))
    if not records:
        raise InputDataError(f"{path}: no data rows (only a header, or empty)")
    return records


def _record(row: tuple, config: ReaderConfig, problems: list[str]) -> Optional[Record]:
    """(line, text, text pair or None, label or list of labels) -> a Record, or None after
    noting the problem."""
    line, text_value, pair, label = row
    if isinstance(label, list):
        labels = [str(value).strip() for value in label]
    else:
        labels = label.split(config.label_delimiter) if config.label_delimiter else [label]
    labels = list(dict.fromkeys(value.strip() for value in labels if value.strip()))
    if not text_value.strip():
        problems.append(f"line {line}: empty text in '{config.text_column}'")
    elif pair is not None and not pair.strip():
        problems.append(f"line {line}: empty text pair in '{config.text_pair_column}'")
    elif not labels:
        problems.append(f"line {line}: missing label in '{config.label_column}'")
    else:
        raw = label if isinstance(label, str) else config.label_delimiter.join(labels)
        return Record(line, text_value, raw.strip(), pair, tuple(labels))
    return None


def _resolve(setting: str, name: str, columns: list[str], source: str) -> list[int]:
    """Indexes of the columns a setting names (names first, then 0-based positions)."""
    indexes, unknown = [], []
    for ref in column_refs(setting):
        if ref in columns:
            indexes.append(columns.index(ref))
        elif ref.isdigit() and int(ref) < len(columns):
            indexes.append(int(ref))
        else:
            unknown.append(ref)
    if unknown or not indexes:
        hint = ("; if the file has no header row, name its columns with data.column_names"
                if source == "the header" else "")
        shown = [excerpt(column) for column in columns]  # a headerless file's first row
        raise _SettingError(
            f"columns {unknown or [setting]} not in {source} {shown}; set {name} to "
            f"column names or 0-based positions{hint}")
    return indexes


def _delimited_rows(text: str, delimiter: str, config: ReaderConfig,
                    problems: list[str]) -> Iterator[tuple]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True,
                        quoting=QUOTING[config.quoting])
    if config.column_names:
        header, source = list(config.column_names), "data.column_names"
    else:
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            return
        except csv.Error as e:
            raise _SettingError(f"line 1: malformed header: {e}{_quote_hint(config)}") \
                from None
        source = "the header"
    text_indexes = _resolve(config.text_column, "data.text_column", header, source)
    label_index = _resolve(config.label_column, "data.label_column", header, source)[0]
    pair_indexes = (_resolve(config.text_pair_column, "data.text_pair_column", header, source)
                    if config.text_pair_column else None)
    start = reader.line_num + 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            problems.append(f"line {start}: malformed row: {e}{_quote_hint(config)}")
            return  # the rest of the file cannot be framed reliably
        if row:  # blank lines are skipped
            if len(row) != len(header):
                named = " (data.column_names)" if config.column_names else ""
                problems.append(f"line {start}: expected {len(header)} fields{named}, found "
                                f"{len(row)}{_field_count_hint(config, row)}")
            else:
                join = config.text_separator.join
                yield (start, join(row[i] for i in text_indexes),
                       None if pair_indexes is None else join(row[i] for i in pair_indexes),
                       row[label_index])
        start = reader.line_num + 1


def _quote_hint(config: ReaderConfig) -> str:
    if config.quoting == "csv":
        return "; if quotes in this file are plain text, set data.quoting none"
    return ""


def _field_count_hint(config: ReaderConfig, row: list[str]) -> str:
    if config.quoting == "csv" and any('"' in field for field in row):
        return (" (quotes in this file may be plain text, as in GLUE's TSV files: set "
                "data.quoting none)")
    if config.quoting == "none":
        return " (a field holds the delimiter? such files need quoting: data.quoting csv)"
    return " (unquoted delimiter or newline?)"


def _jsonl_rows(text: str, config: ReaderConfig,
                problems: list[str]) -> Iterator[tuple]:
    if config.column_names:
        raise _SettingError("data.column_names is for CSV/TSV files without a header; "
                            "JSON Lines objects name their own keys")
    text_keys = column_refs(config.text_column)
    pair_keys = column_refs(config.text_pair_column) if config.text_pair_column else None
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
        texts = [_json_text(obj, keys, config.text_separator, number, problems)
                 for keys in (text_keys, pair_keys)]
        label = _json_label(obj.get(config.label_column), config, number, problems)
        if texts[0] is not None and label is not None and (pair_keys is None
                                                           or texts[1] is not None):
            yield number, texts[0], texts[1], label


def _json_text(obj: dict, keys: Optional[list], separator: str, number: int,
               problems: list[str]) -> Optional[str]:
    if keys is None:
        return None
    values = [obj.get(key) for key in keys]
    bad = [key for key, value in zip(keys, values)
           if value is not None and not isinstance(value, str)]
    if bad:
        problems.append(f"line {number}: '{bad[0]}' is not a string")
        return None
    return separator.join(value for value in values if value)


def _json_label(label, config: ReaderConfig, number: int, problems: list[str]):
    """A string, an integer, or (multi-label) a list of them; None after a problem."""
    scalar = (str, int)
    if isinstance(label, list) and config.multi_label and all(
            isinstance(v, scalar) and not isinstance(v, bool) for v in label):
        return label
    if isinstance(label, list):
        hint = ("" if config.multi_label else
                "; a list of labels needs data.label_delimiter (multi-label)")
        problems.append(f"line {number}: '{config.label_column}' must be a string, an "
                        f"integer or a list of them, found {excerpt(json.dumps(label))}{hint}")
        return None
    if isinstance(label, (dict, float)):
        problems.append(f"line {number}: '{config.label_column}' must be a string "
                        f"or an integer, found {excerpt(json.dumps(label))}")
        return None
    return "" if label is None else str(label)


class _SettingError(Exception):
    """The header or a setting is unusable (the caller adds the file name)."""


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
