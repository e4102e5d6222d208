"""Clients for TF Serving (and the local server) over gRPC and REST.

Both return the same things: label names with probabilities for a list of texts
(through the model's ``classify`` signature), raw Predict outputs, model status
and metadata. ``timeout`` is one deadline per call, across its attempts. The
libraries retry transient failures with exponential backoff and jitter: gRPC's retry
policy (``UNAVAILABLE``) and urllib3's ``Retry`` (503, connection errors; a feedback
POST only when it never reached the server). TLS with ``ca_file`` (mutual TLS: plus
``client_cert``/``client_key``); a bearer token (``token``; REST's ``feedback_token`` for
corrections, when the server gives feedback its own tokens) never travels in clear text
to a host that is not loopback. Other errors raise ``ServingClientError`` naming the server,
the model and what the server said.
"""
from __future__ import annotations

import base64
import contextvars
import dataclasses
import functools
import json
import math
import time
import urllib.parse
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import requests
from requests.adapters import HTTPAdapter
from urllib3 import exceptions as urllib3_exceptions
from urllib3.exceptions import MaxRetryError, ResponseError
from urllib3.util import Retry, Timeout

from serving.contract import (CLASSIFY_SIGNATURE, TEXT_FEATURE, TEXT_INPUT, TEXT_PAIR_FEATURE,
                              TEXT_PAIR_INPUT, TEXT_SIGNATURE)
from serving.feedback import ID_HEADER, ID_METADATA, decode_ids
from serving.tls import (check_client_files, check_token_transport, grpc_channel_credentials,
                         grpc_hosts)

GRPC_SERVICES = ("tensorflow.serving.PredictionService", "tensorflow.serving.ModelService")
GRPC_MAX_ATTEMPTS = 5  # gRPC treats a larger maxAttempts as 5
MIN_ATTEMPT_SECONDS = 0.05  # REST: no retry that would leave less than this before the deadline


@dataclasses.dataclass
class Prediction:
    text: str
    label: str
    probabilities: Dict[str, float]
    id: Optional[str] = None  # set when the server records predictions (--feedback_dir)
    text_pair: Optional[str] = None  # the pair's second text (sentence-pair models)
    columns: Optional[Dict[str, str]] = None  # the inputs by name (predict_columns; text:
    # "" unless the model takes ``text``)


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


def text_examples(texts: Sequence[str], pairs: Optional[Sequence[str]] = None) -> List[Dict]:
    """Example dicts for ``classify``: ``text``, and ``text_pair`` for sentence pairs."""
    if pairs is None:
        return [{TEXT_FEATURE: t} for t in texts]
    if len(pairs) != len(texts):
        raise ValueError(f"{len(texts)} texts but {len(pairs)} pairs: give one second text "
                         f"per text")
    return [{TEXT_FEATURE: t, TEXT_PAIR_FEATURE: p} for t, p in zip(texts, pairs)]


def _predictions(texts: Sequence[str], rows: List[List[Tuple[str, float]]],
                 ids: str = "", pairs: Optional[Sequence[str]] = None,
                 columns: Optional[Sequence[Dict]] = None) -> List[Prediction]:
    """``ids``: the server's prediction ids (serving.feedback.encode_ids), if it sent them."""
    if len(rows) != len(texts):
        raise ServingClientError("INVALID_RESPONSE", f"{len(texts)} texts sent, "
                                                     f"{len(rows)} answers received")
    try:
        id_list = decode_ids(ids, len(texts)) if ids else [None] * len(texts)
    except ValueError as error:
        raise ServingClientError("INVALID_RESPONSE", str(error)) from None
    out = []
    for i, (text, row, prediction_id) in enumerate(zip(texts, rows, id_list)):
        probabilities = dict(row)
        if not probabilities:
            raise ServingClientError("INVALID_RESPONSE", f"the answer for text {i + 1} has "
                                                         "no classes")
        out.append(Prediction(text, max(probabilities, key=probabilities.get), probabilities,
                              prediction_id, None if pairs is None else pairs[i],
                              None if columns is None else dict(columns[i])))
    return out


