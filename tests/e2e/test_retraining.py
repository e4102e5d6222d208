"""Scheduled retraining, really run: spans, rolling window, warm start, gate against the
last blessed model, drift blocking a bad data drop, the run lock and the history."""
import glob
import json
import os

from cli.main import main
from local import history, local_runner
from local.scheduler import Scheduler
from pipeline.config import load_config
from tests.support.pipeline_runs import sample_rows, tiny_overrides, write_span


def test_spans_warm_start_and_drift_through_the_local_scheduler(tmp_path, tiny_checkpoint,
                                                                 capsys):
    data = str(tmp_path / "data")
    rows = sample_rows(1200)
    settings = tiny_overrides(tmp_path, tiny_checkpoint, data, **{
        "data.span_pattern": "span-{SPAN}", "data.window_spans": 2,
        "data.eval_fraction": 0.2, "model.warm_start": True,
        "eval.max_accuracy_drop": 0.5,
        "trainer.workers": 2})  # warm start under MultiWorkerMirroredStrategy too
    config = load_config(None, settings)
    served = os.path.join(config.push_dir, "*")
    scheduler = Scheduler(config)

    write_span(data, 1, rows[:250])
    first = scheduler.tick()
    assert (first.action, first.reason, first.exit_code) == ("ran", "new span 1", 0)
    [v1] = glob.glob(served)
    assert scheduler.tick().action == "idle"  # nothing new, no cron time passed

    write_span(data, 2, rows[250:500])
    second = scheduler.tick()
    assert (second.action, second.reason, second.exit_code) == ("ran", "new span 2", 0)
    [_, v2] = sorted(glob.glob(served))
    one, two = history.read(config.history_path)
    assert (one["span"], two["span"]) == (1, 2)
    assert one["started_from"].startswith("from the checkpoint")
    assert one["drift"] == "not checked: span 1 is the first span (no earlier span to " \
                           "compare with)"
    assert two["started_from"].startswith("warm start from ")
    assert two["started_from"].endswith("(2 of 2 labels carried over)")
    assert two["baseline_accuracy"] is not None  # gated against v1
    assert two["drift"].startswith("span 2 vs 1: no drift (label_l_infinity=")
    with open(os.path.join(v2, "assets.extra", "model_info.json")) as f:
        info = json.load(f)
    assert info["train_examples"] > 250  # span 1 whole + span 2's train split
    assert info["started_from"] == two["started_from"]
    assert two["eval_examples"] < 0.2 * 250 * 1.5  # span 2's eval split only

    # span 3: nine in ten rows positive -> drift stops the run before training
    positive = [r for r in rows[500:] if r[1] == "1"][:180]
    negative = [r for r in rows[500:] if r[1] == "0"][:20]
    write_span(data, 3, positive + negative)
    with local_runner.run_lock(config):  # a tick while a run is active does nothing
        assert scheduler.tick().action == "busy"
    assert len(history.read(config.history_path)) == 2
    third = scheduler.tick()
    assert (third.action, third.reason, third.exit_code) == ("ran", "new span 3", 1)
    assert sorted(glob.glob(served)) == [v1, v2]  # v2 is still the one served
    drifted = history.read(config.history_path)[-1]
    assert drifted["span"] == 3 and drifted["pushed_version"] is None
    assert "data drift: span 3 vs span 2: label distribution (L-infinity distance)" \
        in drifted["error"]
    assert scheduler.tick().action == "idle"  # the drifted span is not retried

    capsys.readouterr()
    assert main(["history", "--output.root", config.output.root]) == 0
    table = capsys.readouterr().out
    assert "new span 3" in table and "failed" in table and "warm" in table

    # span 4 has span 3's skew: it is compared with span 2, the last accepted span (span
    # 3's check published no report), and refused too; against span 3 it passed.
    write_span(data, 4, [r for r in rows[500:] if r[1] == "1"][180:360] +
               [r for r in rows[500:] if r[1] == "0"][20:40])
    fourth = scheduler.tick()
    assert (fourth.action, fourth.reason, fourth.exit_code) == ("ran", "new span 4", 1)
    refused = history.read(config.history_path)[-1]
    assert "data drift: span 4 vs span 2: label distribution (L-infinity distance)" \
        in refused["error"]
    assert "span(s) 3 of the training window (data.window_spans 2) were not accepted" \
        in refused["error"]  # span 3 would train with span 4
    assert refused["drift"].startswith("span 4 vs span 2: label distribution")
    assert sorted(glob.glob(served)) == [v1, v2]

    # the operator accepts the shift: drift_action=warn trains on span 4 and records it
    accepted = local_runner.run(load_config(None, dict(settings, **{"data.drift_action": "warn"})))
    assert accepted.exit_code == 0 and accepted.span == 4
    assert accepted.drift.startswith("span 4 vs span 2: label distribution")
    assert accepted.drift.endswith("(the last accepted span) (data.drift_action=warn: "
                                   "training anyway)")
    assert len(glob.glob(served)) == 3
    assert history.read(config.history_path)[-1]["drift"] == accepted.drift
