"""TF Serving's REST API on tornado: the same paths, JSON shapes, errors and codes."""
from __future__ import annotations

import hmac
import json
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

import grpc
import tornado.web
from google.protobuf import json_format
from tornado.ioloop import IOLoop

from serving import json_codec, protos
from serving.errors import ServingError, invalid
from serving.feedback import ID_HEADER, FeedbackError
from serving.service import ModelRef, Service

_PATH = re.compile(r"(?i)/v1/models/(?P<name>[^/:]+)"
                   r"(?:/versions/(?P<version>-?\d+)|/labels/(?P<label>[^/:]+))?"
                   r"(?:(?P<metadata>/metadata)|:(?P<verb>predict|classify|regress))?/?")


class _ModelHandler(tornado.web.RequestHandler):
    """Every ``/v1/models/...`` path; reads the body in chunks to enforce the size limit."""

    def initialize(self, service: Service, pool: ThreadPoolExecutor, max_body_bytes: int,
                   token: Optional[str]):
        self.service, self.pool = service, pool
        self.max_body_bytes, self.token = max_body_bytes, token
        self.chunks, self.size, self.rejected = [], 0, False

    def prepare(self):
        self.set_header("Content-Type", "application/json")
        if self.token and not self._authorized():
            self.rejected = True
            self._error(ServingError(grpc.StatusCode.UNAUTHENTICATED,
                                     "missing or invalid bearer token"))
            return
        declared = int(self.request.headers.get("Content-Length") or 0)
        if declared > self.max_body_bytes:
            self.rejected = True
            self._too_large()

    def data_received(self, chunk: bytes):
        if self.rejected:
            return
        self.size += len(chunk)
        if self.size > self.max_body_bytes:
            self.rejected = True
            self._too_large()
            return
        self.chunks.append(chunk)

    async def get(self, path: str):
        await self._handle(path, post=False)

    async def post(self, path: str):
        await self._handle(path, post=True)

    async def _handle(self, path: str, post: bool):
        if self.rejected:
            return
        match = _PATH.fullmatch("/" + path)
        if not match or bool(match["verb"]) != post or (post and match["metadata"]):
            self._error(invalid(f"Malformed request: {self.request.method} "
                                f"{self.request.path}"))
            return
        ref = ModelRef(match["name"], int(match["version"]) if match["version"] else None,
                       match["label"])
        try:
            body = await IOLoop.current().run_in_executor(
                self.pool, self._answer, ref, match["verb"], bool(match["metadata"]))
        except ServingError as error:
            self._error(error)
            return
        self.finish(body)

    def _answer(self, ref: ModelRef, verb: Optional[str], metadata: bool) -> str:
        """Runs in the worker pool: decoding, inference and encoding are CPU work."""
        service = self.service
        if verb is None and not metadata:
            return _proto_json(protos.status_response(service.status(ref)))
        if metadata:
            servable = service.metadata(ref, "REST")
            response = protos.metadata_response(servable)
            signatures = json_format.MessageToDict(
                _unpack_signatures(response), preserving_proto_field_name=True)
            return json.dumps({"model_spec": {"name": servable.name, "signature_name": "",
                                              "version": str(servable.version)},
                               "metadata": {"signature_def": signatures}})
        request = json_codec.parse_body(b"".join(self.chunks))
        signature = request.get("signature_name", "")
        if not isinstance(signature, str):
            raise invalid("'signature_name' must be a string")
        if verb == "predict":
            servable = service.store.get(ref.name, ref.version, ref.label)
            _, signature_def = servable.signature(signature)
            inputs, row_format = json_codec.decode_predict(request, signature_def)
            _, _, outputs = service.predict(ref, signature, inputs, "REST")
            return json.dumps(json_codec.encode_predict(outputs, row_format))
        examples = json_codec.decode_examples(request)
        if verb == "classify":
            _, rows, ids = service.classify(ref, signature, examples, "REST")
            if ids:
                self.set_header(ID_HEADER, ",".join(ids))
            return json.dumps({"results": [[[label, score] for label, score in row]
                                           for row in rows]})
        _, values, _ = service.regress(ref, signature, examples, "REST")
        return json.dumps({"results": values})

    def _authorized(self) -> bool:
        supplied = self.request.headers.get("Authorization", "")
        return hmac.compare_digest(supplied.encode(), f"Bearer {self.token}".encode())

    def _too_large(self):
        self._error(ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                 f"request body larger than {self.max_body_bytes} bytes"),
                    status=413)

    def _error(self, error: ServingError, status: Optional[int] = None):
        self.set_status(status or error.http_status)
        self.finish(json.dumps({"error": error.message}))


class _FeedbackHandler(_ModelHandler):
    """``POST /v1/feedback``: corrected labels for recorded predictions (opt-in)."""

    async def get(self, path: str = ""):
        self._error(invalid(f"Malformed request: GET {self.request.path}"))

    async def post(self, path: str = ""):
        if self.rejected:
            return
        if self.service.feedback is None:
            self._error(ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                                     "feedback recording is off (start with --feedback_dir)"))
            return
        try:
            body = json_codec.parse_body(b"".join(self.chunks))
            corrections = body.get("corrections") if isinstance(body, dict) else None
            if not isinstance(corrections, list):
                raise invalid("expected {\"corrections\": [{\"id\": ..., \"label\": ...}]}")
            accepted = self.service.feedback.correct(corrections)
        except FeedbackError as error:
            self._error(invalid(str(error)))
            return
        except ServingError as error:
            self._error(error)
            return
        self.finish(json.dumps({"accepted": accepted}))


class _MetricsHandler(tornado.web.RequestHandler):
    def initialize(self, service: Service):
        self.service = service

    def get(self):
        self.set_header("Content-Type", "text/plain; version=0.0.4")
        self.finish(self.service.metrics.exposition())


class _NotFoundHandler(tornado.web.RequestHandler):
    """Paths outside /v1 (TF Serving answers those 404 too)."""

    def prepare(self):
        self.set_status(404)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": f"Malformed request: {self.request.method} "
                                         f"{self.request.path}"}))


def make_app(service: Service, pool: ThreadPoolExecutor, max_body_bytes: int,
             token: Optional[str] = None, metrics_path: Optional[str] = None
             ) -> tornado.web.Application:
    handlers = []
    if metrics_path:
        handlers.append((re.escape(metrics_path), _MetricsHandler, {"service": service}))
    options = {"service": service, "pool": pool, "max_body_bytes": max_body_bytes,
               "token": token}
    handlers.append((r"/v1/feedback/?", tornado.web.stream_request_body(_FeedbackHandler),
                     options))
    handlers.append((r"/(v1/.*)", tornado.web.stream_request_body(_ModelHandler), options))
    return tornado.web.Application(handlers, default_handler_class=_NotFoundHandler)


def _proto_json(message) -> str:
    return json.dumps(json_format.MessageToDict(
        message, preserving_proto_field_name=True, including_default_value_fields=True))


def _unpack_signatures(response):
    from tensorflow_serving.apis import get_model_metadata_pb2

    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    return signatures
