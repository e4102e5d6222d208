"""TextExampleGen's reader on one large data file: peak memory and seconds.

Writes a CSV (or JSON Lines) file of SST-2 train sentences repeated to ``--megabytes``,
then, each in a process of its own, turns it into tf.Examples and reports the process's
peak RSS (VmHWM), its growth over the resident size after the imports, and the seconds
taken. ``--stage reader`` (the
default) runs the executor's reader alone
(``components.text_example_gen.executor._read_examples``, the examples consumed one by
one as Beam consumes them); ``--stage example_gen`` runs the whole TextExampleGen
component (pipeline defaults: split, redaction) under LocalDagRunner and Beam's
DirectRunner. With ``--baseline_repo PATH`` (an older checkout sharing this .venv, e.g.
``git worktree add /tmp/reader_base <rev>``) old and new code run alternately, round by
round; the file holds each run and the ratios of the medians.

Usage: .venv/bin/python bench/reader_memory.py [--megabytes 200] [--format csv|jsonl]
           [--stage reader|example_gen] [--rounds 2] [--baseline_repo PATH] [--output NAME]
Writes bench/results/reader_memory.json (or NAME.json).
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

# Run in a fresh interpreter with the checkout under test first on sys.path: argv is the
# checkout and the data file; the stage's code sets ``examples``.
# The peak is the process's VmHWM, reset to its resident size after the imports (writing
# 5 to /proc/self/clear_refs), so the growth counts what the stage itself takes.
_MEASURE = """
import json, os, sys, tempfile, time
sys.path.insert(0, sys.argv[1])
from components.text_example_gen import executor, parsing
{imports}
def kib(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
base = kib("VmRSS")
started = time.perf_counter()
{stage}
seconds = time.perf_counter() - started
peak = kib("VmHWM")
print(json.dumps({{"examples": examples, "seconds": round(seconds, 1),
                  "peak_rss_mib": round(peak / 1024), "growth_mib": round((peak - base) / 1024)}}))
"""
STAGES = {
    "reader": ("", """
examples = sum(1 for _ in executor._read_examples(sys.argv[2], parsing.ReaderConfig(), []))
"""),
    "example_gen": ("""
from tfx import v1 as tfx
from pipeline.config import load_config
from pipeline.pipeline import example_gen
""", """
root = tempfile.mkdtemp(prefix="reader_memory_")
data = os.path.join(root, "data")
os.makedirs(data)
os.symlink(sys.argv[2], os.path.join(data, os.path.basename(sys.argv[2])))
config = load_config(None, {"output.root": os.path.join(root, "out"), "data.input_dir": data})
tfx.orchestration.LocalDagRunner().run(tfx.dsl.Pipeline(
    pipeline_name="reader-memory", pipeline_root=os.path.join(root, "out"),
    components=[example_gen(config.data, config.data.input_dir, config.privacy)],
    metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
        os.path.join(root, "metadata.sqlite"))))
import glob, tensorflow as tf
examples = sum(1 for path in glob.glob(os.path.join(root, "out", "TextExampleGen", "examples",
                                                    "*", "Split-*", "*"))
               for _ in tf.data.TFRecordDataset(path, compression_type="GZIP"))
import shutil
shutil.rmtree(root)  # the component's output, its metadata and the data folder's link
"""),
}


def data_file(megabytes: float, fmt: str) -> str:
    """SST-2 train sentences, repeated to ``megabytes``, as a CSV or JSON Lines file
    (made once under WORK)."""
    path = os.path.join(WORK, f"reader_memory_{megabytes:g}mb.{fmt}")
    if os.path.exists(path):
        return path
    with open(os.path.join(SST2, "train.tsv"), encoding="utf-8") as f:
        rows = [line.split("\t") for line in f.read().split("\n")[1:] if line]
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


def measure(repo: str, path: str, stage: str) -> dict:
    imports, code = STAGES[stage]
    script = _MEASURE.format(imports=imports, stage=code)
    out = subprocess.run([sys.executable, "-c", script, repo, path], check=True,
                         capture_output=True, text=True,
                         env=dict(os.environ, TF_USE_LEGACY_KERAS="1")).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=float, default=200.0)
    parser.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    parser.add_argument("--stage", choices=tuple(STAGES), default="reader")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--output", default="reader_memory")
    parser.add_argument("--baseline_repo", default="")
    args = parser.parse_args()
    path = data_file(args.megabytes, args.format)
    checkouts = {"now": REPO, **({"before": args.baseline_repo} if args.baseline_repo else {})}
    runs: dict = {tag: [] for tag in checkouts}
    for round_ in range(args.rounds):
        for tag, repo in (checkouts.items() if round_ % 2 == 0
                          else reversed(checkouts.items())):
            runs[tag].append(measure(repo, path, args.stage))
            print(tag, runs[tag][-1], flush=True)
    medians = {tag: {key: statistics.median(run[key] for run in tag_runs)
                     for key in ("seconds", "peak_rss_mib", "growth_mib")}
               for tag, tag_runs in runs.items()}
    result = {"stage": args.stage,
              "file": {"format": args.format, "bytes": os.path.getsize(path)},
              "examples": runs["now"][0]["examples"],  # read; example_gen: written
              "commit": git_commit(), "cpu": cpu_model(), "runs": runs, "medians": medians}
    if args.baseline_repo:
        result["baseline_commit"] = git_commit(args.baseline_repo)
        result["ratios_now_vs_before"] = {
            key: round(medians["now"][key] / medians["before"][key], 3)
            for key in ("seconds", "peak_rss_mib", "growth_mib")}
    write(args.output, result)


if __name__ == "__main__":
    main()
