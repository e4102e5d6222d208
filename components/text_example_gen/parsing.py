"""Reading labelled text files strictly, with errors that name file, line and setting.

Formats: CSV and TSV and JSON Lines (one object per line). Delimited files have a
header row, or none when ``column_names`` names their columns; ``quoting='csv'``
follows RFC 4180 (quoted fields may hold newlines, tabs and doubled quotes),
``quoting='none'`` reads every quote as text, one row per line (GLUE's TSV files).
Columns are picked by name or 0-based position; several text columns are joined
with ``text_separator``, empty ones (or JSON nulls) left out, as served models join
them (models/export.py); ``text_pair_column`` gives a sentence pair's second text;
``label_delimiter`` splits a label field into several labels (multi-label).
Files are UTF-8, with or without a BOM, with LF or CRLF line ends (CR alone where the
first line ends with one); lines are counted, and a JSON Lines file is split, at LF only
(a raw U+2028 or form feed inside a string is text). A file is read as a stream
(``read_records``), ``CHUNK_BYTES`` at a time: memory holds a record, not the file.
"""
from __future__ import annotations

import codecs
import collections
import csv
import dataclasses
import fnmatch
import functools
import io
import json
import os
import re
from typing import Iterator, Optional, Sequence, Tuple

from models.redaction import excerpt, excerpt_patterns, excerpts_replacing

FORMATS = ("csv", "tsv", "jsonl")
QUOTING = {"csv": csv.QUOTE_MINIMAL, "none": csv.QUOTE_NONE}
_EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl",
               ".json": "jsonl", ".ndjson": "jsonl"}
