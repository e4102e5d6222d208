"""The run history (local/history.py): runs that never ended, torn lines, the table and
its command."""
import json
import os
import time

from local import history
from tests.support.schedules import _config, _entry


def test_history_shows_runs_that_never_ended_and_the_next_run_closes_them(tmp_path):
    from local import history
    path = str(tmp_path / "history.jsonl")
    old = {"started": "2026-11-24T03:00:00+00:00", "seconds": 60.0, "reason": "cron",
           "run_id": "r0", "span": None, "exit_code": 0, "accuracy": 0.9,
           "eval_examples": 10, "baseline_accuracy": None, "blessed": True,
           "pushed_version": "1", "started_from": None, "drift": None, "error": None,
           "report": None}  # a record written before runs had a run_key
    history.append(path, old)
    killed = history.start(path, time.time(), "new span 2")
    assert history.read(path) == [old]  # the scheduler sees finished runs only
    assert history.read(path, unfinished=True)[-1]["status"] == "running"
    shown = history.read(path, unfinished=True, run_active=False)[-1]
    assert shown["status"] == "interrupted" and shown["exit_code"] == 1
    assert f"pid {os.getpid()}" in shown["error"]
    # the next run (it holds the lock) records the killed one as interrupted
    nxt = history.start(path, time.time(), "manual")
    history.append(path, history.failed(path, nxt, "ValueError: bad"))
    entries = history.read(path, unfinished=True, run_active=False)
    assert [(e.get("run_key"), e.get("status", "finished")) for e in entries] == [
        (None, "finished"), (killed, "interrupted"), (nxt, "finished")]
    assert entries[2]["error"] == "ValueError: bad"
    table = history.format_table(entries)
    assert "interrupted" in table and "killed or interrupted" in table
    assert len(history.read(path)) == 2  # old and the failed one; not the interrupted


def test_a_torn_history_line_is_skipped_and_later_runs_record_whole_lines(tmp_path):
    """A run killed while appending leaves a line cut short without its newline: later
    runs, ``history`` and the scheduler skip it (it stopped every run with a
    JSONDecodeError) and the next record starts a line of its own."""
    from local import history
    path = str(tmp_path / "history.jsonl")
    first = history.start(path, time.time(), "manual")
    history.append(path, history.failed(path, first, "ValueError: bad"))
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"run_key": "2026-12-05T01:00:00+00:00-7-ab", "status": "runn')
    second = history.start(path, time.time(), "cron")
    history.append(path, history.failed(path, second, "ValueError: worse"))
    assert [(e["run_key"], e["error"]) for e in history.read(path)] == [
        (first, "ValueError: bad"), (second, "ValueError: worse")]


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
    assert lines[1].split()[:8] == ["2026-11-24T03:00:00+00:00", "new", "span", "1", "1",
                                   "accuracy", "0.9000", "-"]
    assert "accuracy      0.9100    0.9000  pushed      18          warm" in lines[2]
    assert "failed" in lines[3] and lines[4].strip().startswith("DataDriftError: data drift")
    assert main(["history", "--output.root", config.output.root, "--json", "--last", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["span"] == 3


def test_history_and_report_are_scoped_to_the_pipeline(tmp_path, capsys):
    """Two pipelines on one output.root share its history file: `history`, `report` and
    the scheduler showed or counted the other pipeline's runs as their own."""
    from cli.main import main

    config = _config(tmp_path)
    root = ["--output.root", config.output.root]
    page = tmp_path / "index.html"
    page.write_text("<html></html>")
    history.append(config.history_path, _entry("2026-11-24T03:00:00", run_id="old"))
    history.append(config.history_path, _entry("2026-11-25T03:00:00", run_id="theirs",
                                               pipeline="other", report=str(page)))
    key = history.start(config.history_path, time.time(), "manual", pipeline="mine")
    assert [e["run_id"] for e in history.read(config.history_path, unfinished=True,
                                              pipeline="mine")] == ["old", None]
    assert history.read(config.history_path, unfinished=True)[-1]["run_key"] == key
    assert main(["history", *root, "--name", "mine", "--json"]) == 0
    assert "theirs" not in capsys.readouterr().out
    assert main(["report", *root, "--name", "mine"]) == 1  # theirs is not its report
    assert "no report" in capsys.readouterr().err
    named = _config(tmp_path / "named")  # runs of named pipelines only
    for pipeline in ("other", "mine"):
        history.append(named.history_path, _entry("2026-11-26T03:00:00", pipeline=pipeline))
    assert main(["history", "--output.root", named.output.root, "--name", "third"]) == 0
    out = capsys.readouterr().out
    assert "no runs of pipeline 'third' recorded in" in out
    assert "it holds runs of pipeline(s) 'mine', 'other' (name, or --config)" in out
    assert main(["report", *root, "--name", "other"]) == 0
    assert capsys.readouterr().out.strip() == str(page)


def test_history_shows_the_metric_the_gate_used(tmp_path, capsys):
    """The history recorded and showed accuracy whatever eval.metric gated: a run gated on
    macro_f1 showed accuracy 0.93 vs 0.90 beside "not blessed", and multi-label runs
    (no accuracy) showed nothing."""
    from cli.main import main
    from local.summary import RunSummary

    config = _config(tmp_path)
    summary = RunSummary(pipeline="bert-text-classifier", run_id="r", blessed=False,
                         gated="macro_f1",
                         metrics={"": {"sparse_categorical_accuracy": 0.93, "macro_f1": 0.61}},
                         baseline_metrics={"": {"sparse_categorical_accuracy": 0.9,
                                                "macro_f1": 0.7}})
    entry = history.record(summary, time.time() - 60, time.time(), "manual", "k")
    assert (entry["metric"], entry["value"], entry["baseline_value"]) == ("macro_f1", 0.61, 0.7)
    history.append(config.history_path, entry)
    assert main(["history", "--output.root", config.output.root]) == 0
    row = capsys.readouterr().out.splitlines()[1]
    assert "macro_f1      0.6100    0.7000  not blessed" in row, row


def test_a_killed_run_is_not_shown_running_while_another_holds_the_lock(tmp_path):
    """While a new run holds the lock (its setting checks, before it closes old records),
    a run killed earlier was shown as running. A running record of this host whose
    process is gone is interrupted, whatever holds the lock."""
    import subprocess
    import sys

    path = str(tmp_path / "history.jsonl")
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    history.start(path, time.time(), "killed")
    with open(path, encoding="utf-8") as f:
        record = json.loads(f.read())
    history.append(path, dict(record, pid=int(gone)))  # as if that process had run it
    history.start(path + ".2", time.time(), "alive")  # this process: alive
    [killed] = history.read(path, unfinished=True, run_active=True)
    assert killed["status"] == history.INTERRUPTED
    [alive] = history.read(path + ".2", unfinished=True, run_active=True)
    assert alive["status"] == history.RUNNING


def test_a_cached_push_is_recorded_as_one():
    """A run whose Pusher was cached exits 0, but its history row said "not pushed"."""
    from local.summary import RunSummary

    summary = RunSummary(pipeline="p", run_id="r", blessed=True,
                         push_cached="version 17, /serving/m/17")
    entry = history.record(summary, time.time() - 60, time.time(), "manual", "k")
    assert entry["push_cached"] == "version 17, /serving/m/17" and entry["exit_code"] == 0
    assert "cached push" in history.format_table([entry]).splitlines()[1]
