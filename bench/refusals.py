"""Refusal benchmark: wall time of `bert-pipeline run` refusing a mistake.

Each case runs the real command in a child process, from the repository, with everything
else at its defaults, and times it from start to exit; it must exit 1 or 2 with the
expected message and leave no pipeline output behind (no component ran). Cases: an
unknown (abbreviated) setting, a checkpoint folder that does not exist, an input folder
that does not exist, a data.schema_path that does not exist, and a second run on an
output root whose lock another run holds. The import of `tensorflow` (the configuration
checks RE2 patterns with it) is part of every figure; TFX is never imported.

Usage: .venv/bin/python bench/refusals.py [--repeats 3]
Writes bench/results/refusals.json and prints it.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from bench.run_benchmarks import write  # noqa: E402

BERT_PIPELINE = os.path.join(REPO, ".venv", "bin", "bert-pipeline")
ENV = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2",
           HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")


def cases(work: str) -> dict:
    """name -> (extra arguments, text the refusal must contain)."""
    return {
        "abbreviated setting (--data.text_colum)": (
            ["--data.text_colum", "body"], "did you mean --data.text_column?"),
        "missing checkpoint folder": (
            ["--model.checkpoint", os.path.join(work, "no_bert")],
            "model.checkpoint: folder"),
        "missing input folder": (
            ["--data.input_dir", os.path.join(work, "no_data")], "data.input_dir: folder"),
        "missing schema file": (
            ["--data.schema_path", os.path.join(work, "no_schema.pbtxt")],
            '--data.schema_path ""'),
        "busy output root (run lock held)": ([], "another run is active"),
    }


def refusal_seconds(args: list, expected: str, root: str) -> float:
    started = time.monotonic()
    done = subprocess.run([BERT_PIPELINE, "run", "--output.root", root, *args], cwd=REPO,
                          env=ENV, capture_output=True, text=True, timeout=600)
    seconds = time.monotonic() - started
    if done.returncode not in (1, 2) or expected not in done.stderr:
        raise RuntimeError(f"not refused as expected ({done.returncode}): {done.stderr}")
    leftovers = set(os.listdir(root)) - {"run.lock", "history.jsonl"} \
        if os.path.isdir(root) else set()
    if leftovers:
        raise RuntimeError(f"a component ran: {sorted(leftovers)} in {root}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from local import local_runner
    from pipeline.config import load_config

    results = {}
    with tempfile.TemporaryDirectory() as work:
        for name, (extra, expected) in cases(work).items():
            root = os.path.join(work, "out", name.split()[0])
            times = []
            for _ in range(args.repeats):
                if name.startswith("busy"):
                    with local_runner.run_lock(load_config(None, {"output.root": root})):
                        times.append(refusal_seconds(extra, expected, root))
                else:
                    times.append(refusal_seconds(extra, expected, root))
            results[name] = {"median_s": round(statistics.median(times), 2),
                             "max_s": round(max(times), 2), "runs": len(times)}
            print(f"{name:<42} median {results[name]['median_s']:6.2f}s "
                  f"max {results[name]['max_s']:6.2f}s", flush=True)
    write("refusals", {"command": "bert-pipeline run <mistake>", "refusals": results})


if __name__ == "__main__":
    main()
