"""The local model server: a drop-in for ``tensorflow_model_server`` for development.

Accepts every flag of ``tensorflow_model_server`` 2.18 with its default, so a TF
Serving command line runs unchanged; those that matter here are implemented
(ports, model config and its polling, load retries, batching, TLS, warmup,
timeouts, threads), the rest are accepted with a warning. Its own flags:
``--host``, ``--max_request_bytes``, ``--auth_token_file``, ``--feedback_token_file``,
``--allow_plaintext_token`` (tokens and rights: serving/auth.py), ``--feedback_dir``,
``--feedback_max_age_days``, ``--feedback_max_rows``,
``--feedback_max_corrections_per_minute``, ``--drain_delay_seconds``,
``--drain_grace_seconds`` (SIGTERM/SIGINT drain: serving/drain.py), ``--batch_by_length``
(serving/lengths.py), ``--bfloat16_fold_weights`` (serving/precision.py).

It refuses to start with a token file on a non-loopback ``--host`` without
``--ssl_config_file`` (unless ``--allow_plaintext_token``), and with ``--feedback_dir``
there without ``--feedback_token_file``, and with ``--bfloat16_fold_weights`` without
``--mixed_precision=bfloat16``.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional

from serving import filesystems, precision, process

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

log = logging.getLogger("serving")


def _bool(value: str) -> bool:
    if value.lower() in ("1", "true", "yes"):
        return True
    if value.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {value!r}")


_THREADS = max(4, os.cpu_count() or 1) * 4
# tensorflow_model_server 2.18's flags and 2.19's --enable_serialization_as_tensor_content,
# with their defaults: (name, type, default, help).
# A help of None marks a flag accepted so TF Serving command lines run unchanged, but
# ignored here (a warning says so when it is given).
TF_SERVING_FLAGS = [
    ("port", int, 8500, "gRPC port (0: no gRPC)."),
    ("grpc_socket_path", str, "", "Also serve gRPC on this UNIX socket."),
    ("rest_api_port", int, 0, "REST port (0: no REST; TF Serving's Docker image uses 8501)."),
    ("rest_api_num_threads", int, _THREADS, "Worker threads for REST requests."),
    ("rest_api_timeout_in_ms", int, 30000,
     "Deadline of a REST request (504 after it), and of reading its body (0 or less: "
     "none, as TF Serving)."),
    ("rest_api_enable_cors_support", _bool, False, "Send CORS headers on REST answers."),
    ("enable_batching", _bool, False, "Batch concurrent requests server-side."),
    ("allow_version_labels_for_unavailable_models", _bool, False,
     "Allow a new label on a version that is not (yet) available."),
    ("batching_parameters_file", str, "",
     "BatchingParameters text proto (max_batch_size, batch_timeout_micros, ...)."),
    ("enable_per_model_batching_parameters", _bool, False, None),
    ("model_config_file", str, "",
     "model_config_list text proto (several models, version policy, labels)."),
    ("model_config_file_poll_wait_seconds", int, 0,
     "Seconds between re-reads of --model_config_file (0: read once)."),
    ("model_name", str, "default", "Model name, with --model_base_path."),
    ("model_base_path", str, "",
     "Folder of numbered versions (<base>/<version>/saved_model.pb)."),
    ("num_load_threads", int, 0,
     "Threads that load versions (0: the poller loads, and waits for it)."),
    ("num_unload_threads", int, 0,
     "Threads that unload versions (0: the poller unloads, and waits for it)."),
    ("max_num_load_retries", int, 5, "Retries of a failed load before giving up."),
    ("load_retry_interval_micros", int, 60_000_000, "Wait between load retries."),
    ("file_system_poll_wait_seconds", int, 1,
     "Seconds between polls for new/removed versions (0: scan once)."),
    ("flush_filesystem_caches", _bool, True, None),
    ("tensorflow_session_parallelism", int, 0, None),
    ("tensorflow_session_config_file", str, "", None),
    ("tensorflow_intra_op_parallelism", int, 0, "Threads inside one op (0: TF's choice)."),
    ("tensorflow_inter_op_parallelism", int, 0, "Ops run at once (0: TF's choice)."),
    ("use_alts_credentials", _bool, False, "Refused: this server has no ALTS (Google's "
                                           "transport security); use --ssl_config_file."),
    ("ssl_config_file", str, "",
     "SSLConfig text proto: TLS (mutual with client_verify) for gRPC and REST."),
    ("platform_config_file", str, "", None),
    ("per_process_gpu_memory_fraction", float, 0.0, None),
    ("saved_model_tags", str, "serve", "Comma-separated tags of the MetaGraph to load."),
    ("grpc_channel_arguments", str, "",
     "Comma-separated gRPC server arguments, e.g. grpc.max_connection_age_ms=2000."),
    ("grpc_max_threads", int, _THREADS, "Worker threads for gRPC requests."),
    ("enable_model_warmup", _bool, True,
     "Replay assets.extra/tf_serving_warmup_requests at load."),
    ("num_request_iterations_for_warmup", int, 0,
     "Times each warmup request is replayed (0 or 1: once)."),
    ("version", _bool, False, "Print the version and exit."),
    ("monitoring_config_file", str, "",
     "MonitoringConfig text proto; enables Prometheus metrics on the REST port."),
    ("remove_unused_fields_from_bundle_metagraph", _bool, True, None),
    ("prefer_tflite_model", _bool, False, None),
    ("num_tflite_pools", int, os.cpu_count() or 1, None),
    ("num_tflite_interpreters_per_pool", int, 1, None),
    ("enable_signature_method_name_check", _bool, False,
     "Classify/Regress only on signatures with the matching method_name."),
    ("xla_cpu_compilation_enabled", _bool, False, None),
    ("xla_gpu_compilation_enabled", _bool, False, None),
    ("enable_profiler", _bool, True, None),
    ("thread_pool_factory_config_file", str, "", None),
    ("mixed_precision", str, "",
     "bfloat16: oneDNN's automatic bfloat16 rewrite on every model (CPUs with AMX or "
     "AVX512-BF16; batch throughput, not single-text latency). Unset: float32."),
    ("skip_initialize_tpu", _bool, False, None),
    ("enable_grpc_healthcheck_service", _bool, False,
     "The standard gRPC health service (no token needed; NOT_SERVING while draining)."),
    ("enable_serialization_as_tensor_content", _bool, False,
     "gRPC Predict outputs packed in TensorProto.tensor_content (default: in the typed "
     "fields, float_val, int64_val, string_val..., as TF Serving)."),
]
IGNORED = frozenset(name for name, _, _, help_text in TF_SERVING_FLAGS if help_text is None)


def channel_arguments(text: str) -> List[tuple]:
    """``--grpc_channel_arguments``: ``key=value,key=value`` (integers as integers)."""
    arguments = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--grpc_channel_arguments: expected key=value, got {item!r}")
        # an int32 as an integer, anything else as a string, as TF Serving's server.cc
        number = int(value) if re.fullmatch(r"-?[0-9]+", value) else None
        arguments.append((key, number if number is not None and -2**31 <= number < 2**31
                          else value))
    return arguments


def grpc_listen_address(host: str, port: int) -> str:
    """gRPC's address for ``--host``: an IPv6 literal in brackets (``[::1]:8500``), and
    every interface for an empty host or ``::`` (as tornado takes them for REST)."""
    host = host.strip("[]")
    if host in ("", "::"):
        return f"[::]:{port}"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def rest_listen_host(host: str) -> str:
    """tornado's address for ``--host``: '' for every interface ('::' too: tornado would
    bind it IPv6-only), an IPv6 literal without brackets."""
    host = host.strip("[]")
    return "" if host == "::" else host


def rest_timeout(args: argparse.Namespace) -> Optional[float]:
    """``--rest_api_timeout_in_ms`` in seconds; 0 or less: no deadline, as TF Serving's
    REST handler sets none then."""
    return args.rest_api_timeout_in_ms / 1000 if args.rest_api_timeout_in_ms > 0 else None


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bert-pipeline serve", description=__doc__, allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    tf_serving = parser.add_argument_group(
        "TF Serving 2.18 flags (same names and defaults; --flag=value or --flag value)")
    for name, kind, default, help_text in TF_SERVING_FLAGS:
        extra = {"nargs": "?", "const": True} if kind is _bool else {}
        tf_serving.add_argument(
            f"--{name}", type=kind, default=default, **extra,
            help=help_text or "Accepted for compatibility; ignored by this server.")
    own = parser.add_argument_group("this server's own flags")
    own.add_argument("--host", default="127.0.0.1",
                     help="Address to bind (0.0.0.0 to accept other machines).")
    own.add_argument("--max_request_bytes", type=int, default=64 * 2**20,
                     help="Largest request body (REST) or message (gRPC) accepted.")
    own.add_argument("--feedback_dir", default="",
                     help="Record classified texts here and accept corrected labels at "
                          "POST /v1/feedback (opt-in; see serving/feedback.py).")
    own.add_argument("--feedback_max_age_days", type=float, default=30,
                     help="Delete recorded predictions (and their corrections) older than "
                          "this, at start and on writes (0: keep forever).")
    own.add_argument("--feedback_max_rows", type=int, default=100_000,
                     help="Keep at most this many recorded predictions, the newest "
                          "(0: no limit).")
    own.add_argument("--feedback_max_corrections_per_minute", type=int, default=1000,
                     help="Corrections one caller may send a minute (429 with Retry-After "
                          "past it; 0: no limit).")
    own.add_argument("--auth_token_file", default="",
                     help="If set, every request needs 'Authorization: Bearer <token>' "
                          "(gRPC: 'authorization' metadata) with a token of this file "
                          "(one 'TOKEN [CALLER]' per line, # comments; several for "
                          "rotation; no CALLER: named by its place, e.g. "
                          "'--auth_token_file line 2'); metrics included.")
    own.add_argument("--feedback_token_file", default="",
                     help="Tokens (same format) that alone may POST /v1/feedback; they "
                          "do not predict. Needed with --feedback_dir on a non-loopback "
                          "--host.")
    own.add_argument("--allow_plaintext_token", action="store_true",
                     help="Allow a token file on a non-loopback --host without "
                          "--ssl_config_file: only when a proxy or mesh in the same pod "
                          "terminates TLS.")
    own.add_argument("--batch_by_length", type=_bool, nargs="?", const=True, default=True,
                     help="Run the rows of a batch (server-side batching's merged requests, "
                          "or one request of several texts) in groups of similar length, "
                          "each padded to its own longest text; answers keep their order "
                          "(default: true).")
    own.add_argument("--bfloat16_fold_weights", type=_bool, nargs="?", const=True,
                     default=False,
                     help="With --mixed_precision=bfloat16: fold each signature's weights "
                          "into constants at load, so they are cast to bfloat16 once, not "
                          "on every call: faster for batches, the same labels, but several "
                          "times the memory and a slower load (docs/performance.md). "
                          "Default: false.")
    own.add_argument("--drain_delay_seconds", type=float, default=5,
                     help="On SIGTERM/SIGINT: readiness (model metadata) fails at once, "
                          "the ports stay open this long so load balancers stop sending "
                          "(Kubernetes: endpoints leave the Service), then close.")
    own.add_argument("--drain_grace_seconds", type=float, default=30,
                     help="Then requests in flight get this long to finish; exit 0 when "
                          "none is left, 1 if some had to be cut (a second signal cuts "
                          "at once).")
    return parser


def parse_flags(argv: List[str]) -> argparse.Namespace:
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.version:
        return args
    if bool(args.model_base_path) == bool(args.model_config_file):
        parser.error("give either --model_base_path (with --model_name) or "
                     "--model_config_file")
    for name in ("port", "rest_api_port"):
        if not 0 <= getattr(args, name) <= 65535:  # the kernel took 70000 as 4464
            parser.error(f"--{name} must be a port number, 0 to 65535, not "
                         f"{getattr(args, name)}")
    if args.use_alts_credentials:  # serving in clear text instead would lower security
        parser.error("--use_alts_credentials: this server has no ALTS; use "
                     "--ssl_config_file for TLS")
    if args.port == 0 and args.rest_api_port == 0 and not args.grpc_socket_path:
        parser.error("both --port and --rest_api_port are 0 and no --grpc_socket_path: "
                     "nothing to serve on")
    if args.port and args.port == args.rest_api_port:
        parser.error("--rest_api_port must differ from --port")
    if args.batching_parameters_file and not args.enable_batching:  # as TF Serving's server.cc
        parser.error("--batching_parameters_file is set without --enable_batching: add "
                     "--enable_batching, or drop the file")
    for name in ("max_request_bytes", "grpc_max_threads", "rest_api_num_threads"):
        if getattr(args, name) < 1:  # -1 bytes lifted gRPC's limit; 0 threads failed late
            parser.error(f"--{name} must be at least 1, not {getattr(args, name)}")
    if args.feedback_max_corrections_per_minute < 0:
        parser.error("--feedback_max_corrections_per_minute must be 0 (no limit) or more")
    try:
        channel_arguments(args.grpc_channel_arguments)
        precision.check_mode(args.mixed_precision)
    except ValueError as error:
        parser.error(str(error))
    if args.bfloat16_fold_weights and args.mixed_precision != "bfloat16":
        parser.error("--bfloat16_fold_weights folds weights for bfloat16: add "
                     "--mixed_precision=bfloat16, or leave it unset to serve in float32")
    for name, where in (("num_load_threads", "load"), ("num_unload_threads", "unload")):
        if getattr(args, name) < 0:
            parser.error(f"--{name} must be 0 ({where} in the poller) or more")
    for name in ("drain_delay_seconds", "drain_grace_seconds"):
        if not 0 <= getattr(args, name) < float("inf"):
            parser.error(f"--{name} must be 0 or more seconds")
    for name in sorted(IGNORED):
        if getattr(args, name) != parser.get_default(name):
            log.warning("--%s is accepted for compatibility and ignored by this server", name)
    return args


def build_service(args: argparse.Namespace):
    """The model store (batching, polling) and the service both transports answer from."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  registers tf-text ops before any model loads
    from serving.batching import BatchingParameters
    from serving.metrics import Metrics
    from serving.model_store import LoadOptions, ModelSpec, ModelStore, read_model_config
    from serving.servable import LoadSettings
    from serving.service import Service

    filesystems.register()  # s3:// model paths: tensorflow-io's file system
    precision.enable(args.mixed_precision, args.bfloat16_fold_weights)  # before any load
    if args.tensorflow_intra_op_parallelism:
        tf.config.threading.set_intra_op_parallelism_threads(
            args.tensorflow_intra_op_parallelism)
    if args.tensorflow_inter_op_parallelism:
        tf.config.threading.set_inter_op_parallelism_threads(
            args.tensorflow_inter_op_parallelism)
    if args.model_config_file:
        specs = read_model_config(args.model_config_file)
    else:
        base_path = args.model_base_path  # a URI (s3://, gs://) as given
        if "://" not in base_path:
            base_path = os.path.abspath(base_path)
        specs = [ModelSpec(args.model_name, base_path)]
    batching = None
    metrics = Metrics()
    if args.enable_batching:
        batching = (BatchingParameters.from_file(args.batching_parameters_file)
                    if args.batching_parameters_file else BatchingParameters())
    options = LoadOptions(
        servable=LoadSettings(
            batching=batching, tags=[t for t in args.saved_model_tags.split(",") if t],
            warmup=args.enable_model_warmup,
            warmup_iterations=max(1, args.num_request_iterations_for_warmup),
            method_name_check=args.enable_signature_method_name_check,
            by_length=args.batch_by_length, observe_batch=metrics.observe_batch,
            fold_weights=args.mixed_precision == "bfloat16" and args.bfloat16_fold_weights),
        file_system_poll_seconds=max(0, args.file_system_poll_wait_seconds),
        max_load_retries=max(0, args.max_num_load_retries),
        load_retry_interval_seconds=max(0, args.load_retry_interval_micros) / 1e6,
        config_poll_seconds=max(0, args.model_config_file_poll_wait_seconds),
        allow_labels_for_unavailable=args.allow_version_labels_for_unavailable_models,
        load_threads=args.num_load_threads, unload_threads=args.num_unload_threads)

    def on_change(name, version, state):
        metrics.loads.labels(name, state).inc()
        metrics.versions.labels(name).set(len(store.loaded_versions(name)))

    store = ModelStore(specs, options, on_change, config_path=args.model_config_file)
    feedback = None
    if args.feedback_dir:
        from serving.feedback import FeedbackLog
        feedback = FeedbackLog(args.feedback_dir, args.feedback_max_age_days,
                               args.feedback_max_rows)
    return Service(store, metrics, feedback)


