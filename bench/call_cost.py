"""What one model call costs besides its rows: the constant behind length-aware batches.

serving/lengths.py cuts a batch into groups of similar length when the padding saved is
worth more than an extra call; ``CALL_OVERHEAD_BYTES`` is that call's fixed cost in padded
bytes. This measures it on a served model (default: the main job's), float32 and
bfloat16 with folded weights (as ``--mixed_precision=bfloat16 --bfloat16_fold_weights``
serves), each in a process of its own:

- the CPU time of one call of ``predict_text`` for rows of 30, 60, 120 and 230 bytes
  (SST-2 dev sentences cut to that length) and 1 to 32 rows, and the least-squares fit
  cpu = fixed + per_row x rows + per_byte x rows x bytes; fixed / per_byte is the
  overhead in padded bytes (the per-row term is the same however rows are grouped);
- random batches of SST-2 dev (9 rows, what 32 clients make of the server's batching,
  and 32) grouped with overheads of 256 and 512 bytes and not grouped: CPU per text,
  the settings taken in turn on each batch (a different one first each time) after a
  warm-up pass, so a drifting machine weighs on all three alike.

Usage: .venv/bin/python bench/call_cost.py [--model_base_path DIR]
Writes bench/results/call_cost.json.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.run_benchmarks import write  # noqa: E402
from bench.serving_speed import _latest, cpu_model, default_base, dev_rows  # noqa: E402

LENGTHS = (30, 60, 120, 230)
ROWS = (1, 4, 8, 16, 32)
OVERHEADS = (256, 512, None)  # None: the batch runs as one call
BATCH_ROWS = (9, 32)


def measure(version: str, mode: str) -> dict:
    import numpy as np
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    from serving import lengths, precision
    precision.enable("" if mode == "float32" else "bfloat16", mode == "bfloat16")
    model = tf.saved_model.load(version)  # holds the signature's variables
    predict = model.signatures["predict_text"]
    if mode == "bfloat16":
        predict = precision.FoldedSignature(predict)
    texts, _ = dev_rows()

    def cpu_per_call(batches, seconds=1.5):
        predict(text=tf.constant(batches[0]))
        started, wall, calls = time.process_time(), time.perf_counter(), 0
        while time.perf_counter() - wall < seconds or calls < 5:
            predict(text=tf.constant(batches[calls % len(batches)]))["probabilities"].numpy()
            calls += 1
        return 1000 * (time.process_time() - started) / calls

    grid, design, observed = {}, [], []
    for size in LENGTHS:
        pool = [t[:size] for t in texts if len(t) >= size]
        if not pool:
            raise SystemExit(f"no dev text has {size} bytes: the fit needs texts of every "
                             f"length in {LENGTHS}")
        pool = (pool * (64 // len(pool) + 1))[:max(64, len(pool))]
        for rows in ROWS:
            batches = [pool[i:i + rows] for i in range(0, len(pool) - rows + 1, max(1, rows // 2))]
            ms = cpu_per_call(batches)
            grid[f"{size} bytes x {rows} rows"] = round(ms, 2)
            design.append((1.0, rows, rows * size))
            observed.append(ms)
    (fixed, per_row, per_byte), residuals = np.linalg.lstsq(
        np.array(design), np.array(observed), rcond=None)[:2]
    grouped = {}
    for rows in BATCH_ROWS:
        shuffled = texts[:]
        random.Random(1).shuffle(shuffled)
        batches = [np.array(shuffled[i:i + rows], object)
                   for i in range(0, len(shuffled) - rows + 1, rows)][:40]
        cpu, calls = dict.fromkeys(OVERHEADS, 0.0), dict.fromkeys(OVERHEADS, 0)

        def run(batch, overhead):
            sizes = lengths.row_lengths({"text": batch})
            groups = ([np.arange(len(batch))] if overhead is None
                      else lengths.length_groups(sizes, lengths.MAX_GROUP_ROWS, overhead))
            for group in groups:
                predict(text=tf.constant(batch[group]))["probabilities"].numpy()
            return len(groups)
        for batch in batches[:5]:  # warm-up: every shape class the settings will see
            for overhead in OVERHEADS:
                run(batch, overhead)
        for number, batch in enumerate(batches):
            for k in range(len(OVERHEADS)):
                overhead = OVERHEADS[(number + k) % len(OVERHEADS)]
                started = time.process_time()
                calls[overhead] += run(batch, overhead)
                cpu[overhead] += time.process_time() - started
        for overhead in OVERHEADS:
            grouped[f"{rows} rows, overhead {overhead or 'none (one call)'}"] = {
                "cpu_ms_per_text": round(1000 * cpu[overhead] / sum(len(b) for b in batches), 2),
                "calls_per_batch": round(calls[overhead] / len(batches), 2)}
    return {"cpu_ms_per_call": grid, "fit": {
        "fixed_ms": round(float(fixed), 2), "ms_per_row": round(float(per_row), 3),
        "ms_per_padded_byte": round(float(per_byte), 5),
        "overhead_bytes": round(float(fixed / per_byte)) if per_byte > 0 else None,
        "rms_error_ms": round(float(np.sqrt(residuals[0] / len(observed))), 2)},
        "random_batches": grouped}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_base_path", default="")
    parser.add_argument("--mode", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    base = args.model_base_path or default_base()
    if args.mode:  # a child: one precision, as JSON on the last line
        print(json.dumps(measure(_latest(base), args.mode)))
        return
    results = {}
    for mode in ("float32", "bfloat16"):
        child = subprocess.run([sys.executable, __file__, "--model_base_path", base,
                                "--mode", mode], capture_output=True, text=True)
        if child.returncode:
            raise SystemExit(f"the {mode} measurement failed: {child.stderr.strip()[-2000:]}")
        results[mode] = json.loads(child.stdout.strip().splitlines()[-1])
        print(mode, json.dumps(results[mode]["fit"]), json.dumps(results[mode]["random_batches"]),
              flush=True)
    write("call_cost", {"model": _latest(base), "cpu": cpu_model(),
                        "bfloat16": "--mixed_precision=bfloat16 --bfloat16_fold_weights",
                        **results})


if __name__ == "__main__":
    main()
