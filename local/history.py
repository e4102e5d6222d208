"""Run history: one JSON line per pipeline run, appended after the run ends."""
from __future__ import annotations

import datetime
import json
import os
from typing import List, Optional

from local.summary import RunSummary

ACCURACY = "sparse_categorical_accuracy"


def record(summary: RunSummary, started: float, ended: float, reason: str) -> dict:
    overall = summary.metrics.get("", {})
    return {"started": datetime.datetime.fromtimestamp(started, datetime.timezone.utc)
            .isoformat(timespec="seconds"),
            "seconds": round(ended - started, 1),
            "reason": reason, "run_id": summary.run_id, "span": summary.span,
            "exit_code": summary.exit_code, "accuracy": overall.get(ACCURACY),
            "eval_examples": overall.get("example_count"),
            "baseline_accuracy": summary.baseline_metrics.get("", {}).get(ACCURACY),
            "blessed": summary.blessed, "pushed_version": summary.pushed_version,
            "started_from": summary.started_from, "drift": summary.drift,
            "error": summary.error, "report": summary.report_path}


def append(path: str, entry: dict) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry, ensure_ascii=False) + "\n")


def read(path: str) -> List[dict]:
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def format_table(entries: List[dict]) -> str:
    """Metrics over time: one row per run, newest last, with its report's path."""
    lines = [f"{'started (UTC)':<26}{'reason':<14}{'span':>5}  {'accuracy':>8}  "
             f"{'baseline':>8}  {'result':<12}{'pushed':<12}{'start':<6}report"]
    for e in entries:
        result = ("failed" if e["exit_code"] == 1 else
                  "pushed" if e["pushed_version"] else
                  "not blessed" if e["blessed"] is False else "not pushed")
        start = "warm" if (e.get("started_from") or "").startswith("warm start") else "base"
        lines.append(
            f"{e['started']:<26}{e['reason'][:13]:<14}{_text(e['span']):>5}  "
            f"{_number(e['accuracy']):>8}  {_number(e['baseline_accuracy']):>8}  "
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
