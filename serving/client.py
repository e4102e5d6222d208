"""Clients for TF Serving (and the local server) over gRPC and REST.

Both return the same things: label names with probabilities for a list of texts
(through the model's ``classify`` signature), raw Predict outputs, model status
and metadata. Timeouts on every call; UNAVAILABLE (gRPC) or 503/connection
errors (REST) are retried with backoff; other errors raise ``ServingClientError``
naming the server, the model and what the server said.
"""
from __future__ import annotations

import base64
import dataclasses
import json
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from serving.feedback import ID_HEADER, ID_METADATA

TEXT_FEATURE = "text"
CLASSIFY_SIGNATURE = "classify"


@dataclasses.dataclass
class Prediction:
    text: str
    label: str
    probabilities: Dict[str, float]
    id: Optional[str] = None  # set when the server records predictions (--feedback_dir)


class ServingClientError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclasses.dataclass
class Target:
    """Which model: its name and optionally a version or a version label."""

    model: str
    version: Optional[int] = None
    label: Optional[str] = None

    def __post_init__(self):
        if self.version is not None and self.label is not None:
            raise ValueError("give a version or a version label, not both")


def _predictions(texts: Sequence[str], rows: List[List[Tuple[str, float]]],
                 ids: str = "") -> List[Prediction]:
    """``ids``: the server's comma-separated prediction ids, if it sent them."""
    id_list = ids.split(",") if ids else [None] * len(texts)
    out = []
    for text, row, prediction_id in zip(texts, rows, id_list):
        probabilities = dict(row)
        out.append(Prediction(text, max(probabilities, key=probabilities.get), probabilities,
                              prediction_id))
    return out


class _Client:
    """Retries transient failures: ``retries`` more attempts, doubling the wait."""

    retries: int
    backoff_seconds: float

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _with_retries(self, call, transient):
        for attempt in range(self.retries + 1):
            try:
                return call()
            except Exception as error:  # noqa: BLE001  filtered by ``transient``
                if attempt == self.retries or not transient(error):
                    raise
                time.sleep(self.backoff_seconds * 2 ** attempt)


class GrpcClient(_Client):
    """``PredictionService`` / ``ModelService`` over gRPC (``host:port``)."""

    def __init__(self, address: str, target: Target, timeout: float = 10.0, retries: int = 3,
                 backoff_seconds: float = 0.2, token: Optional[str] = None,
                 max_message_bytes: int = 64 * 2**20):
        import grpc
        from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

        self.address, self.target, self.timeout = address, target, timeout
        self.retries, self.backoff_seconds = retries, backoff_seconds
        self._metadata = [("authorization", f"Bearer {token}")] if token else None
        self._channel = grpc.insecure_channel(address, options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes)])
        self._predictions = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def _spec(self, signature: str = ""):
        from tensorflow_serving.apis import model_pb2

        spec = model_pb2.ModelSpec(name=self.target.model, signature_name=signature)
        if self.target.version is not None:
            spec.version.value = self.target.version
        elif self.target.label is not None:
            spec.version_label = self.target.label
        return spec

    def _call(self, method, request, with_call: bool = False):
        """The response (``with_call``: and the call, for trailing metadata)."""
        import grpc

        def call():
            if with_call:
                return method.with_call(request, timeout=self.timeout,
                                        metadata=self._metadata)
            return method(request, timeout=self.timeout, metadata=self._metadata)

        def transient(error):
            return isinstance(error, grpc.RpcError) and error.code() in (
                grpc.StatusCode.UNAVAILABLE,)
        try:
            return self._with_retries(call, transient)
        except grpc.RpcError as error:
            raise ServingClientError(
                error.code().name, f"{error.details()} (gRPC {self.address}, model "
                                   f"'{self.target.model}')") from None

    def predict(self, inputs: Dict[str, np.ndarray], signature: str = "",
                output_filter: Sequence[str] = ()) -> Dict[str, np.ndarray]:
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest(model_spec=self._spec(signature),
                                             output_filter=list(output_filter))
        for name, value in inputs.items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
        response = self._call(self._predictions.Predict, request)
        return {k: tf.make_ndarray(v) for k, v in response.outputs.items()}

    def classify(self, examples: Sequence[Dict], signature: str = CLASSIFY_SIGNATURE
                 ) -> List[List[Tuple[str, float]]]:
        return self._classify(examples, signature)[0]

    def _classify(self, examples, signature):
        from tensorflow_serving.apis import classification_pb2, input_pb2

        request = classification_pb2.ClassificationRequest(
            model_spec=self._spec(signature),
            input=input_pb2.Input(example_list=input_pb2.ExampleList(
                examples=[make_example(e) for e in examples])))
        response, call = self._call(self._predictions.Classify, request, with_call=True)
        ids = dict(call.trailing_metadata() or ()).get(ID_METADATA, "")
        return [[(c.label, c.score) for c in row.classes]
                for row in response.result.classifications], ids

    def regress(self, examples: Sequence[Dict], signature: str = "") -> List[float]:
        from tensorflow_serving.apis import input_pb2, regression_pb2

        request = regression_pb2.RegressionRequest(
            model_spec=self._spec(signature),
            input=input_pb2.Input(example_list=input_pb2.ExampleList(
                examples=[make_example(e) for e in examples])))
        response = self._call(self._predictions.Regress, request)
        return [r.value for r in response.result.regressions]

    def predict_texts(self, texts: Sequence[str]) -> List[Prediction]:
        return _predictions(texts, *self._classify([{TEXT_FEATURE: t} for t in texts],
                                                   CLASSIFY_SIGNATURE))

    def status(self) -> List[Dict]:
        from google.protobuf import json_format
        from tensorflow_serving.apis import get_model_status_pb2

        request = get_model_status_pb2.GetModelStatusRequest(model_spec=self._spec())
        response = self._call(self._models.GetModelStatus, request)
        return json_format.MessageToDict(response, preserving_proto_field_name=True,
                                         including_default_value_fields=True
                                         )["model_version_status"]

    def metadata(self) -> Dict:
        from google.protobuf import json_format
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=self._spec(), metadata_field=["signature_def"])
        response = self._call(self._predictions.GetModelMetadata, request)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signatures)
        return {"model_spec": json_format.MessageToDict(
                    response.model_spec, preserving_proto_field_name=True),
                "metadata": {"signature_def": json_format.MessageToDict(
                    signatures, preserving_proto_field_name=True)}}