def authenticator(args: argparse.Namespace):
    """The token files' rights, once the address is known to be safe for them."""
    from serving.auth import Authenticator, check_exposure, read_token_file

    check_exposure(args.host, bool(args.port or args.rest_api_port),
                   bool(args.auth_token_file or args.feedback_token_file),
                   bool(args.ssl_config_file), args.allow_plaintext_token,
                   bool(args.feedback_dir), bool(args.feedback_token_file))
    return Authenticator(*(read_token_file(path, flag) if path else None for path, flag in (
        (args.auth_token_file, "--auth_token_file"),
        (args.feedback_token_file, "--feedback_token_file"))))


def _exit_on_signal(signum, frame) -> None:
    """Until the drain takes over: SIGTERM ends a start still loading (as PID 1 of a
    container, a process without a handler ignores it and waited for the kill)."""
    raise SystemExit(128 + signum)


def serve(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, _exit_on_signal)
    auth = authenticator(args)  # before the slow imports: a refusal comes at once
    from serving import grpc_api, rest
    from serving.auth import RateLimiter
    from serving.metrics import read_monitoring_config
    from serving.tls import load_ssl_config

    metrics_path = (read_monitoring_config(args.monitoring_config_file)
                    if args.monitoring_config_file else None)
    tls = load_ssl_config(args.ssl_config_file) if args.ssl_config_file else None
    service = build_service(args)
    limiter = RateLimiter(args.feedback_max_corrections_per_minute, service.metrics.registry)
    service.store.start()

    grpc_server = None
    try:  # a SIGTERM here (SystemExit, _exit_on_signal) unloads what loaded
        addresses = ([grpc_listen_address(args.host, args.port)] if args.port else []) + (
            [f"unix:{os.path.abspath(args.grpc_socket_path)}"] if args.grpc_socket_path else [])
        if addresses:
            health = grpc_api.health_service() if args.enable_grpc_healthcheck_service else None
            if health is not None:
                service.drain.on_begin.append(lambda: grpc_api.set_draining(health))
            grpc_server = grpc_api.make_server(
                service, addresses, args.grpc_max_threads, args.max_request_bytes, auth,
                tls.grpc_credentials() if tls else None,
                channel_arguments(args.grpc_channel_arguments), health,
                args.enable_serialization_as_tensor_content)
            grpc_server.start()
            print(f"Running gRPC ModelServer at {', '.join(addresses)} ...", flush=True)
    except BaseException:
        if grpc_server:
            grpc_server.stop(grace=0)
        service.store.stop()
        raise

    async def run_rest() -> None:
        loop = asyncio.get_running_loop()
        signals: asyncio.Queue = asyncio.Queue()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, signals.put_nowait, sig)
        http = None
        if args.rest_api_port:
            pool = ThreadPoolExecutor(args.rest_api_num_threads, thread_name_prefix="rest")
            timeout = rest_timeout(args)
            app = rest.make_app(service, pool, rest.RestOptions(
                args.max_request_bytes, timeout, auth, args.rest_api_enable_cors_support,
                limiter),
                metrics_path)
            try:
                http = app.listen(args.rest_api_port, address=rest_listen_host(args.host),
                                  max_body_size=rest.TORNADO_MAX_BODY,
                                  body_timeout=timeout, idle_connection_timeout=timeout,
                                  ssl_options=tls.ssl_context() if tls else None)
            except OSError as error:
                raise OSError(f"cannot listen for REST on {args.host}:{args.rest_api_port}: "
                              f"{error.strerror or error} (--rest_api_port)") from None
            print(f"Exporting HTTP/REST API at:{args.host}:{args.rest_api_port} ...",
                  flush=True)
        received = await signals.get()
        await _drain(args, service, http, grpc_server, signals, received)

    try:
        asyncio.run(run_rest())
    except BaseException:
        if grpc_server:
            grpc_server.stop(grace=0)
        service.store.stop()
        raise
    if grpc_server:
        grpc_server.stop(grace=0).wait()  # stopped in the drain, nothing in flight
    service.store.stop()
    return 0


