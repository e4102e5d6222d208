"""TextExampleGen's reader on one large data file: peak memory and seconds.

Writes a CSV (or JSON Lines) file of SST-2 train sentences repeated to ``--megabytes``,
then, each in a process of its own, turns it into tf.Examples with the executor's reader
(``components.text_example_gen.executor._read_examples``, the examples consumed one by
one as Beam consumes them), and reports the process's peak RSS, its growth over the
imports, and the seconds taken. With ``--baseline_repo PATH`` (an older checkout sharing
this .venv, e.g. ``git worktree add /tmp/reader_base <rev>``) old and new code run
alternately, round by round; the file holds each run and the ratios of the medians.

Usage: .venv/bin/python bench/reader_memory.py [--megabytes 200] [--format csv|jsonl]
                                               [--rounds 2] [--baseline_repo PATH]
Writes bench/results/reader_memory.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.run_benchmarks import REPO, SST2, WORK, git_commit, write  # noqa: E402
from bench.tiny_run import cpu_model  # noqa: E402

# Run in a fresh interpreter with the checkout under test first on sys.path.
_MEASURE = """
import json, os, resource, sys, time
sys.path.insert(0, sys.argv[1])
from components.text_example_gen import executor, parsing
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started, examples = time.perf_counter(), 0
for _ in executor._read_examples(sys.argv[2], parsing.ReaderConfig(), []):
    examples += 1
seconds = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"examples": examples, "seconds": round(seconds, 1),
                  "peak_rss_mib": round(peak / 1024), "growth_mib": round((peak - base) / 1024)}))
"""


def data_file(megabytes: float, fmt: str) -> str:
    """SST-2 train sentences, repeated to ``megabytes``, as a CSV or JSON Lines file
    (made once under WORK)."""
    path = os.path.join(WORK, f"reader_memory_{megabytes:g}mb.{fmt}")
    if os.path.exists(path):
        return path
    with open(os.path.join(SST2, "train.tsv"), encoding="utf-8") as f:
        rows = [line.split("\t") for line in f.read().splitlines()[1:]]
    os.makedirs(WORK, exist_ok=True)
    size, index = 0, 0
    with open(path + ".partial", "w", encoding="utf-8") as f:
        if fmt == "csv":
            f.write("sentence,label\n")
        while size < megabytes * 1e6:
            text, label = rows[index % len(rows)]
            index += 1
            line = ('"{}",{}\n'.format(text.replace('"', '""'), label) if fmt == "csv"
                    else json.dumps({"sentence": text, "label": int(label)}) + "\n")
            f.write(line)
            size += len(line.encode("utf-8"))
    os.replace(path + ".partial", path)
    return path


def measure(repo: str, path: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _MEASURE, repo, path], check=True,
                         capture_output=True, text=True,
                         env=dict(os.environ, TF_USE_LEGACY_KERAS="1")).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=float, default=200.0)
    parser.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--baseline_repo", default="")
    args = parser.parse_args()
    path = data_file(args.megabytes, args.format)
    checkouts = {"now": REPO, **({"before": args.baseline_repo} if args.baseline_repo else {})}
    runs: dict = {tag: [] for tag in checkouts}
    for round_ in range(args.rounds):
        for tag, repo in (checkouts.items() if round_ % 2 == 0
                          else reversed(checkouts.items())):
            runs[tag].append(measure(repo, path))
            print(tag, runs[tag][-1], flush=True)
    medians = {tag: {key: statistics.median(run[key] for run in tag_runs)
                     for key in ("seconds", "peak_rss_mib", "growth_mib")}
               for tag, tag_runs in runs.items()}
    result = {"file": {"format": args.format, "bytes": os.path.getsize(path),
                       "rows": runs["now"][0]["examples"]},
              "commit": git_commit(), "cpu": cpu_model(), "runs": runs, "medians": medians}
    if args.baseline_repo:
        result["baseline_commit"] = git_commit(args.baseline_repo)
        result["ratios_now_vs_before"] = {
            key: round(medians["now"][key] / medians["before"][key], 3)
            for key in ("seconds", "peak_rss_mib", "growth_mib")}
    write("reader_memory", result)


if __name__ == "__main__":
    main()
