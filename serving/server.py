"""The local model server: a drop-in for ``tensorflow_model_server`` for development.

Accepts TF Serving's flags (``--port``, ``--rest_api_port``, ``--model_name``,
``--model_base_path``, ``--model_config_file``, ``--enable_batching``,
``--batching_parameters_file``, ``--file_system_poll_wait_seconds``,
``--monitoring_config_file``, ...) plus a few of its own (``--host``,
``--max_request_bytes``, ``--auth_token_file``). Production uses real TF Serving.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

log = logging.getLogger("serving")


def _bool(value: str) -> bool:
    if value.lower() in ("1", "true", "yes"):
        return True
    if value.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {value!r}")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bert-pipeline serve", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    tf_serving = parser.add_argument_group("TF Serving flags (same names and defaults)")
    add = tf_serving.add_argument
    add("--port", type=int, default=8500, help="gRPC port (0: no gRPC).")
    add("--rest_api_port", type=int, default=0,
        help="REST port (0: no REST, as in TF Serving; its Docker image uses 8501).")
    add("--model_name", default="default", help="Model name, with --model_base_path.")
    add("--model_base_path", default="",
        help="Folder of numbered versions (<base>/<version>/saved_model.pb).")
    add("--model_config_file", default="",
        help="model_config_list text proto (several models, version policy, labels).")
    add("--model_config_file_poll_wait_seconds", type=int, default=0,
        help="Accepted for compatibility; the config file is read once.")
    add("--enable_batching", type=_bool, nargs="?", const=True, default=False,
        help="Batch concurrent requests server-side.")
    add("--batching_parameters_file", default="",
        help="BatchingParameters text proto (max_batch_size, batch_timeout_micros, ...).")
    add("--file_system_poll_wait_seconds", type=int, default=1,
        help="Seconds between polls for new/removed versions (0: load once).")
    add("--monitoring_config_file", default="",
        help="MonitoringConfig text proto; enables Prometheus metrics on the REST port.")
    add("--rest_api_num_threads", type=int, default=max(4, os.cpu_count() or 1) * 4,
        help="Worker threads for REST requests.")
    add("--grpc_max_threads", type=int, default=max(4, os.cpu_count() or 1) * 4,
        help="Worker threads for gRPC requests.")
    add("--rest_api_timeout_in_ms", type=int, default=30000,
        help="Accepted for compatibility.")
    own = parser.add_argument_group("this server's own flags")
    own.add_argument("--host", default="127.0.0.1",
                     help="Address to bind (0.0.0.0 to accept other machines).")
    own.add_argument("--max_request_bytes", type=int, default=64 * 2**20,
                     help="Largest request body (REST) or message (gRPC) accepted.")
    own.add_argument("--feedback_dir", default="",
                     help="Record classified texts here and accept corrected labels at "
                          "POST /v1/feedback (opt-in; see serving/feedback.py).")
    own.add_argument("--auth_token_file", default="",
                     help="If set, every request needs 'Authorization: Bearer <token>' "
                          "(gRPC: 'authorization' metadata) with the token in this file.")
    return parser


def parse_flags(argv: List[str]) -> argparse.Namespace:
    parser = make_parser()
    args = parser.parse_args(argv)
    if bool(args.model_base_path) == bool(args.model_config_file):
        parser.error("give either --model_base_path (with --model_name) or "
                     "--model_config_file")
    if args.port == 0 and args.rest_api_port == 0:
        parser.error("both --port and --rest_api_port are 0: nothing to serve on")
    return args


def build_service(args: argparse.Namespace):
    """The model store (batching, polling) and the service both transports answer from."""
    import tensorflow_text  # noqa: F401  registers tf-text ops before any model loads
    from serving.batching import BatchingParameters
    from serving.metrics import Metrics
    from serving.model_store import ModelSpec, ModelStore, read_model_config
    from serving.service import Service

    if args.model_config_file:
        specs = read_model_config(args.model_config_file)
    else:
        specs = [ModelSpec(args.model_name, os.path.abspath(args.model_base_path))]
    batching = None
    if args.enable_batching:
        batching = (BatchingParameters.from_file(args.batching_parameters_file)
                    if args.batching_parameters_file else BatchingParameters())
    metrics = Metrics()

    def on_change(name, version, state):
        metrics.loads.labels(name, state).inc()
        metrics.versions.labels(name).set(len(store.loaded_versions(name)))

    store = ModelStore(specs, batching, args.file_system_poll_wait_seconds, on_change)
    feedback = None
    if args.feedback_dir:
        from serving.feedback import FeedbackLog
        feedback = FeedbackLog(args.feedback_dir)
    return Service(store, metrics, feedback)


def serve(args: argparse.Namespace) -> int:
    from serving import grpc_api, rest
    from serving.metrics import read_monitoring_config

    token = None
    if args.auth_token_file:
        with open(args.auth_token_file, encoding="utf-8") as f:
            token = f.read().strip()
        if not token:
            raise ValueError(f"{args.auth_token_file} is empty")
    metrics_path = (read_monitoring_config(args.monitoring_config_file)
                    if args.monitoring_config_file else None)
    service = build_service(args)
    service.store.start()

    grpc_server = None
    if args.port:
        grpc_server = grpc_api.make_server(service, f"{args.host}:{args.port}",
                                           args.grpc_max_threads, args.max_request_bytes,
                                           token)
        grpc_server.start()
        print(f"Running gRPC ModelServer at {args.host}:{args.port} ...", flush=True)

    async def run_rest():
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        http = None
        if args.rest_api_port:
            pool = ThreadPoolExecutor(args.rest_api_num_threads, thread_name_prefix="rest")
            app = rest.make_app(service, pool, args.max_request_bytes, token, metrics_path)
            http = app.listen(args.rest_api_port, address=args.host,
                              max_body_size=args.max_request_bytes + 1,
                              idle_connection_timeout=args.rest_api_timeout_in_ms / 1000)
            print(f"Exporting HTTP/REST API at:{args.host}:{args.rest_api_port} ...",
                  flush=True)
        await stop.wait()
        if http:
            http.stop()

    try:
        asyncio.run(run_rest())
    finally:
        if grpc_server:
            grpc_server.stop(grace=5).wait()
        service.store.stop()
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = parse_flags(sys.argv[1:] if argv is None else argv)
    try:
        return serve(args)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
