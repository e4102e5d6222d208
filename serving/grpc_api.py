"""TF Serving's gRPC services (PredictionService, ModelService) on grpcio.

Tested with a model server: tests/serving/test_server.py, tests/serving/test_compat.py.
"""
from __future__ import annotations

import functools
import logging
import math
from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional, Sequence, Tuple

import grpc
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (classification_pb2, model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc, regression_pb2)

from serving import deadlines, protos
from serving.auth import PREDICT, Authenticator
from serving.errors import ServingError, invalid
from serving.feedback import ID_METADATA, encode_ids
from serving.servable import SignatureNotFound, input_examples
from serving.service import ModelRef, Service

log = logging.getLogger(__name__)


def _answers(method=None, *, counted: bool = False):
    """Checks the token holds the prediction right (there is no feedback over gRPC);
    counts the request while it runs (serving/drain.py); turns
    ServingErrors into their gRPC status and anything unexpected into INTERNAL (never
    grpcio's UNKNOWN). ``counted``: request_count gets the status it is answered with
    (Predict, Classify, Regress: as TF Serving's PredictionServiceImpl)."""
    if method is None:
        return functools.partial(_answers, counted=counted)

    @functools.wraps(method)
    def wrapper(self, request, context):
        status = None  # a refused token counts nothing (its model name is anyone's)
        try:
            self.auth.caller(dict(context.invocation_metadata()).get("authorization", ""),
                             PREDICT)
            status = "OK"
            with self.service.drain.request("gRPC"):
                return method(self, request, context)
        except ServingError as error:
            status = status and error.code.name
            context.abort(error.code, error.message)
        except Exception as error:  # noqa: BLE001  a bug, not a bad request
            status = status and "INTERNAL"
            log.exception("gRPC %s failed", method.__name__)
            context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(error).__name__}")
        finally:
            if counted and status:
                self.service.count(request.model_spec.name, status)
    return wrapper


# Tensor types a request may carry (no resources, variants or reference types).
_REQUEST_DTYPES = frozenset(protos.VALUE_FIELDS)


def decode_tensor(name: str, proto, max_bytes: int):
    """A request TensorProto as numpy, its declared size checked before anything is
    allocated: a shape of 1e10 elements is refused, not attempted. As TF Serving
    (Tensor::FromProto): typed values beyond the shape are left out, and short of it the
    last one repeats; ``tensor_content`` must fit the shape."""
    if proto.dtype not in _REQUEST_DTYPES:
        kind = (types_pb2.DataType.Name(proto.dtype)
                if proto.dtype in types_pb2.DataType.values() else f"{proto.dtype} (unknown)")
        raise invalid(f"input '{name}': tensor type {kind} cannot be sent in a request")
    if proto.tensor_shape.unknown_rank:
        raise invalid(f"input '{name}': tensor shape has unknown rank")
    dims = [d.size for d in proto.tensor_shape.dim]
    if any(d < 0 for d in dims):
        raise invalid(f"input '{name}': negative dimension in shape {dims}")
    elements = math.prod(dims)
    item = 8 if proto.dtype == types_pb2.DT_STRING else tf.dtypes.as_dtype(proto.dtype).size
    if elements * item > max_bytes:
        raise ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                           f"input '{name}': shape {dims} holds {elements} elements, more "
                           f"than a request may hold ({max_bytes} bytes)")
    field = protos.VALUE_FIELDS[proto.dtype]
    kept = elements * (2 if field in ("scomplex_val", "dcomplex_val") else 1)  # (re, im)
    if not proto.tensor_content and len(getattr(proto, field)) > kept:
        first = type(proto)(dtype=proto.dtype, tensor_shape=proto.tensor_shape)
        getattr(first, field).extend(getattr(proto, field)[:kept])
        proto = first
    try:
        return tf.make_ndarray(proto)
    except Exception as error:  # noqa: BLE001  any inconsistency between shape and values
        raise invalid(f"input '{name}': bad tensor: {str(error)[:200]}") from None


