"""The model server's lifecycle on the main job's model; prints figures and writes
bench/results/serving_lifecycle.json.

  drain   SIGTERM while 10 REST and 4 gRPC clients each have a large classify batch in
          flight (the server's default drain flags): requests lost (goal 0), exit status,
          seconds from the signal to the exit
  memory  server RSS with no model, then after each of 10 version loads (each new version
          a copy of the model under a new number; the previous one is unloaded; a few
          requests after each load), and the peak RSS so far (the swaps': the new version
          loads beside the one serving). Goal: at most two versions' worth over no model.

Usage: .venv/bin/python bench/serving_lifecycle.py [--model DIR] [--loads 10]
           [--server_flags "--mixed_precision=bfloat16 ..."] [--output NAME] [drain] [memory]
(DIR: a version folder; default the newest under serving_model/bert_classifier;
--server_flags: more flags for the memory part's server; writes bench/results/NAME.json,
serving_lifecycle by default).
No client retries: a lost request is counted, never hidden.
"""
from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from bench.run_benchmarks import git_commit, write  # noqa: E402  (sets the TF environment first)

MODEL = "bert_classifier"
REST_CLIENTS, GRPC_CLIENTS, BATCH = 10, 4, 128
TEXT = "a gripping, beautifully acted film that never lets go of its quiet heart"


