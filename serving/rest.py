"""TF Serving's REST API on tornado: the same paths, JSON shapes, errors and codes.

Tested with a model server: tests/serving/test_server.py, tests/serving/test_compat.py.
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re
import urllib.parse
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

import grpc
import tornado.web
from google.protobuf import json_format
from tornado.ioloop import IOLoop

from serving import deadlines, feedback, json_codec, protos
from serving.auth import FEEDBACK, PREDICT, Authenticator, RateLimiter
from serving.errors import ServingError, invalid, not_found
from serving.feedback import ID_HEADER, encode_ids
from serving.service import ModelRef, Service

log = logging.getLogger(__name__)
# TF Serving's two regexes (http_rest_api_util.cc), wholly case-insensitive: a GET of
# .../METADATA matches, and answers the status, as only "metadata" is the metadata; a POST
# of :PREDICT matches no method and is malformed.
_PATH = re.compile(r"(?i)/v1/models/(?P<name>[^/:]+)"
                   r"(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
                   r"(?:/(?P<metadata>metadata)|:(?P<verb>predict|classify|regress))?")
_ORIGIN = re.compile(r"https?://")  # what a CORS preflight's Origin must contain


class _JsonHandler(tornado.web.RequestHandler):
    """Every answer is JSON, errors included (never tornado's HTML pages); checks the token
    holds the handler's ``right`` (serving/auth.py) and, with CORS on, sends TF Serving's
    CORS headers."""

    right = PREDICT

    def initialize(self, service: Service, conf: "RestOptions", **_):
        self.service, self.conf = service, conf
        self.caller = None  # who sent the request (its token's caller), once checked
        self._in_flight = False
        self.wire_bytes = 0  # of the body as sent (gzip: before inflating)

    def prepare(self):
        self._in_flight = True  # counted until finished or the client went away
        self.service.drain.started("REST")
        if self.service.drain.draining:  # the client reconnects elsewhere
            # tornado keeps a connection by the request's headers alone: tell it to close
            # this one after the answer (it then sends "Connection: close" itself).
            self.request.connection._disconnect_on_finish = True
        self.set_header("Content-Type", "application/json")
        if self.service.drain.closed:  # ports closed: no new work for the grace period
            self._error(ServingError(grpc.StatusCode.UNAVAILABLE,
                                     "the server is shutting down (its ports are closed): "
                                     "send the request to another replica"))
            return
        if self.request.method == "OPTIONS":
            return  # a CORS preflight carries no credentials (and answers nothing)
        try:
            self.caller = self.conf.auth.caller(self.request.headers.get("Authorization", ""),
                                                self.right)
        except ServingError as error:
            self._error(error)

    def set_default_headers(self):
        """On every answer, errors included; tornado calls this before ``initialize``,
        so the options come from the application's settings."""
        conf = self.application.settings.get("rest_options")
        if conf is not None and conf.cors:
            self.set_header("Access-Control-Allow-Origin", "*")
            self.set_header("Access-Control-Allow-Methods", "POST, GET")
            self.set_header("Access-Control-Allow-Headers",
                            "Content-Type, Authorization" if conf.auth.enabled
                            else "Content-Type")

    def compute_etag(self):
        return None  # TF Serving sends no Etag (and never answers 304)

    def on_finish(self):
        self._done()

    def on_connection_close(self):
        super().on_connection_close()
        self._done()

    def _done(self):
        """The request stops counting once answered (or its client went away) and its
        model run is over: a run left by a 504 or a lost client still holds servables."""
        run = getattr(self, "_model_run", None)
        if run is not None and not run.done():
            run.add_done_callback(lambda _: self._done())
            return
        if self._in_flight:
            self._in_flight = False
            self.service.drain.finished("REST")

    def options(self, *args):  # the OPTIONS verb: a CORS preflight, with CORS on or off
        if _ORIGIN.search(self.request.headers.get("Origin", "")):
            self.finish()
        else:
            self._error(ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                                     f"Malformed request: OPTIONS {self.request.uri}: "
                                     "Origin header is missing in CORS preflight"))

    def _error(self, error: ServingError, status: Optional[int] = None):
        if self._finished:
            return
        self.set_status(status or error.http_status)
        if getattr(error, "retry_after", None):
            self.set_header("Retry-After", str(error.retry_after))
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": error.message}))

    def data_received(self, chunk: bytes):
        """Every handler streams its body (``stream_request_body``), so this limit answers
        a JSON 413, never tornado's own (a bare 400, for a chunked body)."""
        self.wire_bytes += len(chunk)
        if self.wire_bytes > self.conf.max_body_bytes:
            self._too_large()

    def _too_large(self):
        self._error(ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                 f"request body larger than {self.conf.max_body_bytes} "
                                 "bytes"), status=413)

    def _request_summary(self) -> str:
        """How logs name a request: no query string (it can carry personal data)."""
        return f"{self.request.method} {self.request.path} ({self.request.remote_ip})"

    def log_exception(self, typ, value, tb):
        """Tornado's, less the request's repr (query string, headers, token)."""
        if isinstance(value, tornado.web.HTTPError):
            log.warning("%d %s: %s", value.status_code, self._request_summary(),
                        value.log_message or "")
        else:
            log.error("Uncaught exception %s", self._request_summary(),
                      exc_info=(typ, value, tb))

    def write_error(self, status_code: int, **kwargs):
        """Whatever tornado itself refuses (bad framing, unknown verb) or an unexpected
        exception: TF Serving's JSON error shape, not an HTML page."""
        reason = self._reason if status_code != 500 else "Internal error"
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": reason}))