def _deadline(context) -> deadlines.Deadline:
    """The client's deadline, if it set one (TF Serving's RunOptions.timeout_in_ms)."""
    return deadlines.after(context.time_remaining())


def _ref(model_spec) -> ModelRef:
    if not model_spec.name:
        raise invalid("Missing ModelSpec")
    choice = model_spec.WhichOneof("version_choice")
    if choice == "version":
        return ModelRef(model_spec.name, version=model_spec.version.value)
    if choice == "version_label":
        return ModelRef(model_spec.name, label=model_spec.version_label)
    return ModelRef(model_spec.name)


def _examples(model_input) -> list:
    """The serialized examples of a Classify/Regress ``Input``; none makes the servable
    answer "Input is empty." once the model and its signature are found, as TF Serving."""
    return [example.SerializeToString() for example in input_examples(model_input)]


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, service: Service, auth: Authenticator,
                 max_tensor_bytes: int = 64 * 2**20, tensor_content: bool = False):
        self.service, self.auth = service, auth
        self.max_tensor_bytes = max_tensor_bytes  # what one decoded input may take
        self.tensor_content = tensor_content  # --enable_serialization_as_tensor_content

    @_answers(counted=True)
    def Predict(self, request, context):
        ref = _ref(request.model_spec)
        signature = request.model_spec.signature_name
        try:
            # as TF Serving, the model, version and signature are found before the
            # tensors are read: an unknown model is NOT_FOUND whatever its inputs
            self.service.store.get(ref.name, ref.version, ref.label).signature(signature)
            inputs = {k: decode_tensor(k, v, self.max_tensor_bytes)
                      for k, v in request.inputs.items()}
            servable, key, outputs = self.service.predict(
                ref, signature, inputs, "GRPC", list(request.output_filter),
                _deadline(context))
        except SignatureNotFound as error:
            raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                               f'Serving signature key "{error.key}" not found.') from None
        response = predict_pb2.PredictResponse(
            model_spec=protos.model_spec(servable.name, servable.version, key))
        for name, value in outputs.items():
            response.outputs[name].CopyFrom(protos.output_tensor(value, self.tensor_content))
        return response

    def _infer(self, method, request, context, response_type):
        """Classify/Regress: examples in, (response with its model spec, results, ids) out."""
        signature = request.model_spec.signature_name
        servable, results, ids = method(_ref(request.model_spec), signature,
                                        _examples(request.input), "GRPC", _deadline(context))
        return response_type(model_spec=protos.model_spec(
            servable.name, servable.version, signature or "serving_default")), results, ids

    @_answers(counted=True)
    def Classify(self, request, context):
        response, rows, ids = self._infer(self.service.classify, request, context,
                                          classification_pb2.ClassificationResponse)
        if ids:
            context.set_trailing_metadata(((ID_METADATA, encode_ids(ids)),))
        for row in rows:
            classifications = response.result.classifications.add()
            for label, score in row:
                classifications.classes.add(label=label, score=score)
        return response

    @_answers(counted=True)
    def Regress(self, request, context):
        response, values, _ = self._infer(self.service.regress, request, context,
                                          regression_pb2.RegressionResponse)
        for value in values:
            response.result.regressions.add(value=value)
        return response

    @_answers
    def GetModelMetadata(self, request, context):
        ref = _ref(request.model_spec)  # "Missing ModelSpec" first, as TF Serving
        if not request.metadata_field:
            raise invalid("GetModelMetadataRequest must specify at least one metadata_field")
        for field in request.metadata_field:  # "signature_def", once or more: one answer
            if field != "signature_def":
                raise invalid(f"Metadata field {field} is not supported")
        servable = self.service.metadata(ref, "GRPC")
        return protos.metadata_response(servable)

    @_answers
    def MultiInference(self, request, context):
        raise ServingError(grpc.StatusCode.UNIMPLEMENTED,
                           "MultiInference is not supported by this server")


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, service: Service, auth: Authenticator):
        self.service, self.auth = service, auth

    @_answers
    def GetModelStatus(self, request, context):
        return protos.status_response(self.service.status(_ref(request.model_spec)))

    @_answers
    def HandleReloadConfigRequest(self, request, context):
        """TF Serving applies any config sent here; this server never does (a token
        holder cannot replace what is served)."""
        raise ServingError(grpc.StatusCode.UNIMPLEMENTED,
                           "reloading the model config over gRPC is not supported; "
                           "edit the folder (new versions are picked up by polling)")