def newest_version(base: str) -> str:
    versions = sorted((int(v) for v in os.listdir(base) if v.isdigit()), reverse=True)
    if not versions:
        raise SystemExit(f"no version under {base}: run `make run` first (or give --model)")
    return os.path.join(base, str(versions[0]))


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """The process's resident memory (``VmHWM``: its peak so far) in MiB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        line = next(line for line in status if line.startswith(f"{field}:"))
    return round(int(line.split()[1]) / 1024, 1)


def copy_version(model_dir: str, base: str, version: int) -> None:
    """As a push does: copied under a name no server loads, then renamed into place."""
    staging = os.path.join(base, f".copy-{version}")
    shutil.copytree(model_dir, staging)
    os.rename(staging, os.path.join(base, str(version)))


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f}s")
        time.sleep(0.2)


def states(server) -> dict:
    import requests

    answer = requests.get(f"{server.rest_url}/v1/models/{MODEL}", timeout=30)
    if answer.status_code != 200:
        return {}
    return {int(v["version"]): v["state"] for v in answer.json()["model_version_status"]}


def classify_rest(server, texts) -> bool:
    import requests

    answer = requests.post(f"{server.rest_url}/v1/models/{MODEL}:classify", timeout=300,
                           json={"signature_name": "classify",
                                 "examples": [{"text": t} for t in texts]})
    return answer.status_code == 200 and len(answer.json()["results"]) == len(texts)


def classify_grpc(stub, texts) -> bool:
    from tensorflow_serving.apis import classification_pb2, model_pb2

    request = classification_pb2.ClassificationRequest(
        model_spec=model_pb2.ModelSpec(name=MODEL, signature_name="classify"))
    for text in texts:
        example = request.input.example_list.examples.add()
        example.features.feature["text"].bytes_list.value.append(text.encode())
    answer = stub.Classify(request, timeout=300)
    return len(answer.result.classifications) == len(texts)


def bench_drain(model_dir: str, work: str) -> dict:
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    from serving.process import ServerProcess

    base = os.path.join(work, "drain", MODEL)
    os.makedirs(base)
    copy_version(model_dir, base, 1)
    texts = [f"{TEXT} {i}" for i in range(BATCH)]
    # The server's own drain defaults (ServerProcess sets no delay unless told).
    from serving.server import make_parser
    defaults = make_parser().parse_args([])
    server = ServerProcess(["--model_name", MODEL, "--model_base_path", base,
                            "--drain_delay_seconds", str(defaults.drain_delay_seconds)],
                           timeout=600)
    sent, answered, failed = {"REST": 0, "gRPC": 0}, {"REST": 0, "gRPC": 0}, []
    signalled = threading.Event()
    lock = threading.Lock()

    def client(transport: str):
        stub = (prediction_service_pb2_grpc.PredictionServiceStub(
            grpc.insecure_channel(server.grpc_address)) if transport == "gRPC" else None)
        while not signalled.is_set():  # a new request only before the signal
            with lock:
                sent[transport] += 1
            try:
                ok = classify_grpc(stub, texts) if stub else classify_rest(server, texts)
            except Exception as error:  # noqa: BLE001  lost: counted
                ok = False
                failed.append(f"{transport}: {error!r}"[:200])
            with lock:
                answered[transport] += ok

    with server:
        threads = [threading.Thread(target=client, args=("REST",)) for _ in range(REST_CLIENTS)]
        threads += [threading.Thread(target=client, args=("gRPC",))
                    for _ in range(GRPC_CLIENTS)]
        for thread in threads:
            thread.start()
        wait_until(lambda: sum(answered.values()) >= len(threads), 600, "first answers")
        with lock:  # every client is inside a request now (sent one more than answered)
            in_flight = {t: sent[t] - answered[t] for t in sent}
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        signalled.set()
        for thread in threads:
            thread.join()
        returncode = server.process.wait(timeout=120)
        exit_seconds = round(time.monotonic() - started, 1)
        log = server.log()
    return {
        "batch_texts": BATCH, "drain_delay_seconds": defaults.drain_delay_seconds,
        "drain_grace_seconds": defaults.drain_grace_seconds,
        "in_flight_at_sigterm": in_flight,
        "lost": {t: sent[t] - answered[t] for t in sent},
        "exit_status": returncode, "seconds_to_exit": exit_seconds,
        "tracebacks_in_log": log.count("Traceback"), "failures": failed[:5]}


def bench_memory(model_dir: str, work: str, loads: int, flags: list) -> dict:
    from serving.process import ServerProcess

    base = os.path.join(work, "memory", MODEL)
    os.makedirs(base)
    texts = [f"{TEXT} {i}" for i in range(16)]
    server = ServerProcess(["--model_name", MODEL, "--model_base_path", base,
                            "--file_system_poll_wait_seconds", "1", *flags], wait_for=[],
                           timeout=600)
    after, peaks = [], []
    with server:
        wait_until(lambda: os.path.exists(f"/proc/{server.process.pid}") and "REST" in
                   server.log(), 600, "server start")
        no_model = rss_mib(server.process.pid)
        for version in range(1, loads + 1):
            copy_version(model_dir, base, version)
            wait_until(lambda: states(server).get(version) == "AVAILABLE" and
                       all(s == "END" for v, s in states(server).items() if v != version),
                       600, f"version {version} serving alone")
            for _ in range(4):
                assert classify_rest(server, texts)
            after.append(rss_mib(server.process.pid))
            peaks.append(rss_mib(server.process.pid, "VmHWM"))
            print(f"version {version}: RSS {after[-1]} MiB, peak so far {peaks[-1]} MiB",
                  flush=True)
            if version > 2:  # keep the disk small: only the last two stay
                shutil.rmtree(os.path.join(base, str(version - 2)))
    one = after[0] - no_model
    return {"server_flags": flags, "rss_mib_no_model": no_model,
            "rss_mib_after_each_load": after, "peak_rss_mib_after_each_load": peaks,
            "one_version_mib": round(one, 1),
            "growth_after_first_load_mib": round(after[-1] - after[0], 1),
            "within_two_versions": after[-1] - no_model <= 2 * one}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="")
    parser.add_argument("--loads", type=int, default=10)
    parser.add_argument("--server_flags", default="", help="More flags for the memory "
                        "part's server, e.g. '--mixed_precision=bfloat16 --enable_batching'.")
    parser.add_argument("--output", default="serving_lifecycle",
                        help="Results name: bench/results/<output>.json.")
    parser.add_argument("parts", nargs="*", default=["drain", "memory"])
    args = parser.parse_args()
    model_dir = args.model or newest_version(os.path.join(REPO, "serving_model", MODEL))
    work = tempfile.mkdtemp(prefix="serving_lifecycle_")
    result = {"model": os.path.relpath(model_dir, REPO), "server_commit": git_commit()}
    try:
        if "drain" in args.parts:
            result["drain"] = bench_drain(model_dir, work)
        if "memory" in args.parts:
            result["memory"] = bench_memory(model_dir, work, args.loads,
                                            shlex.split(args.server_flags))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write(args.output, result)


if __name__ == "__main__":
    main()
