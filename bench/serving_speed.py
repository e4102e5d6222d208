"""Serving speed: float32 vs --mixed_precision=bfloat16 (weights folded or not), length-aware
batches off vs on.

The local server on one model (default: the main job's, MiniLM-L6), one SST-2 dev
sentence per request, 1, 8 and 32 clients over gRPC and REST, server-side batching on
(serving/deploy/batching_parameters.txt). Five server modes (float32 / bfloat16 x
--batch_by_length false / true, and bfloat16 with --bfloat16_fold_weights=false, the
rewrite as TF Serving runs it) run in two rounds, the second in reverse order, so a
noisy machine weighs on every mode alike; each figure is the mean of the rounds, with
each server's start time and peak memory and its mean batch size (its metrics). Beside
them, the in-process ceiling of the same SavedModel (batches of 32, in a process of its
own per precision, because the bfloat16 rewrite is process-wide), and SST-2 dev accuracy
as each server answers it. The load comes from bench/load_generator.py (wrk for REST,
an asyncio gRPC client sending prepared requests: each costs well under a tenth of the
server's CPU per request); ``--load_generator threads`` uses Python client threads in
this process instead (the earlier runs: they cost about as much CPU as the server, on
the same 2 cores). Each load test also records the server's own CPU milliseconds per
request (from /proc/<pid>/stat) and the generator's.

Usage: .venv/bin/python bench/serving_speed.py [--model_base_path DIR] [--seconds 6]
                                               [--load_generator native|threads]
Writes bench/results/serving_speed.json (wrk from Debian's wrk package).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench import load_generator  # noqa: E402
from bench.run_benchmarks import (REPO, SST2, WORK, _load_test, _process_cost,  # noqa: E402
                                  write)
from serving.batching import BatchingParameters  # noqa: E402

# (precision, --batch_by_length); "bfloat16_unfolded" is --bfloat16_fold_weights=false: the
# rewrite as TF Serving runs it, casting the weights on every call.
MODES = [("float32", False), ("float32", True), ("bfloat16", False), ("bfloat16", True),
         ("bfloat16_unfolded", True)]
CLIENTS = (1, 8, 32)
BATCHING = os.path.join(REPO, "serving", "deploy", "batching_parameters.txt")


def dev_rows():
    with open(os.path.join(SST2, "dev.tsv"), encoding="utf-8") as f:
        rows = [line.split("\t") for line in f.read().splitlines()[1:]]
    return [text for text, _ in rows], [label for _, label in rows]


def cpu_model() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    return next((line.split(":", 1)[1].strip() for line in out.splitlines()
                 if line.startswith("Model name")), "unknown")


def in_process(version: str, mode: str, seconds: float) -> dict:
    """Texts/s of the SavedModel called directly in batches of 32: dev order, and sorted
    by length (what length-aware batches approach)."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    from serving import precision
    precision.enable("" if mode == "float32" else "bfloat16", mode == "bfloat16")
    model = tf.saved_model.load(version)  # holds the signature's variables
    predict = model.signatures["predict_text"]
    if mode == "bfloat16":  # as the server loads it (--bfloat16_fold_weights)
        predict = precision.FoldedSignature(predict)
    texts, _ = dev_rows()
    result = {}
    for order, rows in (("dev_order", texts), ("by_length", sorted(texts, key=len))):
        batches = [rows[i:i + 32] for i in range(0, len(rows) - 31, 32)]
        predict(text=tf.constant(batches[0]))
        calls, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            predict(text=tf.constant(batches[calls % len(batches)]))["probabilities"].numpy()
            calls += 1
        result[order] = round(calls * 32 / (time.perf_counter() - started), 1)
    return result