class RestClient(_Client):
    """TF Serving's REST API (``http://host:port``)."""

    def __init__(self, url: str, target: Target, timeout: float = 10.0, retries: int = 3,
                 backoff_seconds: float = 0.2, token: Optional[str] = None):
        import requests

        self.url, self.target, self.timeout = url.rstrip("/"), target, timeout
        self.retries, self.backoff_seconds = retries, backoff_seconds
        self._session = requests.Session()
        if token:
            self._session.headers["Authorization"] = f"Bearer {token}"

    def close(self) -> None:
        self._session.close()

    def _path(self, suffix: str = "") -> str:
        path = f"{self.url}/v1/models/{self.target.model}"
        if self.target.version is not None:
            path += f"/versions/{self.target.version}"
        elif self.target.label is not None:
            path += f"/labels/{self.target.label}"
        return path + suffix

    def _request(self, method: str, suffix: str, body: Optional[Dict] = None) -> Dict:
        return self._request_with_headers(method, self._path(suffix), body)[0]

    def _request_with_headers(self, method: str, url: str, body: Optional[Dict] = None):
        import requests

        def call():
            response = self._session.request(method, url, timeout=self.timeout,
                                             data=None if body is None else json.dumps(body))
            if response.status_code == 503:
                raise _Unavailable(response)
            return response

        def transient(error):
            return isinstance(error, (_Unavailable, requests.ConnectionError))
        try:
            response = self._with_retries(call, transient)
        except _Unavailable as error:
            response = error.response
        except requests.RequestException as error:
            raise ServingClientError("UNAVAILABLE", f"{method} {url}: {error}") from None
        try:
            payload = response.json()
        except ValueError:
            payload = {"error": response.text[:500]}
        if response.status_code != 200:
            raise ServingClientError(f"HTTP {response.status_code}",
                                     f"{payload.get('error', payload)} ({method} {url})")
        return payload, response.headers

    def predict(self, inputs: Dict[str, np.ndarray], signature: str = "",
                row_format: bool = True) -> Dict[str, np.ndarray]:
        """Predict with ``instances`` (row format) or ``inputs`` (columnar)."""
        columns = {k: _to_json(np.asarray(v)) for k, v in inputs.items()}
        body: Dict = {"signature_name": signature} if signature else {}
        if row_format:
            rows = len(next(iter(columns.values())))
            body["instances"] = [{k: columns[k][i] for k in columns} for i in range(rows)]
            predictions = self._request("POST", ":predict", body)["predictions"]
            if predictions and isinstance(predictions[0], dict) and not _is_b64(predictions[0]):
                return {k: _from_json([p[k] for p in predictions]) for k in predictions[0]}
            return {"output": _from_json(predictions)}  # one output: TF Serving drops its name
        body["inputs"] = columns
        outputs = self._request("POST", ":predict", body)["outputs"]
        if isinstance(outputs, dict) and not _is_b64(outputs):
            return {k: _from_json(v) for k, v in outputs.items()}
        return {"output": _from_json(outputs)}

    def classify(self, examples: Sequence[Dict], signature: str = CLASSIFY_SIGNATURE
                 ) -> List[List[Tuple[str, float]]]:
        return self._classify(examples, signature)[0]

    def _classify(self, examples, signature):
        body = {"signature_name": signature, "examples": list(examples)}
        payload, headers = self._request_with_headers("POST", self._path(":classify"), body)
        return [[(label, score) for label, score in row]
                for row in payload["results"]], headers.get(ID_HEADER, "")

    def correct(self, corrections: Sequence[Dict]) -> int:
        """Sends corrected labels ``[{"id": prediction id, "label": ...}]``; returns how
        many the server accepted."""
        return self._request_with_headers("POST", f"{self.url}/v1/feedback",
                                          {"corrections": list(corrections)})[0]["accepted"]

    def regress(self, examples: Sequence[Dict], signature: str = "") -> List[float]:
        body = {"signature_name": signature, "examples": list(examples)}
        return self._request("POST", ":regress", body)["results"]

    def predict_texts(self, texts: Sequence[str]) -> List[Prediction]:
        return _predictions(texts, *self._classify([{TEXT_FEATURE: t} for t in texts],
                                                   CLASSIFY_SIGNATURE))

    def status(self) -> List[Dict]:
        return self._request("GET", "")["model_version_status"]

    def metadata(self) -> Dict:
        return self._request("GET", "/metadata")


