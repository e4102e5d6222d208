"""Responses both transports share, built as TF Serving's own protos.

Tested with a model server: tests/serving/test_server.py.
"""
from __future__ import annotations

from typing import Dict

from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, model_pb2

from serving.model_store import VersionState
from serving.servable import Servable


def model_spec(name: str, version: int, signature_name: str = "") -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=name, signature_name=signature_name)
    spec.version.value = version
    return spec


def status_response(states: Dict[int, VersionState]
                    ) -> get_model_status_pb2.GetModelStatusResponse:
    response = get_model_status_pb2.GetModelStatusResponse()
    for version in sorted(states, reverse=True):
        state = states[version]
        entry = response.model_version_status.add(
            version=version,
            state=get_model_status_pb2.ModelVersionStatus.State.Value(state.state))
        entry.status.SetInParent()  # printed as {"error_code": "OK", ...} when fine
        if state.error:
            entry.status.error_code = state.error_code
            entry.status.error_message = state.error
    return response


def metadata_response(servable: Servable) -> get_model_metadata_pb2.GetModelMetadataResponse:
    signatures = get_model_metadata_pb2.SignatureDefMap()
    for key, signature_def in servable.signature_defs.items():
        signatures.signature_def[key].CopyFrom(signature_def)
    response = get_model_metadata_pb2.GetModelMetadataResponse(
        model_spec=model_spec(servable.name, servable.version))
    response.metadata["signature_def"].Pack(signatures)
    return response