def serve_and_load(base: str, mode: str, by_length: bool, seconds: float,
                   accuracy: bool, generator: str = "native") -> dict:
    import numpy as np

    from serving.client import GrpcClient, RestClient, Target
    from serving.process import ServerProcess

    texts, labels = dev_rows()
    flags = ["--model_name", "m", "--model_base_path", base, "--grpc_max_threads", "64",
             "--rest_api_num_threads", "64", "--enable_batching",
             "--batching_parameters_file", BATCHING, f"--batch_by_length={by_length}",
             f"--mixed_precision={'' if mode == 'float32' else 'bfloat16'}",
             f"--bfloat16_fold_weights={mode == 'bfloat16'}",
             "--monitoring_config_file", os.path.join(REPO, "serving", "deploy",
                                                      "monitoring.config")]
    result = {}
    started = time.perf_counter()
    with ServerProcess(flags) as server:
        result["process"] = {"start_seconds": round(time.perf_counter() - started, 1)}
        target = Target("m")
        with GrpcClient(server.grpc_address, target, timeout=120) as by_grpc, \
                RestClient(server.rest_url, target, timeout=120) as by_rest:
            calls = {"grpc": lambda t: by_grpc.predict({"text": np.array([t], object)},
                                                       "predict_text"),
                     "rest": lambda t: by_rest.predict({"text": np.array([t])},
                                                       "predict_text")}
            loads = _loads(generator, server, calls, texts)
            for transport, call in calls.items():
                for text in texts[:20]:
                    call(text)
                for clients in CLIENTS:
                    cpu_before = _process_cost(server.process.pid)[0]
                    batches_before = _batches(server.rest_url)
                    load = loads[transport](clients, seconds)
                    load["server_cpu_ms_per_request"] = round(
                        1000 * (_process_cost(server.process.pid)[0] - cpu_before)
                        / max(load["requests"], 1), 2)
                    batches = {k: v - batches_before.get(k, 0.0)
                               for k, v in _batches(server.rest_url).items()}
                    load["mean_batch_rows"] = round(
                        batches["processed_batch_size_sum"]
                        / max(batches["processed_batch_size_count"], 1), 1)
                    result[f"{transport}/{clients}"] = load
            if accuracy:
                with open(os.path.join(_latest(base), "assets.extra", "labels.txt")) as f:
                    names = np.array(f.read().split())
                rows = BatchingParameters.from_file(BATCHING).max_batch_size  # the limit
                probabilities = np.concatenate([by_grpc.predict(
                    {"text": np.array(texts[i:i + rows], object)}, "predict_text")[
                        "probabilities"] for i in range(0, len(texts), rows)])
                result["sst2_dev_accuracy"] = round(float(
                    (names[probabilities.argmax(1)] == np.array(labels)).mean()), 4)
                result["probabilities"] = probabilities.tolist()
        result["process"]["peak_rss_mib"] = round(_process_cost(server.process.pid)[1])
    return result


def _loads(generator: str, server, calls: dict, texts: list) -> dict:
    """A load test per transport: f(clients, seconds) -> figures."""
    if generator == "threads":
        return {transport: (lambda clients, seconds, call=call:
                            _load_test(call, texts, clients, seconds))
                for transport, call in calls.items()}
    rest_bodies = load_generator.rest_bodies(texts, "predict_text")
    grpc_bodies = load_generator.grpc_bodies(texts, "m", "predict_text")
    url = f"{server.rest_url}/v1/models/m:predict"
    return {"grpc": lambda clients, seconds: load_generator.grpc_load(
                server.grpc_address, grpc_bodies, clients, seconds),
            "rest": lambda clients, seconds: load_generator.rest_load(
                url, rest_bodies, clients, seconds)}


def default_base() -> str:
    """The main job's model folder (the main_job benchmark's, else `make run`'s)."""
    base = next((p for p in (os.path.join(WORK, "main_job", "serving_model", "bert_classifier"),
                             os.path.join(REPO, "serving_model", "bert_classifier"))
                 if os.path.isdir(p)), "")
    if not base:
        raise SystemExit("no model: run `make run` (or the main_job benchmark) first, or "
                         "pass --model_base_path")
    return base


def _batches(rest_url: str) -> dict:
    """The server's batching-session counts for predict_text (serving/metrics.py)."""
    import requests

    from serving.metrics import batching_figures
    return batching_figures(requests.get(f"{rest_url}/monitoring/prometheus/metrics",
                                         timeout=30).text, "predict_text")


def _latest(base: str) -> str:
    return os.path.join(base, max((v for v in os.listdir(base) if v.isdigit()), key=int))


