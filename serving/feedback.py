"""Feedback loop (opt-in, ``--feedback_dir``): served predictions and corrected labels.

The server records each text it classifies (Classify API: the clients' and the
``predict`` CLI's path), and the second text of a sentence pair, redacted by the model's
own ``redact_text`` signature (a model without one has nothing recorded: raw text is
never stored), with the model's labels and an id it returns to the caller (REST header
``X-Prediction-Ids``, gRPC trailing metadata ``prediction-ids``). Callers send
corrections as ``POST /v1/feedback`` ``{"corrections": [{"id": ..., "label": ...}]}``,
each stored with the caller that sent it (its token's name, serving/auth.py), which
the exported span leaves out.
``local/feedback_span.py`` turns the corrected texts into the next data span, which
the scheduled pipeline then picks up. Files are JSON Lines, appended under a lock, and
readable by their owner only (mode 0600, folder 0700).

Recording never hurts serving: a write that fails (a full disk) is rolled back, so a
record lands whole or not at all, and the caller's prediction is answered anyway (the
service counts and logs the drop). A torn record (a crash mid-write, or one left by an
older server) is cut at start, naming the file and the bytes removed; readers skip it.
Corrections are all or nothing per request and idempotent per prediction id: the same
label again writes nothing, a different one is appended and the last one wins (until
the id has been exported into a span; later corrections of it are not used).

Retention (``--feedback_max_age_days``, ``--feedback_max_rows``): checked at start and
after every write; when a limit is passed, the files are rewritten aside and renamed
over the old ones (a reader sees the old or the new file, never half of one), keeping
rows younger than 90% of the age limit and the newest 90% of the row limit, so the
rewrite happens once per tenth of a limit, not on every request. Corrections go with
their predictions.
"""
from __future__ import annotations

import collections
import errno
import json
import logging
import os
import re
import tempfile
import threading
import time
import uuid
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

from serving.auth import ANONYMOUS

PREDICTIONS, CORRECTIONS = "predictions.jsonl", "corrections.jsonl"
EXPORTED = "exported_ids.txt"  # ids already written into a span
ID_HEADER, ID_METADATA = "X-Prediction-Ids", "prediction-ids"
MAX_CORRECTIONS = 1000  # per POST /v1/feedback
MAX_BODY_BYTES = 2**20  # of a POST /v1/feedback (at most --max_request_bytes)
DROPPED_METRIC = "feedback_records_dropped_total"  # serving/metrics.py

log = logging.getLogger(__name__)
Label = Union[str, Tuple[str, ...]]  # one label, or several (multi-label models)


_ID_RANGE = re.compile(r"([0-9a-f]{32})-([0-9]+)\.\.([0-9]+)")


MAX_LISTED_IDS_BYTES = 4096  # ids sent as a list up to this; one range above


def encode_ids(ids: Sequence[str]) -> str:
    """The prediction ids of one request as sent back (``X-Prediction-Ids``, gRPC's
    ``prediction-ids``): comma-separated while that fits ``MAX_LISTED_IDS_BYTES`` (what
    clients before the ranges read), else ``<request>-0..<n - 1>`` for ids
    ``<request>-0`` to ``<request>-<n - 1>`` (``record``'s), the same size at any batch
    size: a list of 33 bytes a text passed gRPC's 8 KiB metadata limit from about 250
    texts."""
    listed = ",".join(ids)
    match = _ID_RANGE.fullmatch(f"{ids[0]}..{len(ids) - 1}") if ids else None
    prefix = match and match.group(1)
    if len(listed) > MAX_LISTED_IDS_BYTES and prefix and \
            ids == [f"{prefix}-{i}" for i in range(len(ids))]:
        return f"{prefix}-0..{len(ids) - 1}"
    return listed


def decode_ids(value: str, expected: int) -> List[str]:
    """``encode_ids``' ids of ``expected`` texts (ValueError naming the count when they
    are not as many: a range is checked before it is spelled out)."""
    match = _ID_RANGE.fullmatch(value)
    if match:
        first, last = int(match.group(2)), int(match.group(3))
        count = last - first + 1
        ids = [f"{match.group(1)}-{i}" for i in range(first, last + 1)] \
            if count == expected else []
    else:
        ids = value.split(",") if value else []
        count = len(ids)
    if count != expected:
        raise ValueError(f"{expected} texts sent, {count} prediction ids received")
    return ids


class FeedbackError(ValueError):
    """A correction that cannot be accepted (unknown id, not one of the model's labels)."""


class TooManyCorrections(FeedbackError):
    """More than ``MAX_CORRECTIONS`` corrections in one request."""