class _ModelHandler(_JsonHandler):
    """Every ``/v1/models/...`` path; reads the body in chunks to enforce the size limit."""

    SUPPORTED_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")

    def initialize(self, service: Service, conf: "RestOptions", pool: ThreadPoolExecutor):
        super().initialize(service, conf)
        self.pool = pool
        self.chunks, self.size = [], 0
        self.inflater = None  # a zlib decompressor for a gzip body
        self.deadline: deadlines.Deadline = None  # set when the work starts

    def prepare(self):
        super().prepare()
        if self._finished:
            return
        declared = self.request.headers.get("Content-Length")
        if declared is not None and not re.fullmatch(r"[0-9]+", declared.strip()):
            self._error(invalid(f"Malformed request: Content-Length {declared[:40]!r} is "
                                "not a number"))
        elif declared is not None and _number(declared.strip()) > self.conf.max_body_bytes:
            self._too_large()
        elif self.request.headers.get("Content-Encoding", "").strip().lower() == "gzip":
            self.inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)  # as TF Serving

    def data_received(self, chunk: bytes):
        """Holds the body, inflated if gzip, to ``max_body_bytes``: a gzip bomb is
        inflated only up to the limit, a piece at a time."""
        if self._finished:
            return
        super().data_received(chunk)
        for piece in self._inflated(chunk) if self.inflater else (chunk,):
            if self._finished:
                return
            self.size += len(piece)
            if self.size > self.conf.max_body_bytes:
                self._too_large()
                return
            self.chunks.append(piece)

    def _inflated(self, chunk: bytes):
        try:
            while chunk and not self._finished:
                yield self.inflater.decompress(chunk, 2**16)
                chunk = self.inflater.unconsumed_tail
        except zlib.error as error:
            self._error(invalid(f"Malformed request: gzip body: {error}"))

    def _body(self) -> bytes:
        if self.inflater and not self.inflater.eof:
            raise invalid("Malformed request: gzip body is truncated")
        return b"".join(self.chunks)

    def decode_argument(self, value: bytes, name=None) -> str:
        """The path as tornado unquoted it, never refused (tornado's bare 400 for a %ff):
        ``_handle`` matches the raw URI and decodes the parts as TF Serving does."""
        return value.decode("latin-1")

    async def get(self, path: str):
        await self._handle(path, post=False)

    async def post(self, path: str):
        await self._handle(path, post=True)

    async def put(self, path: str):  # TF Serving: any other verb is a malformed request
        await self._handle(path, post=None)

    delete = patch = head = put

    async def _handle(self, path: str, post: Optional[bool]):
        """As TF Serving: the path and query as sent are matched (a POST with a query, or
        an encoded ':', is malformed), then the model name and label are decoded."""
        if self._finished:
            return
        match = _PATH.fullmatch(self.request.uri)
        if post is None or not match or bool(match["verb"]) != post or (
                post and match["metadata"]) or (post and match["verb"] not in _VERBS):
            self._error(invalid(f"Malformed request: {self.request.method} "
                                f"{self.request.uri}"))
            return
        version = _number(match["version"]) if match["version"] else None
        if version is not None and version >= 2**63:  # TF Serving's version is an int64
            self._error(invalid(f"Failed to convert version: {match['version']} to numeric."))
            return
        ref = ModelRef(_decoded(match["name"]), version,
                       match["label"] and _decoded(match["label"]))
        await self._run(self._answer, ref, match["verb"], match["metadata"] == "metadata",
                        counted=ref.name if match["verb"] else None)

    async def _run(self, work, *args, counted: Optional[str] = None):
        """Runs ``work`` in the worker pool under the request deadline
        (``--rest_api_timeout_in_ms``): its model run is cancelled there too, so the worker
        is free again; answers its JSON or its error. ``counted``: the model whose
        request_count gets the status answered (every :predict, :classify, :regress,
        failures before the model is reached included, as TF Serving)."""
        self.deadline = deadlines.after(self.conf.timeout_seconds)
        future = self._model_run = IOLoop.current().run_in_executor(self.pool, work, *args)
        error = None
        try:
            body = await asyncio.wait_for(asyncio.shield(future), self.conf.timeout_seconds)
        except asyncio.TimeoutError:
            # The run ends soon (cancelled at its deadline): its error is expected.
            future.add_done_callback(lambda done: done.cancelled() or done.exception())
            error = ServingError(grpc.StatusCode.DEADLINE_EXCEEDED,
                                 f"Deadline exceeded: no answer within "
                                 f"{self.conf.timeout_seconds * 1000:.0f} ms")
        except ServingError as refused:
            error = refused
        except Exception as bug:  # noqa: BLE001  a bug, not a bad request: still JSON
            log.exception("REST request %s %s failed", self.request.method,
                          self.request.path)
            error = ServingError(grpc.StatusCode.INTERNAL, f"internal error: "
                                                           f"{type(bug).__name__}")
        if counted is not None:
            self.service.count(counted, error.code.name if error else "OK")
        if error:
            self._error(error)
        else:
            self.finish(body)

    def _answer(self, ref: ModelRef, verb: Optional[str], metadata: bool) -> str:
        """Runs in the worker pool: decoding, inference and encoding are CPU work."""
        service = self.service
        if verb is None and not metadata:
            return _proto_json(protos.status_response(service.status(ref)))
        if metadata:
            servable = service.metadata(ref, "REST")
            response = protos.metadata_response(servable)
            # As TF Serving prints it: default-valued fields included.
            return json.dumps({"model_spec": _proto_dict(response.model_spec),
                               "metadata": {"signature_def": _proto_dict(
                                   _unpack_signatures(response))}})
        deadlines.check(self.deadline)  # it may have passed in the pool's queue
        request = json_codec.parse_body(self._body())
        signature = request.get("signature_name", "")
        if not isinstance(signature, str):
            raise invalid("'signature_name' must be a string")
        if verb == "predict":
            servable = service.store.get(ref.name, ref.version, ref.label)
            _, signature_def = servable.signature(signature)
            inputs, row_format = json_codec.decode_predict(request, signature_def)
            _, _, outputs = service.predict(ref, signature, inputs, "REST",
                                            deadline=self.deadline)
            return json.dumps(json_codec.encode_predict(outputs, row_format))
        examples = json_codec.decode_examples(request)
        if verb == "classify":
            _, rows, ids = service.classify(ref, signature, examples, "REST", self.deadline)
            if ids:
                self.set_header(ID_HEADER, encode_ids(ids))
            return json.dumps(json_codec.encode_classify(rows))
        _, values, _ = service.regress(ref, signature, examples, "REST", self.deadline)
        return json.dumps(json_codec.encode_regress(values))



