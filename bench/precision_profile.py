"""Where the time of one served batch goes, float32 vs --mixed_precision=bfloat16, op by op.

Explains the bfloat16 speed-up this CPU gives the served model (docs/performance.md): the
SavedModel's ``predict_text`` on SST-2 dev in batches of 32 (file order), each mode in a
process of its own (the rewrite is process-wide):

- ``float32``: no rewrite.
- ``bfloat16``: oneDNN's rewrite, as the server's ``--mixed_precision=bfloat16`` sets it.
- ``bfloat16_elementwise_float32``: the same, with the element-wise ops taken off the
  rewrite's lists through TensorFlow's own ``TF_AUTO_MIXED_PRECISION_GRAPH_REWRITE_*``
  variables (which TF Serving reads too), so only the matrix products run in bfloat16.
- ``bfloat16_folded``: the rewrite on the signature with its weights folded into
  constants, as the server runs it (``--bfloat16_fold_weights``, serving/precision.py).
- ``bfloat16_folded_elementwise_float32``: both of the last two.

For each: texts/s over an untraced loop, then TensorFlow's profiler over 10 batches, its
compute threads' time summed per op type (milliseconds per batch; the two intra-op
threads are added up, so the sum is CPU time, not wall time).

Usage: .venv/bin/python bench/precision_profile.py [--model_base_path DIR] [--seconds 8]
    [--name precision_profile]
Writes bench/results/NAME.json.
"""
from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.run_benchmarks import write  # noqa: E402
from bench.serving_speed import _latest, cpu_model, default_base, dev_rows  # noqa: E402

ELEMENTWISE = ("Add,AddV2,BiasAdd,Mul,Sub,SquaredDifference,Mean,Erf,Rsqrt,Tanh,RealDiv,"
               "Softmax")
MODES = {  # --mixed_precision, environment, weights folded (--bfloat16_fold_weights)
    "float32": ("", {}, False),
    "bfloat16": ("bfloat16", {}, False),
    "bfloat16_elementwise_float32": (
        "bfloat16", {"TF_AUTO_MIXED_PRECISION_GRAPH_REWRITE_INFERLIST_REMOVE": ELEMENTWISE},
        False),
    "bfloat16_folded": ("bfloat16", {}, True),
    "bfloat16_folded_elementwise_float32": (
        "bfloat16", {"TF_AUTO_MIXED_PRECISION_GRAPH_REWRITE_INFERLIST_REMOVE": ELEMENTWISE},
        True),
}
BATCH = 32
PROFILED_BATCHES = 10


def measure(version: str, mode: str, seconds: float) -> dict:
    """Texts/s, then milliseconds per batch by op type (this process, one mode)."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    from serving import precision
    precision_mode, _, folded = MODES[mode]
    precision.enable(precision_mode, folded)
    model = tf.saved_model.load(version)  # holds the signature's variables
    predict = model.signatures["predict_text"]
    if folded:
        predict = precision.FoldedSignature(predict)
    texts, _ = dev_rows()
    batches = [tf.constant(texts[i:i + BATCH]) for i in range(0, len(texts) - BATCH + 1, BATCH)]
    predict(text=batches[0])
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        predict(text=batches[calls % len(batches)])["probabilities"].numpy()
        calls += 1
    texts_per_second = calls * BATCH / (time.perf_counter() - started)
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        for batch in batches[:PROFILED_BATCHES]:
            predict(text=batch)["probabilities"].numpy()
        tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        with open(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True)[0], "rb") as f:
            space.ParseFromString(f.read())
    ms = collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                op = plane.event_metadata[event.metadata_id].name.split(":")[-1]
                if op != "Process":  # the executor's wrapper around the ops
                    ms[op] += event.duration_ps / 1e9 / PROFILED_BATCHES
    return {"texts_per_second": round(texts_per_second, 1),
            "ms_per_batch_by_op": {op: round(v, 2) for op, v in ms.most_common() if v >= 0.05},
            "ms_per_batch_total": round(sum(ms.values()), 1)}


def group(by_op: dict) -> dict:
    """The op times in three groups: matrix products, casts, the rest."""
    groups = collections.Counter()
    for op, ms in by_op.items():
        kind = ("matrix products" if "MatMul" in op else "casts" if op == "Cast"
                else "element-wise and other")
        groups[kind] += ms
    return {kind: round(ms, 1) for kind, ms in groups.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_base_path", default="")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--mode", default="", help=argparse.SUPPRESS)  # a child's one mode
    parser.add_argument("--name", default="precision_profile",
                        help="Results file: bench/results/NAME.json.")
    args = parser.parse_args()
    base = args.model_base_path or default_base()
    if args.mode:
        print(json.dumps(measure(_latest(base), args.mode, args.seconds)))
        return
    runs: dict = {}
    for order in (list(MODES), list(MODES)[::-1]):  # two rounds, the second reversed
        for mode in order:
            env = dict(os.environ, **MODES[mode][1])
            child = subprocess.run([sys.executable, __file__, "--model_base_path", base,
                                    "--mode", mode, "--seconds", str(args.seconds)],
                                   capture_output=True, text=True, env=env)
            if child.returncode:
                raise SystemExit(f"{mode} failed:\n{child.stderr[-3000:]}")
            result = json.loads(child.stdout.strip().splitlines()[-1])
            print(mode, result["texts_per_second"], "texts/s,", result["ms_per_batch_total"],
                  "ms per batch profiled", flush=True)
            runs.setdefault(mode, []).append(result)
    modes = {}
    for mode, results in runs.items():
        last = results[-1]
        modes[mode] = {"texts_per_second": [r["texts_per_second"] for r in results],
                       "ms_per_batch_total": last["ms_per_batch_total"],
                       "ms_per_batch_grouped": group(last["ms_per_batch_by_op"]),
                       "ms_per_batch_by_op": last["ms_per_batch_by_op"]}

    def speed(mode):
        return sum(modes[mode]["texts_per_second"]) / len(modes[mode]["texts_per_second"])

    def op_ratio(op):
        f32 = modes["float32"]["ms_per_batch_by_op"].get(op)
        b16 = modes["bfloat16"]["ms_per_batch_by_op"].get(op)
        return round(f32 / b16, 2) if f32 and b16 else None

    write(args.name, {
        "model": _latest(base), "cpu": cpu_model(), "batch": BATCH, "order": "SST-2 dev file order",
        "elementwise_kept_float32": ELEMENTWISE, "modes": modes,
        "ratios": {
            "bfloat16 vs float32, texts/s": round(speed("bfloat16") / speed("float32"), 2),
            "bfloat16 (element-wise float32) vs float32, texts/s": round(
                speed("bfloat16_elementwise_float32") / speed("float32"), 2),
            "bfloat16 (weights folded) vs float32, texts/s": round(
                speed("bfloat16_folded") / speed("float32"), 2),
            "bfloat16 (weights folded, element-wise float32) vs float32, texts/s": round(
                speed("bfloat16_folded_elementwise_float32") / speed("float32"), 2),
            "float32 vs bfloat16 time, by op (above 1: faster in bfloat16)": {
                op: op_ratio(op) for op in modes["float32"]["ms_per_batch_by_op"]
                if op_ratio(op) is not None and modes["float32"]["ms_per_batch_by_op"][op] >= 1},
        }})


if __name__ == "__main__":
    main()
