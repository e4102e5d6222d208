"""Feedback loop (opt-in, ``--feedback_dir``): served predictions and corrected labels.

The server records each text it classifies (Classify API: the clients' and the
``predict`` CLI's path) with an id it returns to the caller (REST header
``X-Prediction-Ids``, gRPC trailing metadata ``prediction-ids``). Callers send
corrections as ``POST /v1/feedback`` ``{"corrections": [{"id": ..., "label": ...}]}``.
``local/feedback_span.py`` turns the corrected texts into the next data span, which
the scheduled pipeline then picks up. Files are JSON Lines, appended under a lock.
"""
from __future__ import annotations

import json
import os
import threading
import time
import uuid
from typing import Dict, List, Optional, Sequence

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


class FeedbackLog:
    def __init__(self, folder: str):
        self.folder = folder
        os.makedirs(folder, exist_ok=True)
        self._lock = threading.Lock()
        self._ids = {r["id"] for r in read_jsonl(os.path.join(folder, PREDICTIONS))}

    def _append(self, name: str, records: Sequence[dict]) -> None:
        with open(os.path.join(self.folder, name), "a", encoding="utf-8") as f:
            f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))

    def record(self, model: str, version: int, texts: Sequence[str],
               rows: Sequence[Sequence]) -> List[str]:
        """Stores each text with its top label; returns their prediction ids."""
        now = time.time()
        records = []
        for text, row in zip(texts, rows):
            label, score = max(row, key=lambda pair: pair[1])
            records.append({"id": uuid.uuid4().hex, "time": now, "model": model,
                            "version": version, "text": text, "label": label,
                            "score": float(score)})
        with self._lock:
            self._append(PREDICTIONS, records)
            self._ids.update(r["id"] for r in records)
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
        now = time.time()
        with self._lock:
            self._append(CORRECTIONS, [{"id": c["id"], "label": c["label"].strip(),
                                        "time": now} for c in corrections])
        return len(corrections)
