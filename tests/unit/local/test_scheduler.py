"""Local scheduler decisions, the run lock and the history table (no pipeline run here;
tests/test_retraining.py runs the real pipeline through the scheduler)."""
import datetime
import json

import pytest

from local import history, local_runner
from local.scheduler import Scheduler
from pipeline.config import load_config


def _config(tmp_path, **extra):
    return load_config(None, dict({"data.input_dir": str(tmp_path / "data"),
                                   "data.span_pattern": "span-{SPAN}",
                                   "output.root": str(tmp_path / "out"),
                                   "schedule.cron": "0 3 * * *"}, **extra))


def _at(text: str) -> float:
    return datetime.datetime.fromisoformat(text + "+00:00").timestamp()


def _entry(started: str, **fields) -> dict:
    return dict({"started": started + "+00:00", "seconds": 60.0, "reason": "cron",
                 "run_id": "r", "span": None, "exit_code": 0, "accuracy": 0.9,
                 "baseline_accuracy": None, "blessed": True, "pushed_version": "1",
                 "started_from": "from the checkpoint x", "drift": None, "error": None},
                **fields)


def test_due_on_new_span_and_on_cron_without_catch_up(tmp_path):
    config = _config(tmp_path)
    now = [_at("2026-11-24T10:00:00")]
    scheduler = Scheduler(config, clock=lambda: now[0])
    assert scheduler.due() is None  # no span yet, no cron time since start
    (tmp_path / "data" / "span-1").mkdir(parents=True)
    assert scheduler.due() == "new span 1"
    history.append(config.history_path, _entry("2026-11-24T10:00:00", reason="new span 1",
                                               span=1))
    assert scheduler.due() is None
    (tmp_path / "data" / "span-2").mkdir()
    # a run that failed before ingesting still counts as having tried span 2
    history.append(config.history_path, _entry("2026-11-24T10:05:00", reason="new span 2",
                                               exit_code=1))
    assert scheduler.due() is None
    now[0] = _at("2026-11-27T09:00:00")  # three 03:00 times passed: one run covers them
    assert scheduler.due() == "cron"
    history.append(config.history_path, _entry("2026-11-27T09:00:00"))
    assert scheduler.due() is None
    assert round(scheduler.seconds_to_next_cron()) == 18 * 3600


def test_a_tick_while_a_run_is_active_does_nothing(tmp_path):
    config = _config(tmp_path)
    (tmp_path / "data" / "span-1").mkdir(parents=True)
    with local_runner.run_lock(config):
        tick = Scheduler(config).tick()  # the real runner: refused by the lock
        assert tick.action == "busy"
        assert "another run is active" in tick.reason and "pid" in tick.reason
    assert history.read(config.history_path) == []
    with local_runner.run_lock(config):  # released after the first holder
        pass


def test_invalid_cron_is_refused(tmp_path):
    with pytest.raises(ValueError, match="schedule.cron 'every day'"):
        Scheduler(_config(tmp_path, **{"schedule.cron": "every day"}))


def test_history_table_and_cli(tmp_path, capsys):
    from cli.main import main

    config = _config(tmp_path)
    history.append(config.history_path, _entry("2026-11-24T03:00:00", reason="new span 1",
                                               span=1, pushed_version="17"))
    history.append(config.history_path, _entry(
        "2026-11-25T03:00:00", reason="new span 2", span=2, accuracy=0.91,
        baseline_accuracy=0.9, pushed_version="18", started_from="warm start from /m/17 (..)"))
    history.append(config.history_path, _entry(
        "2026-11-26T03:00:00", reason="new span 3", span=3, accuracy=None, blessed=None,
        pushed_version=None, exit_code=1, started_from=None,
        error="DataDriftError: data drift: span 3 vs span 2: label distribution"))
    assert main(["history", "--output.root", config.output.root]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:7] == ["2026-11-24T03:00:00+00:00", "new", "span", "1", "1",
                                   "0.9000", "-"]
    assert "0.9100    0.9000  pushed      18          warm" in lines[2]
    assert "failed" in lines[3] and lines[4].strip().startswith("DataDriftError: data drift")
    assert main(["history", "--output.root", config.output.root, "--json", "--last", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["span"] == 3


def test_loop_reports_a_failed_tick_and_goes_on(tmp_path, capsys):
    config = _config(tmp_path)
    (tmp_path / "data" / "span-1").mkdir(parents=True)
    calls = []

    def broken_run(config, reason):
        calls.append(reason)
        raise OSError("disk full")

    Scheduler(config, run=broken_run).loop(max_ticks=1)
    assert calls == ["new span 1"]
    assert capsys.readouterr().out.rstrip().endswith("error: OSError: disk full")


def test_history_looking_at_the_lock_does_not_refuse_a_run(tmp_path):
    """``history`` (local_runner.run_active) holds the run lock shared for an instant; a run
    starting then waits for it instead of failing with "another run is active". A lock
    held by a run still refuses (the wait is bounded)."""
    import fcntl
    import threading
    config = _config(tmp_path)
    with local_runner.run_lock(config):
        assert local_runner.run_active(config)
    assert not local_runner.run_active(config)
    with open(tmp_path / "out" / local_runner.LOCK_FILE, encoding="utf-8") as probe:
        fcntl.flock(probe, fcntl.LOCK_SH)  # as run_active holds it while it looks
        threading.Timer(0.2, fcntl.flock, (probe, fcntl.LOCK_UN)).start()
        with local_runner.run_lock(config):
            assert local_runner.run_active(config)
        fcntl.flock(probe, fcntl.LOCK_SH)  # never released while the run tries
        with pytest.raises(local_runner.RunInProgress):
            with local_runner.run_lock(config):
                pass
