"""A tiny pipeline run (the tiny BERT of tests/support/tiny_bert.py, 400 SST-2 rows), timed.

Prints and writes bench/results/tiny_run.json: wall seconds, seconds to the first
component (process start -> "... started" line on stderr), seconds per component (the
run summary's table), CPU seconds and peak RSS (the run's process and its children).

With ``--baseline_repo PATH`` (an older checkout sharing this .venv, e.g.
``git worktree add /tmp/tiny_base <rev>``) old and new code run alternately, round by
round, and the results hold the median of each and their ratios: the machine is noisy.

Usage: .venv/bin/python bench/tiny_run.py [--rounds 2] [--baseline_repo /tmp/tiny_base]
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.run_benchmarks import (REPO, RESULTS, WORK, _component_seconds,  # noqa: E402
                                  git_commit)

ROWS = 400
# The settings tests/support/pipeline_runs.py's tiny_overrides gives a fast run.
TINY = ["--model.epochs", "1", "--model.batch_size", "16", "--model.max_seq_length", "64",
        "--eval.min_accuracy", "0.0"]
STARTED = re.compile(r"^\[\s*[\d.]+s\] (\S+) started$")


def prepare() -> tuple[str, str]:
    """(tiny checkpoint, data folder with ROWS rows), made once under WORK."""
    from tests.support.pipeline_runs import sample_rows
    from tests.support.tiny_bert import make_tiny_checkpoint

    checkpoint = os.path.join(WORK, "tiny_bert")
    if not os.path.exists(os.path.join(checkpoint, "config.json")):
        make_tiny_checkpoint(checkpoint)
    data = os.path.join(WORK, f"tiny_run_data_{ROWS}")
    os.makedirs(data, exist_ok=True)
    with open(os.path.join(data, "reviews.tsv"), "w", encoding="utf-8") as f:
        f.write("sentence\tlabel\n" + "".join(f"{s}\t{l}\n" for s, l in sample_rows(ROWS)))
    return checkpoint, data


def _watch_stderr(stream, started: float, marks: dict, tail: list) -> None:
    """Notes when the first component starts; keeps the last lines for failures."""
    for line in stream:
        if "first_component_seconds" not in marks and STARTED.match(line.strip()):
            marks["first_component_seconds"] = time.monotonic() - started
        tail.append(line)
        del tail[:-40]


def run_once(tag: str, repo: str, checkpoint: str, data: str) -> dict:
    """`bert-pipeline run` of ``repo``'s code (this .venv) on fresh output folders."""
    root = os.path.join(WORK, "tiny_run", tag)
    subprocess.run(["rm", "-rf", root], check=True)
    env = dict(os.environ, PYTHONPATH=repo, TF_USE_LEGACY_KERAS="1",
               TF_CPP_MIN_LOG_LEVEL="2")
    cmd = [os.path.join(os.path.dirname(sys.executable), "bert-pipeline"), "run",
           "--data.input_dir", data, "--model.checkpoint", checkpoint, *TINY,
           "--output.root", os.path.join(root, "pipeline_output"),
           "--output.serving_dir", os.path.join(root, "serving_model")]
    marks, tail = {}, []
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=repo, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    watcher = threading.Thread(target=_watch_stderr, args=(proc.stderr, started, marks, tail))
    watcher.start()
    stdout = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - started
    watcher.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    summary = stdout[stdout.find("Pipeline '"):]
    if proc.returncode != 0:
        print("".join(tail), file=sys.stderr)
    result = {"exit_code": proc.returncode, "wall_seconds": round(wall, 1),
              "first_component_seconds": round(marks.get("first_component_seconds", -1), 1),
              "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
              "peak_rss_gib": round(usage.ru_maxrss / 2**20, 2),
              "components": _component_seconds(summary),
              "blessed": "Gate: BLESSED" in summary,
              "serving_check_passed": "Serving check: PASSED" in summary,
              "pushed": "Pushed: version" in summary,
              "training": _training_figures(root)}
    print(f"{tag}: " + json.dumps(result), flush=True)
    return result


def _training_figures(root: str) -> dict:
    """The Trainer's final loss and accuracies (train_stats.json): the same code gives the
    same figures, so old and new code can be checked to train alike."""
    found = glob.glob(os.path.join(root, "pipeline_output", "*", "Trainer", "model_run", "*",
                                   "train_stats.json"))
    if not found:
        return {}
    with open(found[0], encoding="utf-8") as f:
        stats = json.load(f)
    return {**stats.get("final", {}), "eval_top_probability": stats.get("eval_top_probability")}


def median_of(runs: list) -> dict:
    """Medians over rounds: the scalar figures and each component's seconds."""
    keys = ("wall_seconds", "first_component_seconds", "cpu_seconds", "peak_rss_gib")
    result = {k: round(statistics.median(r[k] for r in runs), 2) for k in keys}
    names = runs[0]["components"]
    result["components"] = {n: round(statistics.median(r["components"].get(n, 0)
                                                        for r in runs), 1) for n in names}
    return result


def ratios(now: dict, before: dict) -> dict:
    pairs = [(k, now[k], before[k]) for k in ("wall_seconds", "first_component_seconds",
                                               "cpu_seconds", "peak_rss_gib")]
    pairs += [(n, now["components"].get(n, 0), s) for n, s in before["components"].items()
              if s >= 1.0]
    return {k: round(a / b, 2) for k, a, b in pairs if b}


def cpu_model() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    found = re.search(r"Model name:\s*(.+)", out)
    return f"{found.group(1).strip() if found else platform.processor()}, " \
           f"{os.cpu_count()} cores"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2, help="Runs of each variant.")
    parser.add_argument("--baseline_repo", default="",
                        help="An older checkout, run alternately with this one.")
    parser.add_argument("--output", default=os.path.join(RESULTS, "tiny_run.json"))
    parser.add_argument("--note", default="", help="Written into the results as is.")
    args = parser.parse_args()
    checkpoint, data = prepare()
    variants = {"current": REPO}
    if args.baseline_repo:
        variants = {"baseline": os.path.abspath(args.baseline_repo), **variants}
    runs = {name: [] for name in variants}
    load_before = os.getloadavg()
    for round_number in range(args.rounds):
        for name, repo in variants.items():
            runs[name].append(run_once(f"{name}_{round_number}", repo, checkpoint, data))
    result = {"note": args.note, "rows": ROWS, "settings": TINY, "rounds": args.rounds,
              "revisions": {name: git_commit(repo, short=True) for name, repo in variants.items()},
              "median": {name: median_of(r) for name, r in runs.items()}, "runs": runs,
              "load_average_before_after": [round(load_before[0], 2),
                                            round(os.getloadavg()[0], 2)],
              "machine": cpu_model(), "date": time.strftime("%Y-%m-%d %H:%M UTC",
                                                             time.gmtime())}
    failed = [r for name in runs for r in runs[name] if r["exit_code"] != 0]
    if args.baseline_repo and not failed:
        result["ratios (current / baseline)"] = ratios(result["median"]["current"],
                                                       result["median"]["baseline"])
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))
    if failed:
        sys.exit(f"{len(failed)} run(s) failed: no ratios")


if __name__ == "__main__":
    main()