HEALTH_SERVICES = ("", "ModelService", "PredictionService")  # as TF Serving's server.cc


def health_service():
    """``--enable_grpc_healthcheck_service``: grpc.health.v1.Health, SERVING for the
    server ("") and TF Serving's two services; ``set_draining`` turns them NOT_SERVING."""
    from grpc_health.v1 import health, health_pb2

    servicer = health.HealthServicer()
    for name in HEALTH_SERVICES:
        servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return servicer


def set_draining(servicer) -> None:
    """Readiness false on the health service too (serving/drain.py)."""
    from grpc_health.v1 import health_pb2

    for name in HEALTH_SERVICES:
        servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)


class TokenCheck(grpc.ServerInterceptor):
    """Refuses a call without a prediction token before its message is parsed (REST
    refuses before reading the body): the handler then parsed up to --max_request_bytes
    for anyone. gRPC still receives the message (a unary call delivers it whole); it is
    dropped as bytes. The health service needs no token (a probe sends none)."""

    def __init__(self, auth: Authenticator):
        self._auth = auth

    def intercept_service(self, continuation, details):
        if self._auth.open[PREDICT] or details.method.startswith("/grpc.health.v1.Health/"):
            return continuation(details)
        try:
            self._auth.caller(dict(details.invocation_metadata or ()).get(
                "authorization", ""), PREDICT)
        except ServingError as error:
            code, message = error.code, error.message

            def refuse(request, context):  # request: the message's bytes, unparsed
                context.abort(code, message)
            return grpc.unary_unary_rpc_method_handler(refuse)
        return continuation(details)


def make_server(service: Service, addresses: List[str], max_workers: int,
                max_message_bytes: int, auth: Optional[Authenticator] = None,
                credentials: Optional[grpc.ServerCredentials] = None,
                arguments: Sequence[Tuple[str, object]] = (),
                health=None, tensor_content: bool = False) -> grpc.Server:
    """Both services on every address (``host:port``, ``unix:path``); over TLS with
    ``credentials`` (tls.ServerTLS); ``arguments`` are extra gRPC server options;
    ``auth``: who may call (None: anyone); ``health``: the standard health service
    (``health_service``), which needs no token, as a Kubernetes probe sends none;
    ``tensor_content``: Predict outputs packed as TensorProto.tensor_content
    (``--enable_serialization_as_tensor_content``) rather than in their typed fields."""
    auth = auth or Authenticator()
    options = dict([("grpc.max_receive_message_length", max_message_bytes),
                    ("grpc.max_send_message_length", 2**31 - 1),  # TF Serving's INT32_MAX
                    ("grpc.so_reuseport", 0), *arguments])
    server = grpc.server(ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
                         options=list(options.items()), interceptors=[TokenCheck(auth)])
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(service, auth, max_message_bytes, tensor_content), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(service, auth),
                                                              server)
    if health is not None:
        from grpc_health.v1 import health_pb2_grpc
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
    for address in addresses:
        try:  # grpcio returns 0 or raises RuntimeError, depending on the version
            port = (server.add_secure_port(address, credentials) if credentials
                    else server.add_insecure_port(address))
        except RuntimeError:
            port = 0
        if port == 0:
            raise OSError(f"cannot bind gRPC to {address}: the port is in use or not "
                          f"allowed (--port, --grpc_socket_path)")
    return server
