"""Local scheduler decisions (local/scheduler.py), no pipeline run here
(tests/e2e/test_retraining.py runs the real pipeline through the scheduler); a failed
feedback export does not stop a due run."""
import datetime
import os

import pytest

from local import history, local_runner
from local.scheduler import Scheduler
from local.summary import RunSummary
from serving.feedback import FeedbackLog
from tests.support.feedback_disks import fill
from tests.support.schedules import _config, _entry


def _at(text: str) -> float:
    return datetime.datetime.fromisoformat(text + "+00:00").timestamp()


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


def test_a_failed_feedback_export_is_logged_and_the_due_run_still_happens(small_disk, caplog):
    """A REAL full disk under the data folder: the export fails, leaves no span, and the
    run the new span asks for still starts."""
    config = _config(small_disk, **{"schedule.feedback_dir": str(small_disk / "feedback"),
                                    "schedule.feedback_min_rows": 1})
    log = FeedbackLog(str(small_disk / "feedback"))
    [prediction] = log.record("clf", 1, ["a text"], [[("0", 0.9), ("1", 0.1)]])
    log.correct([{"id": prediction, "label": "1"}])
    (small_disk / "data" / "span-1").mkdir(parents=True)
    filler = fill(small_disk)
    calls = []

    def run(config, reason):
        calls.append(reason)
        return RunSummary("p", blessed=True)

    try:
        tick = Scheduler(config, run=run).tick()
    finally:
        os.remove(filler)
    assert calls == ["new span 1"] and tick.action == "ran"
    assert "feedback export failed: nothing exported" in caplog.text
    assert sorted(os.listdir(small_disk / "data")) == ["span-1"]