async def _drain(args: argparse.Namespace, service, http, grpc_server,
                 signals: asyncio.Queue, received: int) -> None:
    """SIGTERM/SIGINT: readiness false, listeners open ``--drain_delay_seconds``, requests
    in flight up to ``--drain_grace_seconds`` (serving/drain.py); returns once all are
    answered, else exits the process at once with status 1."""
    from serving.drain import describe

    drain = service.drain
    drain.begin()
    log.info("%s: draining: readiness is false; the ports stay open %gs "
             "(--drain_delay_seconds), then %s in flight get up to %gs "
             "(--drain_grace_seconds)", signal.Signals(received).name,
             args.drain_delay_seconds, describe(drain.running()), args.drain_grace_seconds)
    loop = asyncio.get_running_loop()
    if await _second_signal(signals, loop.time() + args.drain_delay_seconds, lambda: False):
        _cut(drain, "a second signal came during the drain delay")
    if http:
        http.stop()
    drain.closed = True  # kept-alive REST connections: 503 from here on
    if grpc_server:
        grpc_server.stop(grace=args.drain_grace_seconds)
    log.info("draining: ports closed; waiting for %s", describe(drain.running()))
    idle = lambda: not any(drain.running().values())  # noqa: E731
    if await _second_signal(signals, loop.time() + args.drain_grace_seconds, idle):
        _cut(drain, "a second signal came")
    if not idle():
        _cut(drain, f"--drain_grace_seconds={args.drain_grace_seconds:g} passed")
    if http:
        await http.close_all_connections()  # the idle keep-alive ones
    log.info("drained: every request in flight was answered; exiting")


async def _second_signal(signals: asyncio.Queue, until: float, done) -> bool:
    """Waits until the loop time ``until`` or ``done()``; True if a signal came first."""
    loop = asyncio.get_running_loop()
    while not done() and loop.time() < until:
        try:
            await asyncio.wait_for(signals.get(), min(0.05, until - loop.time()))
            return True
        except asyncio.TimeoutError:
            pass
    return False


def _cut(drain, why: str) -> None:
    """Exits at once, status 1: the requests still running are in threads that may never
    return (a model run), so neither they nor the event loop's tasks are waited for."""
    from serving.drain import describe

    log.error("%s: exiting with %s still running (cut)", why, describe(drain.running()))
    sys.stdout.flush()
    logging.shutdown()
    os._exit(1)


def main(argv: Optional[List[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    process.die_with_parent()  # a child of ServerProcess (the serving check, tests)
    args = parse_flags(sys.argv[1:] if argv is None else argv)
    if args.version:
        from importlib.metadata import version

        print(f"bert-pipeline model server (TF Serving 2.18 APIs and flags)\n"
              f"TensorFlow Library: {version('tensorflow')}")
        return 0
    try:
        return serve(args)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    filesystems.exit_process(main())
