"""Report generation cost on the main job's output: seconds as a share of the main job's
wall time (goal <= 3 %) and the page's size in bytes.

Reads the newest run in the output root (default: ./pipeline_output, where `make run`
writes; run it first) and writes its report as the runner does at the end of a run:
in a process that has already imported TensorFlow, TFX and the Trainer's code (timed
separately, as "imports_seconds"). "first_seconds" is the figure a run pays (matplotlib
and the model load cold); later writes reuse warm caches. The 1-minute load average
is recorded: on a shared machine every figure stretches with it. The main job's wall
time comes from bench/results/main_job.json.

Usage: .venv/bin/python bench/report.py [--output.root DIR] [--repeat N]
Writes bench/results/report.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.run_benchmarks import RESULTS, write  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output.root", dest="root", default="pipeline_output")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    import tensorflow_model_analysis  # noqa: F401 - the runner's process has these already
    import tensorflow_text  # noqa: F401

    import models.trainer  # noqa: F401 - the Trainer ran in the runner's process
    from local import local_runner, report, summary
    from pipeline.config import load_config
    imports = time.perf_counter() - started

    config = load_config(None, {"output.root": args.root})
    run = summary.collect(local_runner.local_pipeline(config), started=0)
    if run.run_id is None:
        raise SystemExit(f"no run in {args.root}: `make run` first")
    seconds = []
    for _ in range(args.repeat):  # the first includes loading the model and matplotlib
        tick = time.perf_counter()
        path = report.write(run, config)
        seconds.append(time.perf_counter() - tick)
    with open(os.path.join(RESULTS, "main_job.json")) as f:
        main_wall = json.load(f)["wall_seconds"]
    with open(path, encoding="utf-8") as f:
        html = f.read()
    write("report", {
        "run_id": run.run_id, "eval_examples": run.metrics.get("", {}).get("example_count"),
        "first_seconds": round(seconds[0], 2),
        "median_seconds": round(statistics.median(seconds), 2),
        "imports_seconds": round(imports, 2),
        "main_job_wall_seconds": main_wall,
        "share_of_main_job": round(seconds[0] / main_wall, 4),
        "bytes": os.path.getsize(path), "charts": html.count('<figure class="chart"'),
        "load_average_1min": round(os.getloadavg()[0], 1),
        "goal": "first_seconds <= 3 % of the main job's wall time"})


if __name__ == "__main__":
    main()
