"""Run history: one JSON line per pipeline run, appended after the run ends.

A run also appends a ``running`` line when it starts (after the run lock and the
setting checks); its final line has the same ``run_key``. A run killed with
``kill -9`` (or a power cut) leaves only the ``running`` line: ``read(unfinished=True)``
shows it as ``interrupted`` once no run holds the lock (or its process, on this host, is
gone), and the next run appends the
``interrupted`` line for it (it holds the lock, so no earlier run can be alive).
"""
from __future__ import annotations

import datetime
import json
import logging
import os
import socket
import uuid
from typing import TYPE_CHECKING, List, Optional

from serving.process import alive

if TYPE_CHECKING:  # local.summary imports ML Metadata: not needed to read the history
    from local.summary import RunSummary

ACCURACY = "sparse_categorical_accuracy"
RUNNING, INTERRUPTED, FINISHED = "running", "interrupted", "finished"
FIELDS = ("seconds", "span", "accuracy", "eval_examples", "baseline_accuracy", "metric",
          "value", "baseline_value", "blessed", "pushed_version", "push_cached",
          "started_from", "drift", "report")
SHORT_NAMES = {ACCURACY: "accuracy"}  # TFMA's metric names, as the table shows them


def _utc(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).isoformat(
        timespec="seconds")


def start(path: str, started: float, reason: str, pipeline: Optional[str] = None) -> str:
    """Called by a run holding the lock: closes the records of runs that never ended
    (interrupted), then appends this run's ``running`` record; returns its run_key."""
    for entry in _open_records(_lines(path)):
        append(path, interrupted(entry))
    key = f"{_utc(started)}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    append(path, {"run_key": key, "pipeline": pipeline, "status": RUNNING,
                  "started": _utc(started),
                  "reason": reason, "run_id": None, "exit_code": None,
                  **dict.fromkeys(FIELDS), "pid": os.getpid(),
                  "host": socket.gethostname(), "error": None})
    return key


def interrupted(entry: dict) -> dict:
    """The final record of a ``running`` record whose run is gone."""
    return dict(entry, status=INTERRUPTED, exit_code=1,
                error=f"killed or interrupted: no record of its end (pid {entry.get('pid')} "
                      f"on {entry.get('host')}); nothing after it was recorded")


def failed(path: str, run_key: str, error: str) -> dict:
    """The final record of run ``run_key`` that ended before its pipeline ran."""
    entry = next(e for e in _merged(_lines(path)) if e.get("run_key") == run_key)
    return dict(entry, status=FINISHED, exit_code=1, error=error)


def record(summary: "RunSummary", started: float, ended: float, reason: str,
           run_key: Optional[str] = None) -> dict:
    """The final record of a run: its outcome, accuracy, and the metric the gate used
    (``metric``: eval.metric as TFMA names it) with its value and the baseline's."""
    overall = summary.metrics.get("", {})
    baseline = summary.baseline_metrics.get("", {})
    gated = summary.gated or None
    return {"run_key": run_key, "pipeline": summary.pipeline, "status": FINISHED,
            "started": _utc(started),
            "seconds": round(ended - started, 1),
            "reason": reason, "run_id": summary.run_id, "span": summary.span,
            "exit_code": summary.exit_code, "accuracy": overall.get(ACCURACY),
            "eval_examples": overall.get("example_count"),
            "baseline_accuracy": baseline.get(ACCURACY), "metric": gated,
            "value": overall.get(gated), "baseline_value": baseline.get(gated),
            "blessed": summary.blessed, "pushed_version": summary.pushed_version,
            "push_cached": summary.push_cached,
            "started_from": summary.started_from, "drift": summary.drift,
            "error": summary.error, "report": summary.report_path}