class _Client:
    """What both clients share; a context manager that closes the connection."""

    target: Target
    _text_inputs: Optional[frozenset] = None  # predict_text's inputs, read once

    def close(self) -> None:
        raise NotImplementedError

    def metadata(self) -> Dict:
        raise NotImplementedError

    def _classify(self, examples, signature):
        raise NotImplementedError

    def predict_texts(self, texts: Sequence[str],
                      pairs: Optional[Sequence[str]] = None) -> List[Prediction]:
        """Labels and probabilities of ``texts`` (sentence pairs: with ``pairs``).

        Refused when the model takes the other kind of input: its graph would ignore a
        second text it does not read, or fail on the one it misses."""
        self._check_text_inputs(pairs is not None)
        return _predictions(texts, *self._classify(text_examples(texts, pairs),
                                                   CLASSIFY_SIGNATURE), pairs=pairs)

    def predict_columns(self, rows: Sequence[Dict[str, str]]) -> List[Prediction]:
        """Labels and probabilities of rows given as the model's inputs by name: for a
        model trained on several text columns, one string per column ({"subject": ...,
        "body": ...}), joined in its graph; else ``text`` (and ``text_pair``).

        Refused, naming the row, when a row lacks an input or has one the model does
        not take (its graph would ignore it)."""
        inputs = self._read_text_inputs()
        for i, row in enumerate(rows):
            missing = [name for name in sorted(inputs) if name not in row]
            unknown = [name for name in row if name not in inputs]
            bad = [name for name, value in row.items() if not isinstance(value, str)]
            if inputs and (missing or unknown):
                raise ServingClientError(
                    "INVALID_ARGUMENT", f"row {i}: model '{self.target.model}' takes "
                    f"{_names(inputs)}" + "".join(
                        f"; {what} {', '.join(repr(n) for n in names)}"
                        for what, names in (("missing", missing), ("unknown", unknown))
                        if names))
            if bad:
                raise ValueError(f"row {i}: '{bad[0]}' must be a string")
        return _predictions([row.get(TEXT_INPUT, "") for row in rows],
                            *self._classify([dict(row) for row in rows], CLASSIFY_SIGNATURE),
                            columns=rows)

    def _read_text_inputs(self) -> frozenset:
        """predict_text's inputs (read once); empty when the model has no predict_text."""
        if self._text_inputs is None:
            metadata = self.metadata()
            try:
                signatures = metadata["metadata"]["signature_def"].get("signature_def", {})
                self._text_inputs = frozenset(
                    signatures.get(TEXT_SIGNATURE, {}).get("inputs", {}))
            except (KeyError, TypeError, AttributeError):
                raise ServingClientError("INVALID_RESPONSE", "the model's metadata is not "
                                         "TF Serving's GetModelMetadata answer: "
                                         f"{json.dumps(metadata)[:200]}") from None
        return self._text_inputs

    def _check_text_inputs(self, with_pairs: bool) -> None:
        inputs = self._read_text_inputs()
        if inputs and TEXT_INPUT not in inputs:
            raise ServingClientError("INVALID_ARGUMENT", f"model '{self.target.model}' takes "
                                     f"the columns {_names(inputs)}, which its graph joins: "
                                     f"send them by name (predict_columns; bert-pipeline "
                                     f"predict --columns)")
        if TEXT_INPUT not in inputs:
            return  # not this project's model: nothing to check against
        if with_pairs and TEXT_PAIR_INPUT not in self._text_inputs:
            raise ServingClientError("INVALID_ARGUMENT", f"model '{self.target.model}' takes "
                                     f"single texts, not sentence pairs: drop the second texts "
                                     f"(--pairs)")
        if not with_pairs and TEXT_PAIR_INPUT in self._text_inputs:
            raise ServingClientError("INVALID_ARGUMENT", f"model '{self.target.model}' takes "
                                     f"sentence pairs: give each text its second text "
                                     f"(--pairs, 'first<TAB>second')")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _names(inputs) -> str:
    """A model's column inputs as its model_info.json lists them: the order is lost in
    the signature, so sorted."""
    return ", ".join(sorted(inputs))