class _Unavailable(Exception):
    def __init__(self, response):
        super().__init__("HTTP 503")
        self.response = response


def make_example(features: Dict):
    """A tf.Example from {name: str | bytes | int | float | list of one kind}.

    Bytes may also be given as REST's {"b64": ...}, so one example dict suits both clients.
    """
    from tensorflow.core.example import example_pb2

    example = example_pb2.Example()
    for name, value in features.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        values = [base64.b64decode(v["b64"]) if _is_b64(v) else v for v in values]
        feature = example.features.feature[name]
        if all(isinstance(v, (str, bytes)) for v in values):
            feature.bytes_list.value.extend(v.encode("utf-8") if isinstance(v, str) else v
                                            for v in values)
        elif all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            feature.int64_list.value.extend(values)
        else:
            feature.float_list.value.extend(float(v) for v in values)
    return example


def _to_json(array: np.ndarray):
    if array.dtype.kind in "OS":
        return _map(array.tolist(), lambda b: {"b64": base64.b64encode(b).decode("ascii")}
                    if isinstance(b, bytes) else b)
    return array.tolist()


def _from_json(value) -> np.ndarray:
    """A JSON output as an array; {"b64": ...} (outputs named *_bytes) back to bytes."""
    decoded = _map(value, lambda v: base64.b64decode(v["b64"]) if _is_b64(v) else v)
    array = np.array(decoded)
    return array.astype(object) if array.dtype.kind in "SU" else array


def _is_b64(value) -> bool:
    return isinstance(value, dict) and set(value) == {"b64"}


def _map(value, fn):
    return [_map(v, fn) for v in value] if isinstance(value, list) else fn(value)


def connect(server: str, target: Target, **kwargs):
    """A client for ``grpc://host:port``, ``host:port`` (gRPC) or ``http(s)://host:port``."""
    if server.startswith(("http://", "https://")):
        return RestClient(server, target, **kwargs)
    return GrpcClient(server.removeprefix("grpc://"), target, **kwargs)