def too_many(count: int) -> str:
    """The error for ``count`` corrections, more than ``MAX_CORRECTIONS``."""
    return f"{count} corrections in one request; at most {MAX_CORRECTIONS}: send them in parts"


def _parse_line(line: bytes) -> Tuple[Optional[dict], int]:
    """``(record, bytes of the line not used)``: the whole line, or the whole record an
    older server appended onto a torn one (``{"id": ..., "te{"id": ...}``); ``(None,
    len(line))`` when neither parses. ``{"id": `` cannot occur inside a JSON string
    (its quotes would be escaped), so its last occurrence starts the last record."""
    for start in dict.fromkeys((0, line.rfind(b'{"id": '))):
        if start < 0:
            continue
        try:
            record = json.loads(line[start:].decode("utf-8"))
        except ValueError:  # UnicodeDecodeError included
            continue
        if isinstance(record, dict) and isinstance(record.get("id"), str):
            return record, start
    return None, len(line)


def scan(path: str) -> Tuple[List[dict], List[Tuple[int, int]], int]:
    """``(whole records, torn lines as (line number, bytes not used), bytes after the
    last newline)`` of a feedback file; a missing file has none."""
    if not os.path.exists(path):
        return [], [], 0
    with open(path, "rb") as f:
        data = f.read()
    *lines, tail = data.split(b"\n")
    records, torn = [], []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        record, unused = _parse_line(line)
        if record is not None:
            records.append(record)
        if unused:
            torn.append((number, unused + (record is None)))  # a line not kept: its newline
    return records, torn, len(tail)


def read_jsonl(path: str) -> List[dict]:
    """The whole records of a feedback file as it is now. An unterminated last line (a
    write in progress, or a record torn by a crash) is left out; so is a torn line, with
    a warning (the server removes both at its next start)."""
    records, torn, _ = scan(path)
    for number, unused in torn:
        log.warning("feedback: %s line %d: torn record (%d bytes) skipped", path, number,
                    unused)
    return records


def repair(path: str) -> None:
    """Removes torn records from a feedback file, logging the file and the bytes: a torn
    tail is truncated; torn lines (left by an older server) are rewritten away (on a full
    disk they stay, and readers skip them)."""
    records, torn, tail = scan(path)
    removed = False
    if torn:
        try:
            rewrite(path, records)  # the tail goes too
            removed = True
        except OSError as error:
            log.warning("feedback: %s has %d torn lines, skipped when read; they could not "
                        "be removed: %s", path, len(torn), error)
        for number, unused in torn if removed else ():
            log.warning("feedback: %s line %d: torn record, %d bytes removed", path,
                        number, unused)
    if tail:
        if not removed:
            with open(path, "r+b") as f:
                f.truncate(os.path.getsize(path) - tail)
        log.warning("feedback: %s ended in a torn record: %d bytes removed", path, tail)