class _Answer(dict):
    """A REST answer whose missing keys are the server's fault, named as such (not a
    KeyError)."""

    def __init__(self, payload: dict, request: str):
        super().__init__(payload)
        self.request = request

    def __missing__(self, key):
        raise ServingClientError("INVALID_RESPONSE", f"the answer has no {key!r} (not TF "
                                 f"Serving's API?): {json.dumps(self)[:200]} ({self.request})")


def _check_retry_settings(timeout: float, retries: int, backoff_seconds: float) -> None:
    if not math.isfinite(timeout):
        raise ValueError(f"timeout must be a finite number of seconds, got {timeout}")
    if timeout <= 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    if retries and backoff_seconds <= 0:
        raise ValueError(f"backoff_seconds must be > 0 with retries, got {backoff_seconds}")


def _duration(seconds: float) -> str:
    return f"{seconds:.9f}s"


def _grpc_service_config(retries: int, backoff_seconds: float) -> str:
    """gRPC's retry policy for TF Serving's two services: ``retries`` more attempts on
    UNAVAILABLE, backoff ``backoff_seconds`` doubling (gRPC adds jitter); the call's
    timeout stays one deadline across the attempts."""
    policy = {"maxAttempts": retries + 1, "initialBackoff": _duration(backoff_seconds),
              "maxBackoff": _duration(backoff_seconds * 2 ** (retries - 1)),
              "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}
    return json.dumps({"methodConfig": [{"name": [{"service": s} for s in GRPC_SERVICES],
                                         "retryPolicy": policy}]})


class GrpcClient(_Client):
    """``PredictionService`` / ``ModelService`` over gRPC (``host:port``); TLS with
    ``tls=True`` or any of ``ca_file``, ``client_cert``/``client_key``."""

    def __init__(self, address: str, target: Target, timeout: float = 10.0, retries: int = 3,
                 backoff_seconds: float = 0.2, token: Optional[str] = None,
                 max_message_bytes: int = 64 * 2**20, tls: bool = False,
                 ca_file: Optional[str] = None, client_cert: Optional[str] = None,
                 client_key: Optional[str] = None, allow_insecure_token: bool = False):
        import grpc
        from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

        _check_retry_settings(timeout, retries, backoff_seconds)
        if retries + 1 > GRPC_MAX_ATTEMPTS:
            raise ValueError(f"retries={retries}: gRPC makes at most {GRPC_MAX_ATTEMPTS} "
                             f"attempts, so retries <= {GRPC_MAX_ATTEMPTS - 1}")
        tls = tls or any((ca_file, client_cert, client_key))
        check_token_transport(token, grpc_hosts(address), tls, allow_insecure_token)
        self.address, self.target, self.timeout = address, target, timeout
        self.retries, self.backoff_seconds = retries, backoff_seconds
        self._metadata = [("authorization", f"Bearer {token}")] if token else None
        options = [("grpc.max_receive_message_length", max_message_bytes),
                   ("grpc.max_send_message_length", max_message_bytes),
                   ("grpc.enable_retries", 1),
                   # keep whole requests for a retry (gRPC's default: the first 256 KiB)
                   ("grpc.per_rpc_retry_buffer_size", max_message_bytes),
                   ("grpc.service_config_disable_resolution", 1)]  # ours, not DNS's
        if token and not tls:  # grpc_proxy/http_proxy would carry it in clear text
            options.append(("grpc.enable_http_proxy", 0))
        if retries:
            options.append(("grpc.service_config",
                            _grpc_service_config(retries, backoff_seconds)))
        if tls:
            self._channel = grpc.secure_channel(
                address, grpc_channel_credentials(ca_file, client_cert, client_key), options)
        else:
            self._channel = grpc.insecure_channel(address, options)
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

    def _call(self, method, request):
        """The response and the call (for trailing metadata); retries are gRPC's."""
        import grpc

        try:
            return method.with_call(request, timeout=self.timeout, metadata=self._metadata)
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
        response, _ = self._call(self._predictions.Predict, request)
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
        response, call = self._call(self._predictions.Classify, request)
        ids = dict(call.trailing_metadata() or ()).get(ID_METADATA, "")
        return [[(c.label, c.score) for c in row.classes]
                for row in response.result.classifications], ids

    def regress(self, examples: Sequence[Dict], signature: str = "") -> List[float]:
        from tensorflow_serving.apis import input_pb2, regression_pb2

        request = regression_pb2.RegressionRequest(
            model_spec=self._spec(signature),
            input=input_pb2.Input(example_list=input_pb2.ExampleList(
                examples=[make_example(e) for e in examples])))
        response, _ = self._call(self._predictions.Regress, request)
        return [r.value for r in response.result.regressions]

    def status(self) -> List[Dict]:
        from google.protobuf import json_format
        from tensorflow_serving.apis import get_model_status_pb2

        request = get_model_status_pb2.GetModelStatusRequest(model_spec=self._spec())
        response, _ = self._call(self._models.GetModelStatus, request)
        return json_format.MessageToDict(response, preserving_proto_field_name=True,
                                         including_default_value_fields=True
                                         )["model_version_status"]

    def metadata(self) -> Dict:
        from google.protobuf import json_format
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=self._spec(), metadata_field=["signature_def"])
        response, _ = self._call(self._predictions.GetModelMetadata, request)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signatures)
        return {"model_spec": json_format.MessageToDict(
                    response.model_spec, preserving_proto_field_name=True),
                "metadata": {"signature_def": json_format.MessageToDict(
                    signatures, preserving_proto_field_name=True)}}


