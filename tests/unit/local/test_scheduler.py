"""Local scheduler decisions (local/scheduler.py), no pipeline run here
(tests/e2e/test_retraining.py runs the real pipeline through the scheduler); a failed
feedback export does not stop a due run."""
import datetime
import os
import re

import pytest

from local import history, local_runner, preflight
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


def test_a_fresh_scheduler_runs_a_cron_time_passed_since_the_last_recorded_run(tmp_path):
    """`schedule --once` (cron, systemd) makes a new scheduler each time: the cron time
    counted from its own start was always ahead, so --once never ran a cron run, and a
    restarted daemon skipped the time it missed. With no run recorded, it counts from
    its start."""
    config = _config(tmp_path)
    history.append(config.history_path, _entry("2026-11-20T03:00:00"))
    for now in ("2026-11-24T03:00:30", "2026-11-24T10:00:00"):
        assert Scheduler(config, clock=lambda: _at(now)).due() == "cron"
    history.append(config.history_path, _entry("2026-11-24T03:00:30"))
    assert Scheduler(config, clock=lambda: _at("2026-11-24T10:00:00")).due() is None
    # Nothing recorded yet: counted from the first start, which --once from cron (a new
    # scheduler each call) records; a later call runs the first cron time after it.
    empty = _config(tmp_path / "new")
    assert Scheduler(empty, clock=lambda: _at("2026-11-24T10:00:00")).due() is None
    assert Scheduler(empty, clock=lambda: _at("2026-11-24T23:00:00")).due() is None
    assert Scheduler(empty, clock=lambda: _at("2026-11-25T03:00:30")).due() == "cron"


def test_a_span_whose_runs_are_killed_waits_for_the_cron_time(tmp_path):
    """A span that gets its run OOM-killed (or kill -9) was tried at every tick, without
    end: a crash loop under systemd's Restart= or cron. It is tried SPAN_ATTEMPTS times;
    a killed cron run waits for the next cron time too."""
    config = _config(tmp_path)
    (tmp_path / "data" / "span-1").mkdir(parents=True)
    scheduler = Scheduler(config, clock=lambda: _at("2026-11-24T10:00:00"))
    killed = dict(reason="new span 1", status="interrupted", exit_code=1, span=None)
    history.append(config.history_path, _entry("2026-11-24T09:00:00", run_key="a",
                                               **killed))
    assert scheduler.due() == "new span 1"  # one kill: tried again (a power cut)
    history.append(config.history_path, _entry("2026-11-24T09:30:00", run_key="b",
                                               **dict(killed, status="running")))
    assert scheduler.due() is None  # killed twice: not again before the cron time
    later = Scheduler(config, clock=lambda: _at("2026-11-25T03:00:00"))
    assert later.due() == "cron"
    history.append(config.history_path, _entry("2026-11-25T03:00:00", run_key="c",
                                               status="interrupted", exit_code=1))
    assert later.due() is None


def test_cron_shorthands_are_taken(tmp_path):
    scheduler = Scheduler(_config(tmp_path, **{"schedule.cron": "@daily"}),
                          clock=lambda: _at("2026-11-24T10:00:00"))
    assert round(scheduler.seconds_to_next_cron()) == 14 * 3600


@pytest.mark.parametrize("cron,message", [
    ("0 0 3 * * *", "is not a 5-field cron expression"),  # Quartz's seconds: not daily 03:00
    ("0 3 31 2 *", "never comes"),
])
def test_a_cron_that_would_not_do_what_it_says_is_refused(tmp_path, cron, message):
    with pytest.raises(ValueError, match=f"schedule.cron '{re.escape(cron)}' {message}"):
        Scheduler(_config(tmp_path, **{"schedule.cron": cron}))


def test_runs_recorded_in_the_future_do_not_stop_cron_runs(tmp_path, caplog):
    """A history record of 2031 (the clock was wrong once) held every cron run back
    until 2031, silently."""
    config = _config(tmp_path)
    history.append(config.history_path, _entry("2026-11-20T03:00:00"))
    history.append(config.history_path, _entry("2031-01-01T03:00:00"))
    scheduler = Scheduler(config, clock=lambda: _at("2026-11-24T10:00:00"))
    assert scheduler.due() == "cron" and scheduler.due() == "cron"
    assert caplog.text.count("started in the future") == 1  # not at every tick


def test_renumbered_spans_are_named(tmp_path, caplog):
    config = _config(tmp_path)
    history.append(config.history_path, _entry("2026-11-24T03:00:00", span=5))  # a cron run
    history.append(config.history_path, _entry("2026-11-24T04:00:00", reason="new span 40",
                                               span=40))
    (tmp_path / "data" / "span-5").mkdir(parents=True)  # span 40 removed: 5 was trained
    scheduler = Scheduler(config, clock=lambda: _at("2026-11-24T10:00:00"))
    assert scheduler.due() is None and "renumbered" not in caplog.text
    (tmp_path / "data" / "span-5").rmdir()
    (tmp_path / "data" / "span-1").mkdir()
    assert scheduler.due() is None and scheduler.due() is None
    assert caplog.text.count("newest span (1) is below the highest the run history") == 1


@pytest.mark.parametrize("setting", ["schedule.poll_seconds", "schedule.feedback_min_rows"])
def test_schedule_numbers_below_one_are_refused(tmp_path, setting):
    with pytest.raises(ValueError, match=f"{setting} must be at least 1, got 0"):
        _config(tmp_path, **{setting: "0"})


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
    [prediction] = log.record("bert_classifier", 1, ["a text"], [[("0", 0.9), ("1", 0.1)]])
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


def test_feedback_is_numbered_above_every_span_the_history_has_seen(tmp_path):
    """Span 2 was trained on, then its folder removed: the next export wrote span-2 again,
    which the scheduler, having seen 2, never ran as new."""
    config = _config(tmp_path, **{"schedule.feedback_dir": str(tmp_path / "feedback"),
                                  "schedule.feedback_min_rows": 1})
    (tmp_path / "data" / "span-1").mkdir(parents=True)
    history.append(config.history_path, _entry("2026-11-24T10:00:00", reason="new span 2",
                                               span=2))
    log = FeedbackLog(str(tmp_path / "feedback"))
    [prediction] = log.record("bert_classifier", 1, ["a text"], [[("0", 0.9), ("1", 0.1)]])
    log.correct([{"id": prediction, "label": "1"}])
    scheduler = Scheduler(config, clock=lambda: _at("2026-11-24T10:05:00"))
    assert scheduler.collect_feedback() == str(tmp_path / "data" / "span-3")
    assert scheduler.due() == "new span 3"


def test_a_span_the_settings_checks_refuse_is_tried_again_less_and_less_often(tmp_path):
    """An empty newest span: every tick (schedule.poll_seconds) ran the checks again and
    logged the refusal, for good. Now the refusal is the tick's answer, and the span is
    tried again after 2, 4, 8... polls (an hour at most)."""
    config = _config(tmp_path, **{"schedule.poll_seconds": 60})
    (tmp_path / "data" / "span-1").mkdir(parents=True)  # empty: refused
    calls = []

    def run(config, reason):
        calls.append(reason)
        preflight.check(config)
        return RunSummary("p", blessed=True)
    scheduler = Scheduler(config, clock=lambda: _at("2026-11-24T10:00:00"), run=run)
    first = scheduler.tick()
    assert (first.action, first.exit_code) == ("refused", 1)
    assert "the newest span folder" in first.reason
    again = scheduler.tick()
    assert again.action == "refused" and "refused 1 time(s), tried again in" in again.reason
    assert calls == ["new span 1"]  # not run again yet
