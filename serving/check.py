"""Serving check: a model must load in the model server and answer its warmup requests
over gRPC and REST (the same answers on both) before anyone pushes it.

Tested with a model server: tests/serving/test_check.py.

This is what TFX's InfraValidator does with Docker or Kubernetes; here the local
server runs in a child process on free ports.
"""
from __future__ import annotations

import base64
import dataclasses
import os
import tempfile
from typing import List

import numpy as np

from serving.servable import WARMUP_FILE, input_examples, read_warmup_logs


@dataclasses.dataclass
class CheckResult:
    ok: bool
    reason: str
    requests: int = 0


def check_model(saved_model_dir: str, model_name: str = "candidate",
                timeout_seconds: float = 300.0, mixed_precision: str = "") -> CheckResult:
    """Starts a server on ``saved_model_dir`` (with ``--mixed_precision``) and replays its
    warmup requests on both APIs."""
    from serving.client import GrpcClient, RestClient, ServingClientError, Target
    from serving.process import ServerProcess

    with tempfile.TemporaryDirectory(prefix="serving_check_") as base:
        os.makedirs(os.path.join(base, model_name))
        version_dir = os.path.join(base, model_name, "1")
        try:
            place_version(saved_model_dir, version_dir)
            with ServerProcess(["--model_name", model_name,
                                "--model_base_path", os.path.join(base, model_name),
                                "--file_system_poll_wait_seconds", "0",
                                "--max_num_load_retries", "0",
                                f"--mixed_precision={mixed_precision}"],
                               timeout=timeout_seconds) as server:
                target = Target(model_name)
                with GrpcClient(server.grpc_address, target, timeout_seconds) as by_grpc, \
                        RestClient(server.rest_url, target, timeout_seconds) as by_rest:
                    count = _replay(version_dir, by_grpc, by_rest)
        except (RuntimeError, TimeoutError, FileNotFoundError) as error:
            return CheckResult(False, f"the model server did not load the model: {error}")
        except (ServingClientError, AnswerMismatch) as error:
            return CheckResult(False, f"the model did not answer: {error}")
    if count == 0:
        return CheckResult(False, f"no warmup requests in {WARMUP_FILE}: nothing to check "
                                  "the model with")
    return CheckResult(True, f"loaded; {count} warmup requests answered over gRPC and REST",
                       count)


def place_version(saved_model_dir: str, version_dir: str) -> None:
    """The model as a local version folder: a link to a local model, a copy of one in
    object storage (s3://, gs://; read with tf.io.gfile, whose file systems the model
    server may not have)."""
    if "://" not in saved_model_dir:
        os.symlink(os.path.abspath(saved_model_dir), version_dir)
        return
    import tensorflow as tf

    source = saved_model_dir.rstrip("/")
    for folder, _, files in tf.io.gfile.walk(source):
        target = os.path.join(version_dir, folder[len(source):].strip("/"))
        os.makedirs(target, exist_ok=True)
        for name in files:
            tf.io.gfile.copy(f"{folder.rstrip('/')}/{name}", os.path.join(target, name))
    if not os.path.isdir(version_dir):
        raise FileNotFoundError(f"no model at {saved_model_dir}")


def _replay(saved_model_dir: str, grpc_client, rest_client) -> int:
    import tensorflow as tf

    count = 0
    for log in read_warmup_logs(saved_model_dir):
        kind = log.WhichOneof("log_type")
        if kind == "predict_log":
            request = log.predict_log.request
            inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
            signature = request.model_spec.signature_name
            by_grpc = grpc_client.predict(inputs, signature)
            by_rest = rest_client.predict(inputs, signature, row_format=False)
            _same(by_grpc, by_rest, signature)
        elif kind == "classify_log":
            request = log.classify_log.request
            examples = [_example_json(e) for e in input_examples(request.input)]
            signature = request.model_spec.signature_name
            by_grpc = grpc_client.classify(examples, signature)
            by_rest = rest_client.classify(examples, signature)
            _expect(len(by_grpc) == len(by_rest) == len(examples),
                    f"{signature}: {len(by_grpc)} gRPC and {len(by_rest)} REST results for "
                    f"{len(examples)} examples")
            for a, b in zip(by_grpc, by_rest):
                _expect([x[0] for x in a] == [x[0] for x in b] and np.allclose(
                    [x[1] for x in a], [x[1] for x in b], atol=1e-5),
                    f"{signature}: gRPC and REST answers differ")
        else:
            continue  # regress/multi-inference warmups: this project does not write them
        count += 1
    return count


def _same(by_grpc: dict, by_rest: dict, signature: str) -> None:
    if len(by_grpc) == 1 and set(by_rest) == {"output"}:  # REST drops a lone output's name
        by_rest = {next(iter(by_grpc)): by_rest["output"]}
    _expect(set(by_grpc) == set(by_rest),
            f"{signature}: gRPC outputs {sorted(by_grpc)}, REST outputs {sorted(by_rest)}")
    for name, value in by_grpc.items():
        other = by_rest[name]
        if value.dtype.kind in "OS":
            same = [_text(v) for v in value.ravel()] == [_text(v) for v in other.ravel()]
        else:
            same = value.shape == other.shape and np.allclose(value, other, atol=1e-5)
        _expect(same, f"{signature}/{name}: gRPC and REST answers differ")


def _text(value) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


class AnswerMismatch(Exception):
    """The server answered, but not as it should."""


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise AnswerMismatch(message)


def _example_json(example) -> dict:
    """A tf.Example as the REST API's JSON example (bytes as {"b64": ...})."""
    features = {}
    for name, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        values: List = list(getattr(feature, kind).value) if kind else []
        if kind == "bytes_list":
            values = [{"b64": base64.b64encode(v).decode("ascii")} for v in values]
        features[name] = values
    return features