def _mean(runs: list) -> dict:
    keys = [k for k in runs[0] if isinstance(runs[0][k], dict) and k != "process"]
    out = {"process": {field: round(sum(r["process"][field] for r in runs) / len(runs), 1)
                       for field in runs[0]["process"]}}
    for key in keys:
        out[key] = {field: round(sum(r[key][field] for r in runs) / len(runs), 2)
                    for field in ("requests_per_second", "p50_ms", "p99_ms", "errors",
                                  "server_cpu_ms_per_request", "client_cpu_ms_per_request",
                                  "mean_batch_rows") if field in runs[0][key]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_base_path", default="")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--load_generator", choices=("native", "threads"), default="native",
                        help="native: wrk (REST) and an asyncio gRPC client, each a process "
                             "of its own; threads: Python client threads in this process")
    parser.add_argument("--in_process", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    base = args.model_base_path or default_base()
    if args.in_process:  # a child: one precision's ceiling, as JSON on the last line
        print(json.dumps(in_process(_latest(base), args.in_process, args.seconds)))
        return
    ceiling = {}
    for mode in ("float32", "bfloat16", "bfloat16_unfolded"):
        child = subprocess.run([sys.executable, __file__, "--model_base_path", base,
                                "--in_process", mode, "--seconds", str(args.seconds)],
                               capture_output=True, text=True, check=True)
        ceiling[mode] = json.loads(child.stdout.strip().splitlines()[-1])
        print("in-process", mode, ceiling[mode], flush=True)
    runs = {mode: [] for mode in MODES}
    accuracy = {}
    for round_number, order in enumerate((MODES, MODES[::-1])):
        for mode, by_length in order:
            first = round_number == 0 and by_length
            result = serve_and_load(base, mode, by_length, args.seconds, accuracy=first,
                                    generator=args.load_generator)
            if first:
                accuracy[mode] = (result.pop("sst2_dev_accuracy"), result.pop("probabilities"))
            runs[mode, by_length].append(result)
            print(mode, "by_length" if by_length else "plain", json.dumps(result), flush=True)
    server = {f"{mode}/{'by_length' if by_length else 'plain'}": _mean(results)
              for (mode, by_length), results in runs.items()}
    import numpy as np

    def difference(mode, other="float32"):
        """How far ``mode``'s SST-2 dev probabilities are from ``other``'s."""
        a, b = np.array(accuracy[mode][1]), np.array(accuracy[other][1])
        return {"max": round(float(np.abs(a - b).max()), 5),
                "mean": round(float(np.abs(a - b).mean()), 6),
                "labels_changed": int((a.argmax(1) != b.argmax(1)).sum())}

    def rps(key, transport, clients=32):
        return server[key][f"{transport}/{clients}"]["requests_per_second"]

    def cpu_ms(key, transport, clients=32):
        return server[key][f"{transport}/{clients}"]["server_cpu_ms_per_request"]

    ratios = {}
    for transport in ("grpc", "rest"):
        ratios[f"{transport}: 32 clients, bfloat16 vs float32, by length (goal >= 1.4)"] = \
            round(rps("bfloat16/by_length", transport) / rps("float32/by_length", transport), 2)
        ratios[f"{transport}: 32 clients, requests per server CPU second, bfloat16 vs float32, "
               f"by length"] = round(cpu_ms("float32/by_length", transport)
                                     / cpu_ms("bfloat16/by_length", transport), 2)
        ratios[f"{transport}: 32 clients, bfloat16 folded vs unfolded weights, by length"] = \
            round(rps("bfloat16/by_length", transport)
                  / rps("bfloat16_unfolded/by_length", transport), 2)
        for mode in ("float32", "bfloat16"):
            ratios[f"{transport}: 32 clients, by length vs plain, {mode}"] = round(
                rps(f"{mode}/by_length", transport) / rps(f"{mode}/plain", transport), 2)
            ratios[f"{transport}: 32 clients, server (by length) vs in-process ceiling "
                   f"(by length), {mode}"] = round(
                rps(f"{mode}/by_length", transport) / ceiling[mode]["by_length"], 2)
        ratios[f"{transport}: 1 client p50, bfloat16 vs float32"] = round(
            server["bfloat16/by_length"][f"{transport}/1"]["p50_ms"]
            / server["float32/by_length"][f"{transport}/1"]["p50_ms"], 2)
    for mode in ("bfloat16", "bfloat16_unfolded"):
        for order in ("by_length", "dev_order"):
            ratios[f"in-process batch 32: {mode} vs float32 ({order})"] = round(
                ceiling[mode][order] / ceiling["float32"][order], 2)
    ratios["in-process batch 32: by length vs dev order (float32)"] = round(
        ceiling["float32"]["by_length"] / ceiling["float32"]["dev_order"], 2)
    write("serving_speed", {
        "model": _latest(base), "cpu": cpu_model(), "seconds_per_measurement": args.seconds,
        "rounds": 2, "batching_parameters": open(BATCHING).read(),
        "load_generator": args.load_generator,
        "in_process_texts_per_second_batch_32": ceiling, "server": server, "ratios": ratios,
        "sst2_dev_accuracy": {mode: acc for mode, (acc, _) in accuracy.items()},
        "probability_difference": {
            "bfloat16 (folded) vs float32": difference("bfloat16"),
            "bfloat16 unfolded vs float32": difference("bfloat16_unfolded"),
            "bfloat16 folded vs unfolded": difference("bfloat16", "bfloat16_unfolded")}})


if __name__ == "__main__":
    main()