MAX_REPORTED_PROBLEMS = 20
CHUNK_BYTES = 1 << 18  # read from a data file at a time (memory holds a few times it)
# Byte order marks of encodings that are not UTF-8 (the longer ones first).
_UTF8_BOM = b"\xef\xbb\xbf"
_OTHER_BOMS = ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"),
               (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16"))
# Magic numbers of compressed files: the reader takes plain text only.
_COMPRESSED = ((re.compile(rb"\x1f\x8b"), "gzip"), (re.compile(rb"PK\x03\x04"), "zip"),
               (re.compile(rb"BZh[1-9]1AY&SY"), "bzip2"),
               (re.compile(rb"\xfd7zXZ\x00"), "xz"), (re.compile(rb"\x28\xb5\x2f\xfd"), "zstd"))
_COMPRESSED_EXTENSIONS = (".gz", ".zip", ".bz2", ".xz", ".zst", ".7z", ".tgz")
# A field may be as long as a file (long documents are truncated by the model, not here);
# Python's default limit of 131,072 characters refused them with a misleading error.
csv.field_size_limit(2**31 - 1)
_JSON_PURPOSE = {"data.text_column": "the text", "data.text_pair_column": "the second text",
                 "data.label_column": "the label"}


class InputDataError(ValueError):
    """A data file cannot be ingested; the message names the file and line."""


@dataclasses.dataclass
class ReaderConfig:
    """How to read labelled text files: the format, and the columns that hold the text, the
    second text of a pair and the label.

    The one declaration of the reader settings, each with its default and help: the
    pipeline's ``data.<field>`` settings (``pipeline.config.DataConfig`` extends this class)
    and ``bert-pipeline score``'s ``--<field>`` flags. Components receive it as
    ``to_json()`` text and read it back with ``from_json``.

    Attributes:
        Each field's ``help`` metadata says what it holds (``--help`` prints it, and
        ``python -m pipeline.config_reference`` writes it into docs/configuration.md).

    Raises:
        ValueError: a setting no file can be read with (an unknown quoting, an empty
            column, several label columns), named as ``data.<field>``.
    """

    # first, where --help has always listed it; keyword-only, so that text_column and
    # label_column stay the first positional arguments
    file_format: str = dataclasses.field(default="auto", kw_only=True, metadata={
        "help": "auto (from the extension), csv, tsv or jsonl."})
    text_column: str = dataclasses.field(default="sentence", metadata={
        "help": "Column (or JSON key) holding the text: a name or a 0-based position; "
                "several, comma-separated (e.g. 'title,description'), are joined with "
                "text_separator."})
    label_column: str = dataclasses.field(default="label", metadata={
        "help": "Column (or JSON key) holding the label: a name or a 0-based position."})
    column_names: list = dataclasses.field(default_factory=list, metadata={
        "help": "Names of the columns of CSV/TSV files without a header row, separated by "
                "commas or spaces (empty: the first row is the header)."})
    quoting: str = dataclasses.field(default="csv", metadata={
        "choices": tuple(QUOTING),
        "help": "csv: fields may be double-quoted (RFC 4180); none: quotes are plain text "
                "and every line is a row (GLUE-style TSV)."})
    text_separator: str = dataclasses.field(default=" ", metadata={
        "help": "Joins several text columns into one text."})
    text_pair_column: str = dataclasses.field(default="", metadata={
        "help": "Column (or JSON key) with the second text of a sentence pair, same syntax "
                "as text_column; empty: single texts."})
    label_delimiter: str = dataclasses.field(default="", metadata={
        "help": "Splits the label field into several labels, e.g. '|' (multi-label: sigmoid "
                "outputs per label); empty: one label per text."})

    def __post_init__(self):
        self.column_names = list(self.column_names)
        if self.quoting not in QUOTING:
            raise ValueError(f"data.quoting must be one of {sorted(QUOTING)}, "
                             f"not '{self.quoting}'")
        if self.file_format != "auto" and self.file_format not in FORMATS:
            raise ValueError(f"data.file_format must be auto, {', '.join(FORMATS[:-1])} or "
                             f"{FORMATS[-1]}, not '{self.file_format}'")
        for name, setting in (("data.text_column", self.text_column),
                              ("data.label_column", self.label_column)):
            if not column_refs(setting):
                raise ValueError(f"{name} is empty: name a column (or a 0-based position)")
        if len(column_refs(self.label_column)) > 1:
            raise ValueError(f"data.label_column names one column, not "
                             f"{column_refs(self.label_column)}; several labels per row go "
                             f"in that one field, split by data.label_delimiter")
        label, texts = self.label_column.strip(), column_refs(self.text_column)
        for name, refs in (("data.text_column", texts),
                           ("data.text_pair_column", column_refs(self.text_pair_column))):
            twice = next((ref for ref in refs if refs.count(ref) > 1), None)
            if twice is not None:
                raise ValueError(f"{name} names '{twice}' twice: its text would be joined "
                                 f"to itself")
            if label in refs:
                raise ValueError(f"data.label_column '{label}' is also read as text ({name}):"
                                 f" the model would learn its own answer; pick other columns")
        both = [ref for ref in column_refs(self.text_pair_column) if ref in texts]
        if both:
            raise ValueError(f"'{both[0]}' is read as both data.text_column and "
                             f"data.text_pair_column; a pair's texts are different columns")

    @property
    def multi_label(self) -> bool:
        """Several labels per text: the task the data asks for, decided here only."""
        return bool(self.label_delimiter)

    @property
    def text_pair(self) -> bool:
        """Rows are sentence pairs: the task the data asks for, decided here only."""
        return bool(self.text_pair_column)

    def reader_settings(self) -> dict:
        """The reader settings by name: this class's fields only (also of a subclass)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(ReaderConfig)}

    def to_json(self) -> str:
        """The wire format of the reader settings, as every component that reads data
        files receives them: a JSON object of ``reader_settings()``."""
        return json.dumps(self.reader_settings(), sort_keys=True)

    @staticmethod
    def from_json(text: str) -> "ReaderConfig":
        """The ``ReaderConfig`` that ``to_json`` wrote ``text`` from."""
        return ReaderConfig(**json.loads(text))


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


def read_alike(text: str) -> str:
    """``text`` as the model reads texts alike: case folded, white space collapsed (the
    split's and the feedback export's sameness of texts)."""
    return " ".join(text.casefold().split())


def detect_format(path: str, configured: str = "auto") -> str:
    if configured != "auto":
        if configured not in FORMATS:
            raise InputDataError(f"unknown file format '{configured}' (one of {FORMATS})")
        return configured
    ext = os.path.splitext(path)[1].lower()
    if ext in _COMPRESSED_EXTENSIONS:
        raise InputDataError(
            f"{path}: a compressed file ('{ext}'); decompress it first: the reader takes "
            f"plain UTF-8 text")
    if ext not in _EXTENSIONS:
        raise InputDataError(
            f"{path}: cannot tell the format from the extension '{ext}'; use .csv, "
            f".tsv or .jsonl, set data.file_format, or narrow data.file_pattern to the "
            f"data files")
    return _EXTENSIONS[ext]


def data_file_name(stem: str, file_pattern: str, configured: str = "auto") -> str:
    """A file name the reader takes as data: it matches ``file_pattern`` (data.file_pattern)
    and tells its format as ``configured`` (data.file_format) needs; ``stem`` and an
    extension where the pattern allows, else the pattern filled in ('reviews-*.csv' ->
    'reviews-feedback.csv', 'data*' -> 'datafeedback.tsv'). ValueError naming the setting
    when no name fits."""
    if "[^" in file_pattern:
        raise ValueError(f"data.file_pattern '{file_pattern}': TensorFlow's glob reads [^...] "
                         f"as 'not', Python's as '^ or ...'; write [!...]")
    own = {fmt: ext for ext, fmt in reversed(_EXTENSIONS.items())}.get(configured)
    extensions = list(dict.fromkeys([own or ".tsv"] + list(_EXTENSIONS)))
    filled = re.sub(r"\[[^]]+\]", _class_member, file_pattern.replace("*", stem)
                    .replace("?", "x"))
    for name in [stem + ext for ext in extensions] + [filled] + [filled + ext
                                                                 for ext in extensions]:
        if fnmatch.fnmatchcase(name, file_pattern):
            try:
                detect_format(name, configured)
            except InputDataError:
                continue
            return name
    raise ValueError(
        f"no file name both matches data.file_pattern '{file_pattern}' and tells its "
        f"format (.csv, .tsv or .jsonl, or data.file_format set): widen data.file_pattern")


def _class_member(match: "re.Match") -> str:
    """A character that a glob's [...] class (as in ``match``) matches."""
    return next((c for c in "abcdefghijklmnopqrstuvwxyz0123456789_-"
                 + match.group(0).strip("[]!") if fnmatch.fnmatchcase(c, match.group(0))),
                "x")


def decode(path: str, data: bytes) -> str:
    """UTF-8 bytes (optional BOM) -> str, or an error naming the line."""
    return "".join(_Source(path, io.BytesIO(data)))


class _Source:
    """The text of one file's binary stream, decoded a chunk at a time (``CHUNK_BYTES``),
    with every check on the way: another encoding's byte order mark, compressed data, a NUL
    byte, invalid UTF-8, each an InputDataError naming the line. A UTF-8 BOM is dropped."""

    def __init__(self, path: str, stream):
        self.path, self.stream = path, stream

    def __iter__(self) -> Iterator[str]:
        head = self._read(64)  # enough for the magic numbers and the UTF-16 look
        self._refuse_other_formats(head)
        decoder = codecs.getincrementaldecoder("utf-8")()
        chunk, offset, newlines = head, 0, 0  # offset, newlines: in the file before chunk
        fed = len(_UTF8_BOM) if head.startswith(_UTF8_BOM) else 0
        while True:
            chunk += self._read(CHUNK_BYTES - len(chunk))
            final = not chunk
            nul = chunk.find(b"\x00")  # first: a binary file is named as such
            if nul >= 0:
                line = newlines + chunk.count(b"\n", 0, nul) + 1
                raise InputDataError(
                    f"{self.path}: not a text file (NUL byte at offset {offset + nul}, line "
                    f"{line})"
                    + ("; it looks like UTF-16 text without a byte order mark: re-encode "
                       "the file as UTF-8" if _looks_utf16(head) else ""))
            pending = len(decoder.getstate()[0])  # an unfinished character's bytes
            try:
                text = decoder.decode(chunk[fed:], final)
            except UnicodeDecodeError as e:  # e.start counts from the pending bytes
                bad = offset + fed - pending + e.start
                line = newlines + chunk.count(b"\n", 0, max(0, bad - offset)) + 1
                raise InputDataError(
                    f"{self.path}: line {line}: invalid UTF-8 (byte 0x{e.object[e.start]:02x} "
                    f"at offset {bad}); re-encode the file as UTF-8") from None
            if text:
                yield text
            if final:
                return
            offset, newlines = offset + len(chunk), newlines + chunk.count(b"\n")
            chunk, fed = b"", 0

    def _read(self, size: int) -> bytes:
        """``size`` bytes, fewer only at the end (a stream may return short reads)."""
        parts, left = [], size
        while left > 0:
            part = self.stream.read(left)
            if not part:
                break
            parts.append(part)
            left -= len(part)
        return b"".join(parts)

    def _refuse_other_formats(self, head: bytes) -> None:
        for bom, encoding in _OTHER_BOMS:
            if head.startswith(bom):
                raise InputDataError(
                    f"{self.path}: {encoding} text (byte order mark {bom.hex(' ').upper()}, "
                    f"as in Excel's 'Unicode text'); re-encode the file as UTF-8")
        for magic, kind in _COMPRESSED:
            if magic.match(head):
                raise InputDataError(f"{self.path}: {kind}-compressed data; decompress it "
                                     f"first: the reader takes plain UTF-8 text")


def _lines(pieces: Iterator[str], cr: bool) -> Iterator[str]:
    """The lines of a text given piece by piece, each with its line end: split at LF only,
    or (``cr``) at CR, LF and CR LF, as ``io.StringIO(text, newline="\n" or "")`` splits."""
    newline = "" if cr else "\n"
    held: list = []  # text after the last line end so far
    for piece in pieces:
        end = len(piece) - 1 if cr and piece.endswith("\r") else len(piece)  # CR LF cut?
        cut = max(piece.rfind("\n", 0, end), piece.rfind("\r", 0, end) if cr else -1) + 1
        if not cut:
            held.append(piece)
            continue
        yield from io.StringIO("".join(held) + piece[:cut], newline=newline)
        held = [piece[cut:]]
    if "".join(held):
        yield from io.StringIO("".join(held), newline=newline)


def _looks_utf16(data: bytes) -> bool:
    """Every other byte of the start is NUL: ASCII text in UTF-16 (either byte order)."""
    head = data[:64]
    head = head[:len(head) // 2 * 2]
    return len(head) >= 4 and (not any(head[1::2]) or not any(head[0::2]))


def parse(path: str, data: bytes, config: ReaderConfig,
          custom_patterns: Sequence[Tuple[str, str]] = ()) -> list[Record]:
    """All records of one file's bytes: ``read_records`` over them."""
    return list(read_records(path, io.BytesIO(data), config, custom_patterns))


def read_records(path: str, stream, config: ReaderConfig,
                 custom_patterns: Sequence[Tuple[str, str]] = ()) -> Iterator[Record]:
    """The records of one file, read from its binary ``stream`` a chunk at a time: memory
    holds a record, not the file. After the last good record, raises InputDataError listing
    every bad row (a setting no row can be read with, at once). Rows an error quotes are
    cut short, built-in types of personal data and ``custom_patterns`` (the run's
    privacy.custom_patterns, (name, RE2) pairs) replaced first."""
    records = _records(path, stream, config)
    while True:  # the patterns in force while this file's code runs, not while its caller's
        with excerpts_replacing(custom_patterns):
            record = next(records, None)
        if record is None:
            return
        yield record


def _records(path: str, stream, config: ReaderConfig) -> Iterator[Record]:
    fmt = detect_format(path, config.file_format)
    pieces = iter(_Source(path, stream))
    problems = _Problems()
    if fmt == "jsonl":
        rows = _jsonl_rows(_lines(pieces, cr=False), config, problems)
    else:
        delimiter = "\t" if fmt == "tsv" else ","
        head, cr = _first_line_end(pieces, config, delimiter)
        rows = _delimited_rows(_lines(_after(head, pieces), cr), delimiter, config, problems)
    labels = _LabelSpellings()
    count = 0
    try:
        for row in rows:
            record = _record(row, config, problems)
            if record is not None:
                labels.check(record, problems)
                count += 1
                yield record
    except _SettingError as e:
        raise InputDataError(f"{path}: {e}") from None
    if problems:
        shown = "\n  ".join(f"line {line}: {what}" for line, what in problems.first())
        more = problems.count - MAX_REPORTED_PROBLEMS
        raise InputDataError(
            f"{path}: {problems.count} bad row(s):\n  {shown}"
            + (f"\n  ... and {more} more" if more > 0 else ""))
    if not count:
        raise InputDataError(f"{path}: no data rows (only a header, or empty)")


class _Problems:
    """Bad rows found so far: how many, and the first ``MAX_REPORTED_PROBLEMS`` of them by
    line (a file of bad rows does not fill memory with its errors)."""

    def __init__(self):
        self.count = 0
        self._kept: list = []  # (line, what is wrong)

    def append(self, problem: Tuple[int, str]) -> None:
        self.count += 1
        self._kept.append(problem)
        if len(self._kept) > 4 * MAX_REPORTED_PROBLEMS:
            self._trim()

    def merge(self, other: _Problems) -> None:
        self.count += other.count - len(other.first())
        for problem in other.first():
            self.append(problem)

    def first(self) -> list:
        """The first ``MAX_REPORTED_PROBLEMS`` by line (found first among a line's own)."""
        self._trim()
        return self._kept

    def _trim(self) -> None:
        self._kept.sort(key=lambda problem: problem[0])  # stable
        del self._kept[MAX_REPORTED_PROBLEMS:]

    def __bool__(self) -> bool:
        return self.count > 0


def _record(row: tuple, config: ReaderConfig, problems: _Problems) -> Optional[Record]:
    """(line, text, text pair or None, label or list of labels) -> a Record, or None after
    noting the problem."""
    line, text_value, pair, label = row
    if isinstance(label, list):
        labels = label
    else:
        labels = label.split(config.label_delimiter) if config.label_delimiter else [label]
    labels = list(dict.fromkeys(value.strip() for value in labels if value.strip()))
    cut = next((column for column, values in (
        (config.text_column, [text_value]), (config.text_pair_column, [pair or ""]),
        (config.label_column, labels)) if not all(map(_is_unicode, values))), None)
    if cut is not None:  # only JSON's \u escapes can make one
        problems.append((line, f"a lone UTF-16 surrogate (a \\uD800-\\uDFFF escape without "
                               f"its other half: an emoji cut in two?) in '{cut}'"))
    elif not text_value.strip():
        problems.append((line, f"empty text in '{config.text_column}'"))
    elif pair is not None and not pair.strip():
        problems.append((line, f"empty text pair in '{config.text_pair_column}'"))
    elif not labels:
        problems.append((line, f"missing label in '{config.label_column}'"))
    elif any("\n" in value or "\r" in value for value in labels):
        # Transform's label vocabulary drops such a token: its rows would train as id -1
        problems.append((line, f"a label in '{config.label_column}' holds a line break"))
    else:
        raw = label if isinstance(label, str) else config.label_delimiter.join(labels)
        return Record(line, text_value, raw.strip(), pair, tuple(labels))
    return None


def _is_unicode(text: str) -> bool:
    """Encodable as UTF-8: no lone surrogate."""
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


_WHOLE_NUMBER = re.compile(r"(-?(?:0|[1-9][0-9]*))(?:\.0+)?")


def integer_label(label: str) -> Optional[str]:
    """The integer a label spells as an integer or as pandas writes a float column's
    ('1' and '1.0' both give '1'), else None. Nothing looser: '01', '1.10', '1e3' and
    long identifiers are labels of their own, compared as text."""
    match = _WHOLE_NUMBER.fullmatch(label)
    return match.group(1) if match else None


class _LabelSpellings:
    """Refuses labels that are one integer written two ways ('1' and '1.0': a float column
    written by pandas): they would be two classes."""

    def __init__(self):
        self.first: dict = {}  # integer -> (label, line) as first seen

    def check(self, record: Record, problems: _Problems) -> None:
        for label in record.labels:
            number = integer_label(label)
            if number is None:
                continue
            seen = self.first.setdefault(number, (label, record.line))
            if seen[0] != label:
                problems.append((record.line, f"label '{excerpt(label)}' is the number of "
                                              f"label '{excerpt(seen[0])}' (line {seen[1]}) "
                                              f"written another way; write each label one "
                                              f"way (a float column written by pandas: cast "
                                              f"it to int)"))


def _resolve(setting: str, name: str, columns: list[str], source: str) -> list[int]:
    """Indexes of the columns a setting names (names first, then 0-based positions)."""
    indexes, unknown = [], []
    for ref in column_refs(setting):
        if ref in columns:
            _refuse_duplicate(ref, name, columns, source)
            indexes.append(columns.index(ref))
        elif ref.isdigit() and int(ref) < len(columns):
            indexes.append(int(ref))
        else:
            unknown.append(ref)
    if unknown or not indexes:
        hint = ("; if the file has no header row, name its columns with data.column_names"
                if source == "the header" else "")
        # A headerless file's first row is data: at most one excerpt of it, as of any row
        shown = (f"({len(columns)} columns: '{excerpt(', '.join(columns))}')"
                 if source == "the header" else columns)
        raise _SettingError(
            f"columns {unknown or [setting]} not in {source} {shown}; set {name} to "
            f"column names or 0-based positions{hint}")
    return indexes


def _refuse_data_as_header(header: list[str], config: "ReaderConfig", label_index: int,
                           text_indexes: list[int]) -> None:
    """Columns picked only by position leave the header row unchecked: refuse a first row
    that reads like data (a numeric label, a sentence-long text) instead of dropping it."""
    refs = column_refs(config.text_column) + column_refs(config.label_column) + (
        column_refs(config.text_pair_column) if config.text_pair_column else [])
    if any(ref in header for ref in refs):
        return
    label = header[label_index]
    try:
        float(label)
        cell = label
    except ValueError:
        cell = next((header[i] for i in text_indexes if len(header[i].split()) >= 5), None)
    if cell is not None:
        raise _SettingError(
            f"line 1 is taken as the header (columns are picked by position and "
            f"data.column_names is empty), but it reads like data ('{excerpt(cell)}'); if "
            f"the file has no header row, name its columns with data.column_names")


def _refuse_duplicate(ref: str, name: str, columns: list[str], source: str) -> None:
    positions = [i for i, column in enumerate(columns) if column == ref]
    if len(positions) > 1:
        raise _SettingError(
            f"{source} has {len(positions)} columns named '{excerpt(ref)}' (0-based "
            f"positions {positions}), which {name} uses; rename them, or set {name} to a "
            f"0-based position")


def _delimited_rows(lines: Iterator[str], delimiter: str, config: ReaderConfig,
                    problems: _Problems) -> Iterator[tuple]:
    read = _RecordLines(lines)
    reader = csv.reader(read, delimiter=delimiter, strict=True,
                        quoting=QUOTING[config.quoting])
    if config.column_names:
        header, source = list(config.column_names), "data.column_names"
    else:
        try:
            header = [h.strip() for h in next(reader)]
            while not any(header):  # blank lines before the header
                header = [h.strip() for h in next(reader)]
        except StopIteration:
            return
        except csv.Error as e:
            raise _SettingError(f"line {reader.line_num}: malformed header: "
                                f"{_csv_error(e)}"
                                f"{_quote_hint(config, read.escaped_quote)}") from None
        source = "the header"
    text_indexes = _resolve(config.text_column, "data.text_column", header, source)
    label_index = _resolve(config.label_column, "data.label_column", header, source)[0]
    pair_indexes = (_resolve(config.text_pair_column, "data.text_pair_column", header, source)
                    if config.text_pair_column else None)
    _refuse_picked_twice(header, source, {
        "data.text_column": text_indexes, "data.text_pair_column": pair_indexes or [],
        "data.label_column": [label_index]})
    if source == "the header":
        _refuse_data_as_header(header, config, label_index, text_indexes + (pair_indexes or []))
    start = reader.line_num + 1
    while True:
        read.forget()
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            problems.append((start, f"malformed row: {_csv_error(e)}"
                                    f"{_quote_hint(config, read.escaped_quote)}"))
            return  # the rest of the file cannot be framed reliably
        if row and [field.strip().lstrip("\ufeff") for field in row] == header:
            problems.append((start, "a header row, but data.column_names says the file has "
                                    "none: leave data.column_names empty"
                             if config.column_names else
                             "the header row again (files joined together?): remove it"))
        elif row:  # blank lines are skipped
            if len(row) != len(header):
                named = " (data.column_names)" if config.column_names else ""
                problems.append((start, f"expected {len(header)} fields{named}, found "
                                        f"{len(row)}{_field_count_hint(config, row)}"))
            elif config.quoting == "csv" and _rows_in_a_field(row, delimiter, len(header),
                                                              label_index):
                problems.append((start, f"a quoted field runs over lines "
                                        f"{start}-{reader.line_num}, which read as rows of "
                                        f"their own: a quote that opens a field is plain "
                                        f"text here (as in GLUE's TSV files)? Set "
                                        f"data.quoting none, or double the quotes in it"))
            else:
                def join(indexes):  # empty fields left out, as JSON nulls (and the model)
                    return config.text_separator.join(row[i] for i in indexes if row[i])
                yield (start, join(text_indexes),
                       None if pair_indexes is None else join(pair_indexes),
                       row[label_index])
        start = reader.line_num + 1


def _rows_in_a_field(row: list, delimiter: str, fields: int, label_index: int) -> bool:
    """Whether a field of a tab-separated file spans lines that each, but the last, hold
    a whole row (``fields`` fields, a label-like word where the label goes): rows
    swallowed by a quote that was text (GLUE's files), not a multi-line text. Not for
    CSV, where a text's line holding a comma ("Hi John,") is common."""
    if delimiter != "\t":
        return False
    for field in row:
        lines = field.split("\n")
        if len(lines) > 1 and all(_reads_as_a_row(line.split("\t"), fields, label_index)
                                  for line in lines[:-1]):
            return True
    return False


def _reads_as_a_row(parts: list, fields: int, label_index: int) -> bool:
    return len(parts) == fields and bool(re.fullmatch(r"\S{1,40}", parts[label_index].strip()))


def _first_line_end(pieces: Iterator[str], config: ReaderConfig,
                    delimiter: str) -> Tuple[collections.deque, bool]:
    """Reads from ``pieces`` (a text's start) until its first line break outside quoted
    fields: (the pieces read, whether that break is a CR alone). Lines end at LF (a CR
    before it is the csv module's to drop, '\r\r\n' too): a CR alone inside a field is not
    a line break, except in a file whose first line ends with a CR alone (old Mac line
    ends; a LF in a quoted field there is text). Fields are framed as the csv module frames
    them: only a quote that starts a field opens a quoted field ('a 12" pizza' holds a
    quote), and a doubled quote inside one is text."""
    read, crs = collections.deque(), False  # crs: CRs outside quotes, deciding what follows
    state = "start"  # of a field; or in one: "field", "quoted", "quote" (in a quoted one)
    for piece in pieces:
        read.append(piece)
        position = 0
        while True:
            if crs:
                while position < len(piece) and piece[position] == "\r":
                    position += 1
                if position < len(piece):
                    return read, piece[position] != "\n"
                break
            match = _QUOTE_OR_BREAK.search(piece, position)
            stop = len(piece) if match is None else match.start()
            if stop > position and state != "quoted":  # text, then a delimiter or not
                state = "start" if piece[stop - 1] == delimiter else "field"
            if match is None:
                break
            position = match.end()
            if match.group() == '"':
                state = {"start": "quoted" if config.quoting == "csv" else "field",
                         "field": "field", "quoted": "quote", "quote": "quoted"}[state]
            elif state != "quoted":
                if match.group() == "\n":
                    return read, False
                crs = True
    return read, crs


_QUOTE_OR_BREAK = re.compile(r'"|\r|\n')


def _after(head: collections.deque, pieces: Iterator[str]) -> Iterator[str]:
    """``head``'s pieces (let go of as they are handed on), then ``pieces``."""
    while head:
        yield head.popleft()
    yield from pieces


class _RecordLines:
    """The lines handed to the csv module, noting whether those of the record it reads now
    hold a backslash-escaped quote (for ``_quote_hint``; the lines themselves are not kept:
    a quote left open makes the rest of the file one record)."""

    def __init__(self, lines: Iterator[str]):
        self._lines, self.escaped_quote = lines, False

    def __iter__(self) -> "_RecordLines":
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.escaped_quote = self.escaped_quote or '\\"' in line
        return line

    def forget(self) -> None:
        """A new record starts."""
        self.escaped_quote = False


def _refuse_picked_twice(header: list[str], source: str, picked: dict) -> None:
    """Settings that pick one column twice, by name and by position: the label read as
    text too would be learned as its own answer."""
    owners: dict = {}
    for setting, indexes in picked.items():
        for index in indexes:
            if index in owners:
                both = (f"{setting} picks" if owners[index] == setting
                        else f"{owners[index]} and {setting} both pick")
                raise _SettingError(
                    f"{both} the column '{excerpt(header[index])}' (0-based position "
                    f"{index}) of {source}; pick different columns")
            owners[index] = setting


def _csv_error(error: csv.Error) -> str:
    """The csv module's message, or what a CR inside an unquoted field means here."""
    if "new-line character seen in unquoted field" in str(error):
        return ("a carriage return inside an unquoted field (a stray \\r): remove it, or "
                "quote the field")
    return str(error)


def _quote_hint(config: ReaderConfig, escaped_quote: bool) -> str:
    """What to change for a malformed record (``escaped_quote``: its lines hold \\")."""
    if config.quoting != "csv":
        return ""
    if escaped_quote:  # Spark's and MySQL's exports; quoting none would keep the \"
        return ('; quotes inside fields look escaped with a backslash (\\"), as Spark and '
                'MySQL write them: this reader reads RFC 4180 CSV, where they are doubled '
                '(""): export it so (Spark: option escape \'"\')')
    return "; if quotes in this file are plain text, set data.quoting none"


def _field_count_hint(config: ReaderConfig, row: list[str]) -> str:
    if config.quoting == "csv" and any('"' in field for field in row):
        return (" (quotes in this file may be plain text, as in GLUE's TSV files: set "
                "data.quoting none)")
    if config.quoting == "none":
        return " (a field holds the delimiter? such files need quoting: data.quoting csv)"
    return " (unquoted delimiter or newline?)"


def _jsonl_rows(lines: Iterator[str], config: ReaderConfig,
                problems: _Problems) -> Iterator[tuple]:
    if config.column_names:
        raise _SettingError("data.column_names is for CSV/TSV files without a header; "
                            "JSON Lines objects name their own keys")
    text_keys, pair_keys, label_keys = (column_refs(setting) for setting in (
        config.text_column, config.text_pair_column, config.label_column))
    absent = _AbsentKeys({"data.text_column": text_keys, "data.text_pair_column": pair_keys,
                          "data.label_column": label_keys})
    # Lines end at LF only (str.splitlines() would also split at U+2028, U+0085 or a form
    # feed inside a string); a CR before the LF is JSON whitespace.
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:  # control characters in strings are text; without its LF, a cut line's
            # error has the column in it, not column 1 of the next line
            obj = json.loads(line[:-1] if line.endswith("\n") else line, strict=False,
                             object_pairs_hook=_JsonObject.from_pairs)
        except json.JSONDecodeError as e:
            problems.append((number, f"invalid JSON: {e.msg} (column {e.colno})"))
            continue
        if not isinstance(obj, dict):
            problems.append((number, f"expected a JSON object, found {type(obj).__name__}"))
            continue
        repeated = [(key, setting) for setting, keys in absent.keys_by_setting.items()
                    for key in keys if key in obj.repeated]
        if repeated:
            problems.append((number, f"the key '{excerpt(repeated[0][0])}' twice "
                                     f"({repeated[0][1]}): which value is meant? keep one"))
            continue
        if absent.lacks_keys(number, obj):
            continue
        texts = [_json_text(obj, keys, config.text_separator, number, problems)
                 for keys in (text_keys, pair_keys)]
        label = _json_label(obj[label_keys[0]], config, number, problems)
        if texts[0] is not None and label is not None and (not pair_keys
                                                           or texts[1] is not None):
            yield number, texts[0], texts[1] if pair_keys else None, label
    absent.report(problems)


class _JsonObject(dict):
    """A JSON object that knows its repeated keys (``json`` keeps the last value)."""

    repeated: frozenset = frozenset()

    @classmethod
    def from_pairs(cls, pairs: list) -> "_JsonObject":
        obj = cls(pairs)
        if len(obj) < len(pairs):
            seen: set = set()
            obj.repeated = frozenset(k for k, _ in pairs if k in seen or seen.add(k))
        return obj


class _AbsentKeys:
    """Keys the settings name that JSON objects lack: one error when no object has a key
    (a wrong setting), else one problem per object that lacks one."""

    def __init__(self, keys_by_setting: dict):
        self.keys_by_setting = keys_by_setting
        self.objects = 0
        self.keys_seen: dict = {}  # every key of every object, in order of appearance
        self.lacking: dict = {}  # (setting, key) -> how many objects lack it
        self.problems = _Problems()

    def lacks_keys(self, number: int, obj: dict) -> bool:
        self.objects += 1
        self.keys_seen.update(dict.fromkeys(obj))
        missing = [(setting, key) for setting, keys in self.keys_by_setting.items()
                   for key in keys if key not in obj]
        for setting, key in missing:
            self.lacking[setting, key] = self.lacking.get((setting, key), 0) + 1
            self.problems.append((number, f"no key '{key}' ({setting}); the object's keys: "
                                          f"{_shown_keys(obj)}"))
        return bool(missing)

    def report(self, problems: _Problems) -> None:
        """Raises _SettingError for a key no object has, else adds the per-row problems."""
        nowhere = [(setting, key) for (setting, key), count in self.lacking.items()
                   if count == self.objects]
        if nowhere:
            settings = dict.fromkeys(setting for setting, _ in nowhere)
            raise _SettingError(
                "; ".join(f"none of the {self.objects} JSON objects has the key '{key}' "
                          f"({setting})" for setting, key in nowhere)
                + f"; their keys: {_shown_keys(self.keys_seen)}; set "
                + ", ".join(f"{setting} to the key{self._plural(setting)} of "
                            f"{_JSON_PURPOSE[setting]}" for setting in settings))
        problems.merge(self.problems)

    def _plural(self, setting: str) -> str:
        return "s" if len(self.keys_by_setting[setting]) > 1 else ""


def _shown_keys(keys) -> list[str]:
    """The first 20 keys, as redacted excerpts."""
    keys = list(keys)
    patterns = excerpt_patterns()
    return [_key_excerpt(key, patterns) for key in keys[:20]] + (
        ["…"] if len(keys) > 20 else [])


@functools.lru_cache(maxsize=1024)
def _key_excerpt(key: str, patterns: tuple) -> str:
    """``excerpt(key)``, cached by the key and the custom patterns in force."""
    return excerpt(key)


def _json_text(obj: dict, keys: list, separator: str, number: int,
               problems: _Problems) -> Optional[str]:
    """The values of ``keys`` joined (null or "" ones left out); None after a problem."""
    values = [obj[key] for key in keys]
    bad = [key for key, value in zip(keys, values)
           if value is not None and not isinstance(value, str)]
    if bad:
        problems.append((number, f"'{bad[0]}' is not a string"))
        return None
    return separator.join(value for value in values if value)


def _json_label(label, config: ReaderConfig, number: int, problems: _Problems):
    """A string, an integer, true/false ("true"/"false"), or (multi-label) a list of them;
    None after a problem."""
    if isinstance(label, list) and config.multi_label and all(
            isinstance(v, (str, int)) for v in label):
        split = next((v for v in label if config.label_delimiter in str(v)), None)
        if split is not None:  # written delimited (CSV, the feedback span), it would split
            problems.append((number, f"'{config.label_column}' item '{excerpt(split)}' "
                                     f"holds data.label_delimiter "
                                     f"'{config.label_delimiter}': make it items of their "
                                     f"own, or set another delimiter"))
            return None
        return [_label_text(value) for value in label]
    if isinstance(label, list):
        hint = ("" if config.multi_label else
                "; a list of labels needs data.label_delimiter (multi-label)")
        problems.append((number, f"'{config.label_column}' must be a string, an integer, "
                                 f"true/false or a list of them, found "
                                 f"{excerpt(json.dumps(label, ensure_ascii=False))}{hint}"))
        return None
    if isinstance(label, (dict, float)):
        shown = excerpt(json.dumps(label, ensure_ascii=False))  # \u escapes hid e-mails
        problems.append((number, f"'{config.label_column}' must be a string, an integer "
                                 f"or true/false, found {shown}"))
        return None
    return "" if label is None else _label_text(label)


def _label_text(value) -> str:
    """A JSON label as text: booleans as JSON spells them (true, false)."""
    return json.dumps(value) if isinstance(value, bool) else str(value)


class _SettingError(Exception):
    """The header or a setting is unusable (the caller adds the file name)."""


def read_file(path: str, config: ReaderConfig, opener=None,
              custom_patterns: Sequence[Tuple[str, str]] = ()) -> list[Record]:
    """Every record of one file (``opener`` defaults to ``open``; Beam passes its own;
    ``custom_patterns``: as ``read_records``)."""
    return list(iter_file(path, config, opener, custom_patterns))


def iter_file(path: str, config: ReaderConfig, opener=None,
              custom_patterns: Sequence[Tuple[str, str]] = ()) -> Iterator[Record]:
    """``read_records`` of one file, opened with ``opener`` (as ``read_file``)."""
    opener = opener or (lambda p: open(p, "rb"))
    with opener(path) as f:
        yield from read_records(path, f, config, custom_patterns)


HASH_BUCKETS = 100  # TFX's hash split: data.split hash, and multi-label data
STRATIFIED_BUCKETS = 10_000  # only carry the fraction to the stratified split


def split_buckets(eval_fraction: float, total: int = HASH_BUCKETS) -> tuple[int, int]:
    """Hash buckets (train, eval) for an eval fraction out of ``total``, e.g. 0.1 -> (90,
    10) out of 100; ValueError when one split would get none."""
    if not 0 < eval_fraction < 1:
        raise ValueError(f"eval_fraction must be in (0, 1), got {eval_fraction}")
    eval_buckets = round(eval_fraction * total)
    if not 0 < eval_buckets < total:
        raise ValueError(f"data.eval_fraction {eval_fraction} leaves one split empty with "
                         f"{total} hash buckets: use {1 / total:g} to {1 - 1 / total:g}")
    return total - eval_buckets, eval_buckets