class RestClient(_Client):
    """TF Serving's REST API (``http://host:port``, or ``https://`` with TLS: ``ca_file``
    for a private CA, ``client_cert``/``client_key`` for mutual TLS). ``feedback_token``
    goes with ``correct()`` instead of ``token`` (the server's --feedback_token_file)."""

    def __init__(self, url: str, target: Target, timeout: float = 10.0, retries: int = 3,
                 backoff_seconds: float = 0.2, token: Optional[str] = None, tls: bool = False,
                 ca_file: Optional[str] = None, client_cert: Optional[str] = None,
                 client_key: Optional[str] = None, allow_insecure_token: bool = False,
                 feedback_token: Optional[str] = None):
        _check_retry_settings(timeout, retries, backoff_seconds)
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"REST URL must be http(s)://host:port, got {url!r}")
        secure = parts.scheme == "https"
        if not secure and (tls or any((ca_file, client_cert, client_key))):
            raise ValueError(f"TLS asked for (tls, ca_file, client_cert or client_key) but "
                             f"the URL is {url}: use https://")
        for secret in (token, feedback_token):
            check_token_transport(secret, [parts.hostname], secure, allow_insecure_token)
        check_client_files(ca_file, client_cert, client_key)
        self.url, self.target, self.timeout = url.rstrip("/"), target, timeout
        self.retries, self.backoff_seconds = retries, backoff_seconds
        # Given with each request: a session's ``verify`` loses to $REQUESTS_CA_BUNDLE.
        self._tls = {"verify": ca_file or True,
                     "cert": (client_cert, client_key) if client_cert else None}
        self._session = requests.Session()
        if (token or feedback_token) and not secure:
            self._session.trust_env = False  # http_proxy would carry the token in clear text
        if token:
            self._session.headers["Authorization"] = f"Bearer {token}"
        self._feedback_headers = ({"Authorization": f"Bearer {feedback_token}"}
                                  if feedback_token else {})
        # Inference (GET, POST :predict/:classify/:regress) is idempotent: retried. A
        # feedback POST is not, once sent: only its connection errors are retried.
        self._session.mount(f"{self.url}/", _DeadlineAdapter(
            max_retries=_rest_retry(retries, backoff_seconds, {"GET", "POST"})))
        self._session.mount(f"{self.url}/v1/feedback", _DeadlineAdapter(
            max_retries=_rest_retry(retries, backoff_seconds, Retry.DEFAULT_ALLOWED_METHODS)))

    def close(self) -> None:
        self._session.close()

    def _path(self, suffix: str = "") -> str:
        """The model's URL; its name and label percent-encoded, as the server decodes them."""
        quote = functools.partial(urllib.parse.quote, safe="")
        path = f"{self.url}/v1/models/{quote(self.target.model)}"
        if self.target.version is not None:
            path += f"/versions/{self.target.version}"
        elif self.target.label is not None:
            path += f"/labels/{quote(self.target.label)}"
        return path + suffix

    def _request(self, method: str, suffix: str, body: Optional[Dict] = None) -> Dict:
        return self._request_with_headers(method, self._path(suffix), body)[0]

    def _request_with_headers(self, method: str, url: str, body: Optional[Dict] = None,
                              headers: Optional[Dict] = None):
        started = time.monotonic()
        try:
            response = self._session.request(method, url, timeout=self.timeout, **self._tls,
                                             data=None if body is None else json.dumps(body),
                                             headers=headers, stream=True)
            content = _read_body(response, started + self.timeout)
        except (requests.RequestException, urllib3_exceptions.HTTPError) as error:
            code = ("DEADLINE_EXCEEDED" if time.monotonic() - started >= self.timeout
                    else "UNAVAILABLE")
            raise ServingClientError(code, f"{method} {url}: {error}") from None
        text = content.decode("utf-8", "replace")
        try:
            payload = json.loads(text)
        except ValueError:
            payload = None
        if response.status_code != 200:
            error = payload.get("error", payload) if isinstance(payload, dict) else text[:500]
            raise ServingClientError(f"HTTP {response.status_code}", f"{error} ({method} {url})")
        if not isinstance(payload, dict):  # a proxy's page, a server of another API
            raise ServingClientError("INVALID_RESPONSE", f"the answer is not a JSON object "
                                     f"(not TF Serving's API?): {text[:200]!r} "
                                     f"({method} {url})")
        return _Answer(payload, f"{method} {url}"), response.headers

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
        try:
            rows = [[(label, score) for label, score in row] for row in payload["results"]]
        except (TypeError, ValueError):  # not [[label, score], ...] rows
            raise ServingClientError("INVALID_RESPONSE", f"'results' is not TF Serving's "
                                     f"Classify answer: {json.dumps(payload)[:200]} "
                                     f"({payload.request})") from None
        return rows, headers.get(ID_HEADER, "")

    def correct(self, corrections: Sequence[Dict]) -> int:
        """Sends corrected labels ``[{"id": prediction id, "label": ...}]`` (with
        ``feedback_token`` if given); returns how many the server accepted."""
        return self._request_with_headers("POST", f"{self.url}/v1/feedback",
                                          {"corrections": list(corrections)},
                                          self._feedback_headers)[0]["accepted"]

    def regress(self, examples: Sequence[Dict], signature: str = "") -> List[float]:
        body = {"signature_name": signature, "examples": list(examples)}
        return self._request("POST", ":regress", body)["results"]

    def status(self) -> List[Dict]:
        return self._request("GET", "")["model_version_status"]

    def metadata(self) -> Dict:
        return self._request("GET", "/metadata")