class _FeedbackHandler(_ModelHandler):
    """``POST /v1/feedback``: corrected labels for recorded predictions (opt-in); a body
    of at most ``MAX_BODY_BYTES`` (or ``--max_request_bytes`` if smaller); a token with
    the feedback right; at most ``--feedback_max_corrections_per_minute`` per caller,
    stored with the caller's name."""

    right = FEEDBACK

    def initialize(self, service: Service, conf: "RestOptions", pool: ThreadPoolExecutor):
        super().initialize(service, dataclasses.replace(
            conf, max_body_bytes=min(conf.max_body_bytes, feedback.MAX_BODY_BYTES)), pool)

    async def _handle(self, path: str, post: Optional[bool]):
        if self._finished:
            return
        if not post:
            self._error(invalid(f"Malformed request: {self.request.method} "
                                f"{self.request.path}"))
            return
        await self._run(self._correct)

    def _correct(self) -> str:
        if self.service.feedback is None:
            raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                               "feedback recording is off (start with --feedback_dir)")
        body = json_codec.parse_body(self._body(), strict=True)
        corrections = body.get("corrections")
        if not isinstance(corrections, list):
            raise invalid("expected {\"corrections\": [{\"id\": ..., \"label\": ...}]}")
        if len(corrections) > feedback.MAX_CORRECTIONS:  # 413 before the rate limit
            raise _TooLarge(grpc.StatusCode.RESOURCE_EXHAUSTED,
                            feedback.too_many(len(corrections)))
        self.conf.limiter.take(self.caller, len(corrections))
        try:
            return json.dumps({"accepted": self._store(corrections)})
        except BaseException:  # nothing was stored: the caller keeps its allowance
            self.conf.limiter.give_back(self.caller, len(corrections))
            raise

    def _store(self, corrections: list) -> int:
        try:
            return self.service.feedback.correct(corrections, self.caller)
        except feedback.FeedbackError as error:
            raise invalid(str(error)) from None
        except OSError as error:  # a full disk: the write was rolled back
            log.warning("corrections not stored: %s", error)
            raise ServingError(grpc.StatusCode.UNAVAILABLE, (
                f"corrections not stored, nothing was written: {error.strerror or error}; "
                "retry later (a retry stores each correction once)")) from None


