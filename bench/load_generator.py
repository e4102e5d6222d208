"""Load generators that leave the server its cores: wrk for REST, an asyncio gRPC client for
gRPC, each in a process of its own with the requests serialised beforehand.

The serving benchmark's Python thread clients spend about as much CPU per request as the
server does on these 2 cores, so a faster server mostly frees CPU for its clients. A
benchmark of the server wants clients on other cores; on one machine the next best is
clients that cost little. Here REST goes through wrk (C, one
thread, a Lua script cycling through prepared JSON bodies) and gRPC through grpc.aio
sending prepared PredictRequest bytes (no protobuf or TensorFlow work per call; nghttp2's
h2load can only repeat one body). Each load test reports the generator's own CPU per
request (the gRPC client's includes its own start, about 0.3 s), so what it takes from
the server is on the record. Only answered requests count (``requests``, requests/s);
failed ones are counted apart (``errors``), and a load test with failures says so. wrk
leaves the requests still in flight at its end uncounted (up to one per connection), so
the server's CPU per REST request reads up to 3% high at 32 clients, a little more for
a slower model.

Usage (the gRPC child; the serving benchmark starts it):
    python bench/load_generator.py grpc ADDRESS BODIES_FILE CLIENTS SECONDS
"""
from __future__ import annotations

import base64
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from typing import List, Sequence

_WRK_SCRIPT = r"""
local bodies, i = {}, 0
function init(args)
  for line in io.lines(args[1]) do bodies[#bodies + 1] = line end
end
function request()
  i = i % #bodies + 1
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, bodies[i])
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\nRESULT {"requests": %d, "status_errors": %d, "errors": %d, "p50_us": %d, "p99_us": %d, ' ..
    '"duration_us": %d}\n', summary.requests, e.status, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99), summary.duration))
end
"""


def rest_bodies(texts: Sequence[str], signature: str) -> List[str]:
    """One ``:predict`` body per text (columnar ``inputs``), as JSON lines for wrk."""
    return [json.dumps({"signature_name": signature, "inputs": {"text": [t]}}) for t in texts]


def grpc_bodies(texts: Sequence[str], model: str, signature: str) -> List[bytes]:
    """One serialised PredictRequest per text."""
    import tensorflow as tf
    from tensorflow_serving.apis import model_pb2, predict_pb2

    out = []
    for text in texts:
        request = predict_pb2.PredictRequest(
            model_spec=model_pb2.ModelSpec(name=model, signature_name=signature))
        request.inputs["text"].CopyFrom(tf.make_tensor_proto([text]))
        out.append(request.SerializeToString())
    return out


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _result(requests: int, errors: int, p50_ms: float, p99_ms: float, seconds: float,
            cpu: float) -> dict:
    """Figures of a load test; ``requests`` counts the answered ones only (none: an
    error, not a figure)."""
    if not requests:
        raise RuntimeError(f"load test: no request answered in {seconds:.1f} s "
                           f"({errors} failed)")
    if errors:
        print(f"load test: {errors} failed requests ({requests} answered)", file=sys.stderr)
    return {"requests": requests, "errors": errors, "p50_ms": round(p50_ms, 2),
            "p99_ms": round(p99_ms, 2), "requests_per_second": round(requests / seconds, 1),
            "client_cpu_ms_per_request": round(1000 * cpu / requests, 3)}


def rest_load(url: str, bodies: Sequence[str], clients: int, seconds: float) -> dict:
    """wrk, one thread and ``clients`` connections, for ``seconds`` against ``url``."""
    wrk = shutil.which("wrk")
    if not wrk:
        raise SystemExit("wrk is not installed: apt-get install wrk (or run the benchmark "
                         "with --load_generator threads)")
    with tempfile.TemporaryDirectory() as folder:
        script, lines = os.path.join(folder, "load.lua"), os.path.join(folder, "bodies")
        with open(script, "w") as f:
            f.write(_WRK_SCRIPT)
        with open(lines, "w", encoding="utf-8") as f:
            f.write("\n".join(bodies) + "\n")
        cpu = _child_cpu()
        run = subprocess.run([wrk, "-t1", f"-c{clients}", f"-d{max(1, round(seconds))}s",
                              "--timeout", "120s", "-s", script, url, "--", lines],
                             capture_output=True, text=True)  # wrk takes whole seconds
        if run.returncode or "RESULT" not in run.stdout:
            raise RuntimeError(f"wrk failed: {run.stderr.strip() or run.stdout.strip()}")
        out = run.stdout
        cpu = _child_cpu() - cpu
    figures = json.loads(out.rsplit("RESULT", 1)[1])  # wrk's requests include non-2xx ones
    return _result(figures["requests"] - figures["status_errors"], figures["errors"],
                   figures["p50_us"] / 1000,
                   figures["p99_us"] / 1000, figures["duration_us"] / 1e6, cpu)


def grpc_load(address: str, bodies: Sequence[bytes], clients: int, seconds: float) -> dict:
    """The asyncio gRPC client below, in a child process, for ``seconds``."""
    with tempfile.NamedTemporaryFile("w", suffix=".b64") as f:
        f.write("\n".join(base64.b64encode(b).decode() for b in bodies) + "\n")
        f.flush()
        cpu = _child_cpu()
        run = subprocess.run([sys.executable, os.path.abspath(__file__), "grpc", address,
                              f.name, str(clients), str(seconds)], capture_output=True, text=True)
        cpu = _child_cpu() - cpu
    if run.returncode:
        raise RuntimeError(f"the gRPC load generator failed: {run.stderr.strip()[-2000:]}")
    out = run.stdout
    figures = json.loads(out.strip().splitlines()[-1])
    return _result(figures["requests"], figures["errors"], figures["p50_ms"],
                   figures["p99_ms"], figures["seconds"], cpu)


def _grpc_child(address: str, bodies_file: str, clients: int, seconds: float) -> None:
    import asyncio

    import grpc

    with open(bodies_file) as f:
        bodies = [base64.b64decode(line) for line in f.read().split()]

    async def run():
        latencies, errors = [], []
        async with grpc.aio.insecure_channel(address) as channel:
            # No serialisers: the prepared bytes go out as they are and answers stay bytes.
            predict = channel.unary_unary("/tensorflow.serving.PredictionService/Predict")
            await predict(bodies[0], timeout=120)
            stop = time.perf_counter() + seconds

            async def client(i):
                while time.perf_counter() < stop:
                    started = time.perf_counter()
                    try:
                        await predict(bodies[i % len(bodies)], timeout=120)
                        latencies.append(time.perf_counter() - started)
                    except grpc.aio.AioRpcError as error:
                        errors.append(error.code())
                    i += clients
            started = time.perf_counter()
            await asyncio.gather(*(client(k) for k in range(clients)))
            return latencies, errors, time.perf_counter() - started

    latencies, errors, elapsed = asyncio.run(run())
    ms = sorted(x * 1000 for x in latencies) or [float("nan")]
    print(json.dumps({"requests": len(latencies), "errors": len(errors), "seconds": elapsed,
                      "p50_ms": ms[len(ms) // 2], "p99_ms": ms[int(len(ms) * 0.99)]}))


if __name__ == "__main__":
    if len(sys.argv) != 6 or sys.argv[1] != "grpc":
        raise SystemExit(__doc__)
    _grpc_child(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]))
