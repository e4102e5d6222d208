"""TF Serving's gRPC services (PredictionService, ModelService) on grpcio."""
from __future__ import annotations

import functools
import hmac
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

import grpc
import tensorflow as tf
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2,
                                     model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc, regression_pb2)

from serving import protos
from serving.errors import ServingError, invalid
from serving.feedback import ID_METADATA
from serving.servable import SignatureNotFound
from serving.service import ModelRef, Service


def _answers(method):
    """Turns ServingErrors (and bad tensors) into gRPC status codes; checks the token."""
    @functools.wraps(method)
    def wrapper(self, request, context):
        try:
            if self.token and not _authorized(context, self.token):
                raise ServingError(grpc.StatusCode.UNAUTHENTICATED,
                                   "missing or invalid bearer token")
            return method(self, request, context)
        except ServingError as error:
            context.abort(error.code, error.message)
    return wrapper


def _authorized(context, token: str) -> bool:
    supplied = dict(context.invocation_metadata()).get("authorization", "")
    return hmac.compare_digest(supplied.encode(), f"Bearer {token}".encode())


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
    kind = model_input.WhichOneof("kind")
    if kind == "example_list":
        return [e.SerializeToString() for e in model_input.example_list.examples]
    if kind == "example_list_with_context":
        merged = []
        context = model_input.example_list_with_context.context
        for example in model_input.example_list_with_context.examples:
            full = tf.train.Example()
            full.CopyFrom(context)
            full.MergeFrom(example)
            merged.append(full.SerializeToString())
        return merged
    raise invalid("Input is empty")


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, service: Service, token: Optional[str]):
        self.service, self.token = service, token

    @_answers
    def Predict(self, request, context):
        ref = _ref(request.model_spec)
        try:
            inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
        except (TypeError, ValueError) as error:
            raise invalid(f"bad input tensor: {error}") from None
        try:
            servable, key, outputs = self.service.predict(
                ref, request.model_spec.signature_name, inputs, "GRPC",
                list(request.output_filter))
        except SignatureNotFound as error:
            raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                               f'Serving signature key "{error.key}" not found.') from None
        response = predict_pb2.PredictResponse(
            model_spec=protos.model_spec(servable.name, servable.version, key))
        for name, value in outputs.items():
            response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
        return response

    def _infer(self, method, request, response_type):
        """Classify/Regress: examples in, (response with its model spec, results, ids) out."""
        signature = request.model_spec.signature_name
        servable, results, ids = method(_ref(request.model_spec), signature,
                                        _examples(request.input), "GRPC")
        return response_type(model_spec=protos.model_spec(
            servable.name, servable.version, signature or "serving_default")), results, ids

    @_answers
    def Classify(self, request, context):
        response, rows, ids = self._infer(self.service.classify, request,
                                          classification_pb2.ClassificationResponse)
        if ids:
            context.set_trailing_metadata(((ID_METADATA, ",".join(ids)),))
        for row in rows:
            classifications = response.result.classifications.add()
            for label, score in row:
                classifications.classes.add(label=label, score=score)
        return response

    @_answers
    def Regress(self, request, context):
        response, values, _ = self._infer(self.service.regress, request,
                                          regression_pb2.RegressionResponse)
        for value in values:
            response.result.regressions.add(value=value)
        return response

    @_answers
    def GetModelMetadata(self, request, context):
        if list(request.metadata_field) != ["signature_def"]:
            if not request.metadata_field:
                raise invalid("GetModelMetadataRequest must specify at least one "
                              "metadata_field")
            unsupported = [f for f in request.metadata_field if f != "signature_def"]
            raise invalid(f"Metadata field {unsupported[0]} is not supported")
        servable = self.service.metadata(_ref(request.model_spec), "GRPC")
        return protos.metadata_response(servable)

    @_answers
    def MultiInference(self, request, context):
        raise ServingError(grpc.StatusCode.UNIMPLEMENTED,
                           "MultiInference is not supported by this server")


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, service: Service, token: Optional[str]):
        self.service, self.token = service, token

    @_answers
    def GetModelStatus(self, request, context):
        return protos.status_response(self.service.status(_ref(request.model_spec)))

    @_answers
    def HandleReloadConfigRequest(self, request, context):
        raise ServingError(grpc.StatusCode.UNIMPLEMENTED,
                           "reloading the model config over gRPC is not supported; "
                           "edit the folder (new versions are picked up by polling)")


def make_server(service: Service, address: str, max_workers: int, max_message_bytes: int,
                token: Optional[str] = None) -> grpc.Server:
    server = grpc.server(ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
                         options=[("grpc.max_receive_message_length", max_message_bytes),
                                  ("grpc.max_send_message_length", max_message_bytes),
                                  ("grpc.so_reuseport", 0)])
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(service, token), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(service, token),
                                                              server)
    if server.add_insecure_port(address) == 0:
        raise OSError(f"cannot bind gRPC to {address}")
    return server