_deadline: contextvars.ContextVar[float] = contextvars.ContextVar("rest_deadline",
                                                                  default=math.inf)


def _rest_retry(retries: int, backoff_seconds: float, methods) -> "_DeadlineRetry":
    """urllib3's Retry: connection errors (the request was not sent) for every method;
    503 (honouring Retry-After) and read errors for ``methods`` only. Waits 0, then
    ``backoff_seconds`` doubling, plus up to ``backoff_seconds`` of jitter. Other errors
    (TLS: a certificate refused) are final."""
    return _DeadlineRetry(
        total=retries, connect=retries, read=retries, status=retries, other=0,
        allowed_methods=frozenset(methods), status_forcelist=[503],
        backoff_factor=backoff_seconds / 2, backoff_jitter=backoff_seconds,
        backoff_max=backoff_seconds * 2 ** max(retries - 1, 0),
        respect_retry_after_header=True, raise_on_status=False)


class _DeadlineRetry(Retry):
    """A Retry bound by the request's deadline (set by ``_DeadlineAdapter``): it retries
    only if the wait (backoff, or the server's Retry-After) still leaves
    ``MIN_ATTEMPT_SECONDS`` for the next attempt. Otherwise the last 503 is the answer,
    or the last error is raised."""

    planned_wait = 0.0

    def increment(self, method=None, url=None, response=None, error=None, _pool=None,
                  _stacktrace=None):
        new = super().increment(method, url, response, error, _pool, _stacktrace)
        retry_after = (self.get_retry_after(response)
                       if response is not None and self.respect_retry_after_header else None)
        new.planned_wait = retry_after or new.get_backoff_time()
        if new.planned_wait + MIN_ATTEMPT_SECONDS > _deadline.get() - time.monotonic():
            reason = error or ResponseError(
                f"deadline: no time left for retry {len(new.history)} "
                f"(after waiting {new.planned_wait:.3f}s)")
            raise MaxRetryError(_pool, url, reason) from reason
        return new

    def sleep(self, response=None) -> None:
        time.sleep(self.planned_wait)


