"""Feedback loop (opt-in, ``--feedback_dir``): served predictions and corrected labels.

The server records each text it classifies (Classify API: the clients' and the
``predict`` CLI's path), and the second text of a sentence pair, redacted by the model's
own ``redact_text`` signature (a model without one has nothing recorded: raw text is
never stored), with an id it returns to the caller (REST header
``X-Prediction-Ids``, gRPC trailing metadata ``prediction-ids``). Callers send
corrections as ``POST /v1/feedback`` ``{"corrections": [{"id": ..., "label": ...}]}``.
``local/feedback_span.py`` turns the corrected texts into the next data span, which
the scheduled pipeline then picks up. Files are JSON Lines, appended under a lock, and
readable by their owner only (mode 0600, folder 0700).

Retention (``--feedback_max_age_days``, ``--feedback_max_rows``): checked at start and
after every write; when a limit is passed, the files are rewritten aside and renamed
over the old ones (a reader sees the old or the new file, never half of one), keeping
rows younger than 90% of the age limit and the newest 90% of the row limit, so the
rewrite happens once per tenth of a limit, not on every request. Corrections go with
their predictions.
"""
from __future__ import annotations

import collections
import json
import os
import threading
import time
import uuid
from typing import Callable, Dict, List, Optional, Sequence

PREDICTIONS, CORRECTIONS = "predictions.jsonl", "corrections.jsonl"
EXPORTED = "exported_ids.txt"  # ids already written into a span
ID_HEADER, ID_METADATA = "X-Prediction-Ids", "prediction-ids"


class FeedbackError(ValueError):
    """A correction that cannot be accepted (unknown id, missing label)."""


def read_jsonl(path: str) -> List[dict]:
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


SLACK = 0.1  # a rewrite keeps 10% below each limit (see the module docstring)
_DAY = 86400.0


def _open_private(path: str, flags: int):
    """A text file opened with ``flags``, created readable by its owner only."""
    return os.fdopen(os.open(path, flags | os.O_CREAT, 0o600), "w", encoding="utf-8")


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
        os.makedirs(folder, mode=0o700, exist_ok=True)
        for name in (PREDICTIONS, CORRECTIONS):  # written by an older server: 0644
            if os.path.exists(self._path(name)):
                os.chmod(self._path(name), 0o600)
        self._lock = threading.Lock()
        self._load(read_jsonl(self._path(PREDICTIONS)))
        with self._lock:
            self._enforce_limits()

    def _path(self, name: str) -> str:
        return os.path.join(self.folder, name)

    def _load(self, predictions: List[dict]) -> None:
        """(time, id) of every stored prediction, oldest first, and the ids."""
        self._rows = collections.deque((r["time"], r["id"]) for r in predictions)
        self._ids = {r["id"] for r in predictions}

    def _append(self, name: str, records: Sequence[dict]) -> None:
        with _open_private(self._path(name), os.O_WRONLY | os.O_APPEND) as f:
            f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))

    def _rewrite(self, name: str, records: Sequence[dict]) -> None:
        staging = self._path(f".{name}.{uuid.uuid4().hex}")
        with _open_private(staging, os.O_WRONLY | os.O_EXCL) as f:
            f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        os.replace(staging, self._path(name))

    def _enforce_limits(self) -> None:
        """Under the lock: rewrites both files when a row is too old or too many are kept."""
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
        self._rewrite(PREDICTIONS, predictions)
        self._rewrite(CORRECTIONS, corrections)
        self._load(predictions)

    def record(self, model: str, version: int, texts: Sequence[str],
               rows: Sequence[Sequence], pairs: Optional[Sequence[str]] = None) -> List[str]:
        """Stores each (already redacted) text, and its pair, with its top label; returns
        their prediction ids."""
        now = self._clock()
        records = []
        for i, (text, row) in enumerate(zip(texts, rows)):
            label, score = max(row, key=lambda pair: pair[1])
            records.append({"id": uuid.uuid4().hex, "time": now, "model": model,
                            "version": version, "text": text, "label": label,
                            "score": float(score)})
            if pairs is not None:
                records[-1]["text_pair"] = pairs[i]
        with self._lock:
            self._append(PREDICTIONS, records)
            self._rows.extend((r["time"], r["id"]) for r in records)
            self._ids.update(r["id"] for r in records)
            self._enforce_limits()
        return [r["id"] for r in records]

    def correct(self, corrections: Sequence[Dict]) -> int:
        """Stores corrected labels for recorded predictions; all or nothing."""
        problems = []
        for i, c in enumerate(corrections):
            if not isinstance(c, dict) or not isinstance(c.get("id"), str):
                problems.append(f"corrections[{i}]: needs an 'id' string")
            elif c["id"] not in self._ids:
                problems.append(f"corrections[{i}]: unknown prediction id '{c['id']}'")
            elif not isinstance(c.get("label"), str) or not c["label"].strip():
                problems.append(f"corrections[{i}]: needs a non-empty 'label' string")
        if problems or not corrections:
            raise FeedbackError("; ".join(problems[:10]) or "no corrections given")
        now = self._clock()
        with self._lock:
            self._append(CORRECTIONS, [{"id": c["id"], "label": c["label"].strip(),
                                        "time": now} for c in corrections])
            self._enforce_limits()
        return len(corrections)