def _lines(records: Sequence[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")


def rewrite(path: str, records: Sequence[dict], durable: bool = False) -> None:
    """Writes ``records`` aside and renames them over ``path``; nothing left on failure.
    ``durable``: the new file is on disk (fsync) before it replaces the old."""
    staging = os.path.join(os.path.dirname(path),
                           f".{os.path.basename(path)}.{uuid.uuid4().hex}")
    try:
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            _write_all(fd, _lines(records))
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(staging, path)
    except BaseException:
        if os.path.exists(staging):
            os.remove(staging)
        raise


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def append(path: str, data: bytes) -> int:
    """Appends ``data`` (whole lines) whole or not at all: on failure (a full disk stops
    a write part way) the file is truncated back. Returns its size before, for a caller
    that must undo the append. A torn tail (an earlier rollback that failed) goes first."""
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            whole = _last_line_end(fd, size)
            os.ftruncate(fd, whole)
            log.warning("feedback: %s ended in a torn record: %d bytes removed", path,
                        size - whole)
            size = whole
        try:
            _write_all(fd, data)
        except BaseException:
            os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)
    return size


def _last_line_end(fd: int, size: int) -> int:
    """The offset just after the last newline in the first ``size`` bytes (0: none)."""
    end = size
    while end > 0:
        start = max(0, end - 2**16)
        found = os.pread(fd, end - start, start).rfind(b"\n")
        if found >= 0:
            return start + found + 1
        end = start
    return 0


SLACK = 0.1  # a rewrite keeps 10% below each limit (see the module docstring)
_DAY = 86400.0


class _Labels(NamedTuple):
    """A model version's labels, and whether it takes several per text."""

    names: Tuple[str, ...]
    multi_label: bool

    @classmethod
    def of(cls, record: dict) -> "_Labels":
        """From a record of one of the version's predictions."""
        return cls(tuple(record["labels"]), bool(record.get("multi_label")))


def _label(value) -> Optional[Label]:
    """A correction's label: a non-empty string, or a non-empty list of them (several
    labels, multi-label models) as a sorted tuple; None if it is neither."""
    if isinstance(value, str) and value.strip():
        return value.strip()
    if (isinstance(value, list) and value
            and all(isinstance(v, str) and v.strip() for v in value)):
        return tuple(sorted({v.strip() for v in value}))
    return None


def _check_writable(folder: str) -> None:
    """Writes and removes a file in ``folder``: a folder this user may not write (a
    root-owned volume, a read-only mount) is refused at start, not found at the first
    record, after which every record would be dropped. A full disk is not refused: it
    may free up, and retention works on it (predictions are served either way)."""
    try:
        handle, probe = tempfile.mkstemp(prefix=".write-check-", dir=folder)
        try:
            os.write(handle, b"x")
        finally:
            os.close(handle)
            os.remove(probe)
    except OSError as error:
        if error.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            log.warning("feedback: %s: %s", folder, error)
            return
        raise OSError(error.errno, f"--feedback_dir {folder}: cannot write there as uid "
                                   f"{os.getuid()} ({error.strerror}); make it writable "
                                   f"for that user (its owner, or the volume's)") from None


class FeedbackLog:
    """The feedback folder: ``record`` predictions, ``correct`` them; limits kept.

    ``max_age_days``/``max_rows``: 0 keeps rows forever / without a count limit.
    ``clock``: seconds since the epoch (rows' ``time``)."""

    def __init__(self, folder: str, max_age_days: float = 0, max_rows: int = 0,
                 clock: Callable[[], float] = time.time):
        if max_age_days < 0:
            raise ValueError(f"--feedback_max_age_days must be >= 0, got {max_age_days}")
        if max_rows < 0:
            raise ValueError(f"--feedback_max_rows must be >= 0, got {max_rows}")
        self.folder = folder
        self.max_age_seconds, self.max_rows = max_age_days * _DAY, max_rows
        self._clock = clock
        self._dropped = 0  # records dropped since the last one stored (logged once)
        os.makedirs(folder, mode=0o700, exist_ok=True)
        _check_writable(folder)
        for name in os.listdir(folder):  # a rewrite that a crash stopped (see rewrite)
            if name.startswith((f".{PREDICTIONS}.", f".{CORRECTIONS}.")):
                log.warning("feedback: removed %s, left by an interrupted rewrite",
                            self._path(name))
                os.remove(self._path(name))
        for name in (PREDICTIONS, CORRECTIONS):
            if os.path.exists(self._path(name)):
                os.chmod(self._path(name), 0o600)  # written by an older server: 0644
                repair(self._path(name))
        self._lock = threading.Lock()
        self._load(read_jsonl(self._path(PREDICTIONS)), read_jsonl(self._path(CORRECTIONS)))
        with self._lock:
            self._enforce_limits()

    def _path(self, name: str) -> str:
        return os.path.join(self.folder, name)

    def _load(self, predictions: List[dict], corrections: List[dict]) -> None:
        """(time, id) of every stored prediction, oldest first; each id's model and
        version, each version's labels; each id's last corrected label."""
        self._rows = collections.deque((r["time"], r["id"]) for r in predictions)
        self._ids = {r["id"]: (r["model"], r["version"]) for r in predictions}
        self._labels: Dict[tuple, _Labels] = {}  # (model, version): its labels
        for r in predictions:  # rows recorded by an older server have none
            if r.get("labels"):
                self._labels.setdefault((r["model"], r["version"]), _Labels.of(r))
        self._corrected = {c["id"]: _label(c["label"]) for c in corrections}

    def _enforce_limits(self) -> None:
        """Under the lock: rewrites both files when a row is too old or too many are kept.
        A rewrite that fails (a full disk) keeps the files as they were, and is logged;
        the next write tries again."""
        now = self._clock()
        too_old = bool(self.max_age_seconds and self._rows
                       and self._rows[0][0] < now - self.max_age_seconds)
        too_many = bool(self.max_rows and len(self._rows) > self.max_rows)
        if not (too_old or too_many):
            return
        oldest = now - self.max_age_seconds * (1 - SLACK) if self.max_age_seconds else None
        predictions = [r for r in read_jsonl(self._path(PREDICTIONS))
                       if oldest is None or r["time"] >= oldest]
        if self.max_rows and len(predictions) > self.max_rows:
            keep = self.max_rows - int(self.max_rows * SLACK)
            predictions = predictions[len(predictions) - keep:]
        kept = {r["id"] for r in predictions}
        corrections = [c for c in read_jsonl(self._path(CORRECTIONS)) if c["id"] in kept]
        try:
            rewrite(self._path(PREDICTIONS), predictions)
            rewrite(self._path(CORRECTIONS), corrections)
        except OSError as error:
            log.warning("feedback: retention rewrite of %s failed (%s); rows are kept until "
                        "a later write succeeds", self.folder, error)
            return
        self._load(predictions, corrections)

    def record(self, model: str, version: int, texts: Sequence[str],
               rows: Sequence[Sequence], pairs: Optional[Sequence[str]] = None,
               multi_label: bool = False) -> List[str]:
        """Stores each (already redacted) text, and its pair, with its top label and the
        model's labels (and whether it takes several per text); returns their prediction
        ids. ``OSError`` when they could not be stored (then nothing was: see ``append``),
        logged once until a record lands again."""
        now, request = self._clock(), uuid.uuid4().hex
        records = []
        for i, (text, row) in enumerate(zip(texts, rows)):
            label, score = max(row, key=lambda pair: pair[1])
            records.append({"id": f"{request}-{i}", "time": now, "model": model,
                            "version": version, "text": text, "label": label,
                            "score": float(score), "labels": [name for name, _ in row]})
            if pairs is not None:
                records[-1]["text_pair"] = pairs[i]
            if multi_label:
                records[-1]["multi_label"] = True
        with self._lock:
            try:
                append(self._path(PREDICTIONS), _lines(records))
            except OSError as error:
                if not self._dropped:
                    log.warning("feedback not recorded: %s: %s; predictions are still "
                                "answered, dropped records counted (%s)",
                                self._path(PREDICTIONS), error, DROPPED_METRIC)
                self._dropped += len(records)
                raise
            if self._dropped:
                log.warning("feedback recorded again after %d dropped records", self._dropped)
                self._dropped = 0
            self._rows.extend((r["time"], r["id"]) for r in records)
            self._ids.update((r["id"], (model, version)) for r in records)
            if records:
                self._labels.setdefault((model, version), _Labels.of(records[0]))
            self._enforce_limits()
        return [r["id"] for r in records]

    def correct(self, corrections: Sequence[Dict], caller: str = ANONYMOUS) -> int:
        """Stores corrected labels for recorded predictions, each with the ``caller`` that
        sent it (serving/auth.py): all or nothing, each label
        one of the model's (a list of them for several labels); an id already corrected
        with the same label is not written again. ``FeedbackError`` names every problem
        (the first 10); ``OSError`` when the disk refused (nothing was written)."""
        if len(corrections) > MAX_CORRECTIONS:
            raise TooManyCorrections(too_many(len(corrections)))
        problems, wanted = [], {}
        for i, c in enumerate(corrections):
            problem = self._problem(c, wanted)
            if problem:
                problems.append(f"corrections[{i}]: {problem}")
            else:
                wanted[c["id"]] = _label(c["label"])
        if problems or not corrections:
            raise FeedbackError("; ".join(problems[:10]) or "no corrections given")
        now = self._clock()
        with self._lock:
            new = {i: label for i, label in wanted.items() if self._corrected.get(i) != label}
            if new:
                append(self._path(CORRECTIONS), _lines([
                    {"id": i, "label": label if isinstance(label, str) else list(label),
                     "time": now, "caller": caller} for i, label in new.items()]))
                self._corrected.update(new)
                self._enforce_limits()
        return len(corrections)

    def _problem(self, correction, wanted: Dict[str, Label]) -> Optional[str]:
        if not isinstance(correction, dict) or not isinstance(correction.get("id"), str):
            return "needs an 'id' string"
        known = self._ids.get(correction["id"])
        if known is None:
            return f"unknown prediction id '{correction['id']}'"
        label = _label(correction.get("label"))
        if label is None:
            return ("needs a non-empty 'label' string (a list of them for several labels)")
        model, version = known
        allowed = self._labels.get(known)  # unknown only for an older server's rows
        for name in (label,) if isinstance(label, str) else label:
            if allowed and name not in allowed.names:
                return (f"label '{name}' is not one of model '{model}' version {version}'s "
                        f"labels: {', '.join(repr(a) for a in allowed.names)}")
        if allowed and not allowed.multi_label and not isinstance(label, str) and len(label) > 1:
            return (f"model '{model}' version {version} takes one label per text, not "
                    f"{list(label)}")
        if wanted.get(correction["id"], label) != label:
            return f"prediction id '{correction['id']}' given twice with different labels"
        return None