class _DeadlineTimeout(Timeout):
    """urllib3 clones the timeout for every attempt: each clone gets what is left."""

    def __init__(self, deadline: float):
        self.deadline = deadline
        super().__init__(total=self._left())

    def _left(self) -> float:
        return max(self.deadline - time.monotonic(), MIN_ATTEMPT_SECONDS)

    def clone(self) -> Timeout:
        return Timeout(total=self._left())


def _read_body(response: requests.Response, deadline: float) -> bytes:
    """The answer's body, read by the call's deadline: urllib3's timeout holds each socket
    read, not the whole body (a server dripping it a byte at a time held a 2 s call for
    8 s). Each read may take what is left; past the deadline, ReadTimeoutError."""
    chunks = []
    with response:  # the connection goes back to the pool (or is closed) either way
        sock = getattr(response.raw.connection, "sock", None)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise urllib3_exceptions.ReadTimeoutError(None, response.url,
                                                          "deadline passed reading the answer")
            if sock is not None:
                sock.settimeout(left)
            # read1: what has arrived (read waits for 64 KiB or the end, so the deadline
            # was looked at only once the whole body was in)
            chunk = response.raw.read1(65536, decode_content=True)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


class _DeadlineAdapter(HTTPAdapter):
    """Makes a request's ``timeout`` one deadline across urllib3's retries."""

    def send(self, request, timeout=None, **kwargs):
        if not isinstance(timeout, (int, float)):
            return super().send(request, timeout=timeout, **kwargs)
        deadline = time.monotonic() + timeout
        token = _deadline.set(deadline)
        try:
            return super().send(request, timeout=_DeadlineTimeout(deadline), **kwargs)
        finally:
            _deadline.reset(token)


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


# What connect() takes: its own schemes, and gRPC's name resolvers (passed to gRPC as is)
_SCHEMES = ("grpc", "grpcs", "http", "https", "dns", "unix", "unix-abstract", "ipv4",
            "ipv6", "xds")


def connect(server: str, target: Target, tls: bool = False, **kwargs):
    """A client for ``grpc://host:port`` or ``host:port`` (gRPC), ``grpcs://host:port``
    (gRPC over TLS) or ``http(s)://host:port`` (REST); ``kwargs`` go to the client."""
    scheme, sep, _ = server.partition("://")
    if sep and scheme not in _SCHEMES:  # 'htps://' would be tried as a gRPC host name
        raise ValueError(f"server {server!r}: unknown scheme {scheme!r}; use grpc://, "
                         "grpcs://, http:// or https:// (or a gRPC target such as "
                         "dns:///host:port or unix:///path)")
    if server.startswith(("http://", "https://")):
        return RestClient(server, target, tls=tls, **kwargs)
    if server.startswith("grpcs://"):
        return GrpcClient(server.removeprefix("grpcs://"), target, tls=True, **kwargs)
    return GrpcClient(server.removeprefix("grpc://"), target, tls=tls, **kwargs)
