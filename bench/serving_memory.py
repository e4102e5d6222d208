"""Serving memory over time: does a busy model server's resident memory level off?

The local server on one model (default: the main job's), server-side batching on
(serving/deploy/batching_parameters.txt), under steady REST load from wrk
(bench/load_generator.py) at 32 connections: requests of 1-8 random SST-2 dev sentences,
so the model sees many batch shapes (rows x padded length) as a real service does. Every
``--round_seconds`` the server's resident memory (VmRSS) and the texts answered so far are
recorded (wrk's last requests in flight in each round, up to one per connection, are
served but not counted), for float32 and --mixed_precision=bfloat16 with folded weights
(and unfolded: TF Serving's way). The figure to read is the growth per 10,000 texts fitted
over the second half of each run against the first half's: caches that fill (oneDNN's
primitives for each shape, the allocator's arenas) slow down; a leak of a fixed amount
per request would not.

Usage: .venv/bin/python bench/serving_memory.py [--model_base_path DIR] [--minutes 6]
           [--round_seconds 20] [--modes float32,bfloat16,bfloat16_unfolded]
           [--output serving_memory]
Writes bench/results/<output>.json, with the commit of the server it ran.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench import load_generator  # noqa: E402
from bench.run_benchmarks import _process_cost, git_commit, write  # noqa: E402
from bench.serving_lifecycle import rss_mib  # noqa: E402
from bench.serving_speed import BATCHING, cpu_model, default_base, dev_rows  # noqa: E402

MODES = {"float32": ["--mixed_precision=", "--bfloat16_fold_weights=false"],
         "bfloat16": ["--mixed_precision=bfloat16", "--bfloat16_fold_weights=true"],
         "bfloat16_unfolded": ["--mixed_precision=bfloat16", "--bfloat16_fold_weights=false"]}
CLIENTS = 32


def request_bodies(texts: list, count: int = 60000, seed: int = 0) -> tuple:
    """``count`` REST bodies of 1-8 random texts each, and how many texts each holds."""
    rng = random.Random(seed)
    sizes = [rng.randint(1, 8) for _ in range(count)]
    bodies = [json.dumps({"signature_name": "predict_text",
                          "inputs": {"text": rng.sample(texts, n)}}) for n in sizes]
    return bodies, sizes


def slope_per_10k(points: list) -> float:
    """Least-squares MiB per 10,000 texts over (texts, MiB) points."""
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    if not spread:
        raise ValueError("no texts were answered between the points")
    return round(1e4 * sum((x - mean_x) * (y - mean_y) for x, y in points) / spread, 1)


def run_mode(base: str, flags: list, bodies: list, sizes: list, minutes: float,
             round_seconds: float) -> dict:
    """One server under load for ``minutes``; each round's wrk starts where the last one
    stopped in ``bodies`` (the requests it left in flight are sent again), so rounds do
    not replay the same requests until the bodies run out (``wrapped``)."""
    from serving.process import ServerProcess

    server_flags = ["--model_name", "m", "--model_base_path", base, "--enable_batching",
                    "--batching_parameters_file", BATCHING, "--rest_api_num_threads", "64",
                    *flags]
    with ServerProcess(server_flags) as server:
        pid, url = server.process.pid, f"{server.rest_url}/v1/models/m:predict"
        curve = [{"seconds": 0.0, "texts": 0, "rss_mib": rss_mib(pid)}]
        started, texts, offset, sent = time.perf_counter(), 0, 0, 0
        while time.perf_counter() - started < minutes * 60:
            load = load_generator.rest_load(url, bodies[offset:] + bodies[:offset], CLIENTS,
                                            round_seconds)
            if load["errors"]:
                raise RuntimeError(f"{load['errors']} requests failed")
            texts += sum(sizes[(offset + i) % len(sizes)] for i in range(load["requests"]))
            offset = (offset + load["requests"]) % len(sizes)
            sent += load["requests"]
            curve.append({"seconds": round(time.perf_counter() - started, 1), "texts": texts,
                          "rss_mib": rss_mib(pid)})
            print(json.dumps(curve[-1]), flush=True)
        peak = _process_cost(pid)[1]
    points, middle = [(p["texts"], p["rss_mib"]) for p in curve], len(curve) // 2
    if sent > len(bodies):
        print(f"warning: {sent} requests went through the {len(bodies)} bodies more than "
              f"once", file=sys.stderr)
    return {"curve": curve, "peak_rss_mib": round(peak), "wrapped": sent > len(bodies),
            "growth_mib": round(curve[-1]["rss_mib"] - curve[0]["rss_mib"], 1),
            "mib_per_10k_texts_second_half": slope_per_10k(points[middle:]),
            "mib_per_10k_texts_first_half": slope_per_10k(points[:middle + 1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_base_path", default="")
    parser.add_argument("--minutes", type=float, default=6.0, help="Load per mode.")
    parser.add_argument("--round_seconds", type=float, default=20.0,
                        help="Load between two memory readings.")
    parser.add_argument("--modes", default=",".join(MODES), help="Comma-separated.")
    parser.add_argument("--output", default="serving_memory",
                        help="Results name: bench/results/<output>.json.")
    args = parser.parse_args()
    if args.round_seconds < 1 or args.minutes * 60 < 4 * round(args.round_seconds):
        raise SystemExit("--round_seconds must be at least 1 (wrk takes whole seconds) and "
                         "--minutes must allow at least 4 rounds of it")
    base = args.model_base_path or default_base()
    texts, _ = dev_rows()
    bodies, sizes = request_bodies(texts)
    results = {}
    for mode in args.modes.split(","):
        print(mode, flush=True)
        results[mode] = run_mode(base, MODES[mode], bodies, sizes, args.minutes,
                                 args.round_seconds)
        print(mode, {k: v for k, v in results[mode].items() if k != "curve"}, flush=True)
    write(args.output, {
        "model": base, "server_commit": git_commit(), "cpu": cpu_model(), "clients": CLIENTS,
        "texts_per_request": "1-8, random", "minutes_per_mode": args.minutes,
        "round_seconds": args.round_seconds,
        "batching_parameters": open(BATCHING).read(), "modes": results})


if __name__ == "__main__":
    main()