class _TooLarge(ServingError):
    http_status = 413  # as for a body over the limit


class _MetricsHandler(_JsonHandler):
    """Prometheus metrics (``--monitoring_config_file``), behind the token like the rest."""

    def get(self):
        if self.request.query:  # TF Serving compares the path and query with its path
            self.set_status(400)
            self.set_header("Content-Type", "text/plain")
            self.finish(f"Unexpected path: {self.request.uri}. Should be {self.request.path}")
            return
        self.set_header("Content-Type", "text/plain; version=0.0.4")
        self.finish(self.service.metrics.exposition())


class _NotFoundHandler(_JsonHandler):
    """Paths outside /v1 (TF Serving answers those 404 too)."""

    def prepare(self):
        super().prepare()
        if not self._finished:
            self._error(not_found(f"Malformed request: {self.request.method} "
                                  f"{self.request.uri}"))


# tornado's own body limit (``listen(max_body_size=)``), left far above the handlers': it
# checks a chunk's declared size before the handler sees any of it.
TORNADO_MAX_BODY = 2**62


@dataclasses.dataclass
class RestOptions:
    """What the REST handlers enforce."""

    max_body_bytes: int = 64 * 2**20
    timeout_seconds: Optional[float] = 30.0  # --rest_api_timeout_in_ms: per request, and per body
    auth: Authenticator = dataclasses.field(default_factory=Authenticator)  # open: none
    cors: bool = False  # --rest_api_enable_cors_support
    limiter: RateLimiter = dataclasses.field(default_factory=lambda: RateLimiter(0))


def log_request(handler: tornado.web.RequestHandler) -> None:
    """The access log line (tornado's, less the query string, which can carry personal
    data or credentials); request bodies are never logged."""
    from tornado.log import access_log

    status = handler.get_status()
    write = (access_log.info if status < 400 else
             access_log.warning if status < 500 else access_log.error)
    request = handler.request
    write("%d %s %s (%s) %.2fms", status, request.method, request.path, request.remote_ip,
          1000.0 * request.request_time())


class _NoMalformedDetail(logging.Filter):
    """Tornado logs a request it cannot parse with the parser's words, which quote the
    bad header's value ("Invalid header value 'Bearer <token>\\x01'"): the event is
    kept, its detail (credentials, personal data) dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith("Malformed HTTP message from") and record.args:
            record.msg, record.args = ("Malformed HTTP message from %s (its detail is not "
                                       "logged: it may quote a header)", record.args[:1])
        return True


def make_app(service: Service, pool: ThreadPoolExecutor, options: RestOptions,
             metrics_path: Optional[str] = None) -> tornado.web.Application:
    general = logging.getLogger("tornado.general")
    if not any(isinstance(f, _NoMalformedDetail) for f in general.filters):
        general.addFilter(_NoMalformedDetail())
    common = {"service": service, "conf": options}
    handlers = []
    if metrics_path:
        handlers.append((re.escape(metrics_path),
                         tornado.web.stream_request_body(_MetricsHandler), common))
    streaming = {**common, "pool": pool}
    handlers.append((r"/v1/feedback/?()", tornado.web.stream_request_body(_FeedbackHandler),
                     streaming))
    handlers.append((r"(?i)/(v1/.*)", tornado.web.stream_request_body(_ModelHandler),
                     streaming))  # TF Serving: (?i)/v1/.*
    return tornado.web.Application(
        handlers, default_handler_class=tornado.web.stream_request_body(_NotFoundHandler),
        default_handler_args=common, log_function=log_request, rest_options=options)


_VERBS = ("predict", "classify", "regress")


def _decoded(part: str) -> str:
    """A path part as TF Serving decodes it (curl_easy_unescape): %XX escapes and raw
    bytes (tornado reads the request line as Latin-1) as UTF-8."""
    return urllib.parse.unquote_to_bytes(part.encode("latin-1")).decode("utf-8", "replace")


def _number(digits: str) -> int:
    """Decimal digits as a number, 2**63 for any past int64 however many digits there
    are (Python's int() refuses more than 4300)."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= 19 else 2**63


def _proto_dict(message) -> dict:
    """JSON as TF Serving prints protos: field names kept, default values printed."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     including_default_value_fields=True)


def _proto_json(message) -> str:
    return json.dumps(_proto_dict(message))


def _unpack_signatures(response):
    from tensorflow_serving.apis import get_model_metadata_pb2

    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    return signatures