def append(path: str, entry: dict) -> None:
    """Appends one record as one line; after a torn last line (a run killed while
    appending) it starts a new line, so the torn one alone is lost."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a+b") as f:
        torn = f.tell() > 0 and (f.seek(f.tell() - 1), f.read(1))[1] != b"\n"
        f.write((("\n" if torn else "") + json.dumps(entry, ensure_ascii=False)
                 + "\n").encode("utf-8"))


def _lines(path: str) -> List[dict]:
    """The records of the history file; a line that is not a whole record (a run killed
    while appending, a full disk) is skipped with a warning naming the file and line, so
    one torn line never stops later runs or ``history``."""
    if not os.path.exists(path):
        return []
    records = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if isinstance(record, dict):
                records.append(record)
            else:
                logging.warning("run history %s line %d is not a whole record (a run "
                                "killed while writing it?): skipped", path, number)
    return records


def _merged(lines: List[dict]) -> List[dict]:
    """One entry per run, in start order: a run's final record replaces its ``running``
    record."""
    entries: dict = {}
    for i, line in enumerate(lines):
        entries[line.get("run_key") or i] = line  # old records have no run_key
    return list(entries.values())


def _open_records(lines: List[dict]) -> List[dict]:
    return [e for e in _merged(lines) if e.get("status") == RUNNING]


def read(path: str, unfinished: bool = False, run_active: bool = True,
         pipeline: Optional[str] = None) -> List[dict]:
    """The runs that ended (what the scheduler and ``report`` use); with ``unfinished``,
    also the run in progress and interrupted runs: a ``running`` record is shown as
    interrupted when ``run_active`` is false (no run holds the lock). With ``pipeline``,
    that pipeline's runs only (pipelines sharing an output root share its history file;
    records written before the pipeline was recorded are everyone's)."""
    entries = [e for e in _merged(_lines(path))
               if pipeline is None or e.get("pipeline") in (None, pipeline)]
    if not unfinished:
        return [e for e in entries if e.get("status", FINISHED) == FINISHED]
    return [interrupted(e) if e.get("status") == RUNNING and (not run_active or _gone(e))
            else e for e in entries]


def _gone(entry: dict) -> bool:
    """Whether a ``running`` record's process is known to be gone: it ran on this host
    and its pid is no process now (another run may hold the lock meanwhile)."""
    return entry.get("host") == socket.gethostname() and isinstance(entry.get("pid"), int) \
        and not alive(entry["pid"])


def pipelines(path: str) -> set:
    """The pipeline names the history file's records carry (None: records before names
    were recorded)."""
    return {e.get("pipeline") for e in _lines(path)}


def format_table(entries: List[dict]) -> str:
    """Metrics over time: one row per run, newest last, with its report's path."""
    lines = [f"{'started (UTC)':<26}{'reason':<14}{'span':>5}  {'metric (gated)':<14}"
             f"{'value':>6}  {'baseline':>8}  {'result':<12}{'pushed':<12}{'start':<6}report"]
    for e in entries:
        status = e.get("status", FINISHED)
        result = (status if status != FINISHED else "failed" if e["exit_code"] == 1 else
                  "pushed" if e["pushed_version"] else
                  "cached push" if e.get("push_cached") else
                  "not blessed" if e["blessed"] is False else "not pushed")
        start = "warm" if (e.get("started_from") or "").startswith("warm start") else "base"
        # records before the gated metric was recorded: their accuracy
        metric, value, base = (e.get("metric"), e.get("value"), e.get("baseline_value")) \
            if e.get("metric") else (ACCURACY, e.get("accuracy"), e.get("baseline_accuracy"))
        lines.append(
            f"{e['started']:<26}{e['reason'][:13]:<14}{_text(e['span']):>5}  "
            f"{SHORT_NAMES.get(metric, metric)[:13]:<14}"
            f"{_number(value):>6}  {_number(base):>8}  "
            f"{result:<12}{_text(e['pushed_version']):<12}{start:<6}"
            f"{e.get('report') or '-'}")
        if e.get("error"):
            lines.append(f"{'':<26}  {e['error'][:200]}")
    return "\n".join(lines)


def find_report(entries: List[dict], run_id: Optional[str] = None) -> Optional[str]:
    """The report path of run ``run_id``, or of the newest run that has one."""
    for e in reversed(entries):
        if e.get("report") and (run_id is None or e.get("run_id") == run_id):
            return e["report"]
    return None


def _number(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def _text(value) -> str:
    return "-" if value is None else str(value)
