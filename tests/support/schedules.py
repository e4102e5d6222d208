"""Scheduler configs and history entries."""
from pipeline.config import load_config


def _config(tmp_path, **extra):
    return load_config(None, dict({"data.input_dir": str(tmp_path / "data"),
                                   "data.span_pattern": "span-{SPAN}",
                                   "output.root": str(tmp_path / "out"),
                                   "schedule.cron": "0 3 * * *"}, **extra))


def _entry(started: str, **fields) -> dict:
    return dict({"started": started + "+00:00", "seconds": 60.0, "reason": "cron",
                 "run_id": "r", "span": None, "exit_code": 0, "accuracy": 0.9,
                 "baseline_accuracy": None, "blessed": True, "pushed_version": "1",
                 "started_from": "from the checkpoint x", "drift": None, "error": None},
                **fields)
