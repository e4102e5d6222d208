"""Responses both transports share, built as TF Serving's own protos.

Tested with a model server: tests/serving/test_server.py; the Predict outputs' fields:
tests/unit/serving/test_protos.py.
"""
from __future__ import annotations

from typing import Dict

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, model_pb2

from serving.model_store import VersionState
from serving.servable import Servable


def model_spec(name: str, version: int, signature_name: str = "") -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=name, signature_name=signature_name)
    spec.version.value = version
    return spec


# Tensor::AsProtoField's field per type (TF Serving's default Predict serialization), and
# the types a request may carry (Tensor::FromProto reads the same fields).
VALUE_FIELDS = {
    types_pb2.DT_FLOAT: "float_val", types_pb2.DT_DOUBLE: "double_val",
    types_pb2.DT_INT8: "int_val", types_pb2.DT_INT16: "int_val", types_pb2.DT_INT32: "int_val",
    types_pb2.DT_UINT8: "int_val", types_pb2.DT_UINT16: "int_val",
    types_pb2.DT_INT64: "int64_val", types_pb2.DT_UINT32: "uint32_val",
    types_pb2.DT_UINT64: "uint64_val", types_pb2.DT_BOOL: "bool_val",
    types_pb2.DT_STRING: "string_val", types_pb2.DT_HALF: "half_val",
    types_pb2.DT_BFLOAT16: "half_val", types_pb2.DT_COMPLEX64: "scomplex_val",
    types_pb2.DT_COMPLEX128: "dcomplex_val"}


def output_tensor(value, as_content: bool = False) -> tensor_pb2.TensorProto:
    """A Predict output as TF Serving writes it: values in the typed field (``float_val``,
    ``int64_val``, ``string_val``...: Tensor::AsProtoField, what clients reading
    ``outputs[name].float_val`` expect), or packed in ``tensor_content`` with
    ``--enable_serialization_as_tensor_content`` (AsProtoTensorContent)."""
    array = np.asarray(value)
    dtype = tf.dtypes.as_dtype(array.dtype)
    field = VALUE_FIELDS.get(dtype.as_datatype_enum)
    proto = tensor_pb2.TensorProto(dtype=dtype.as_datatype_enum,
                                   tensor_shape=tf.TensorShape(array.shape).as_proto())
    if field is None or (as_content and field == "string_val"):
        return tf.make_tensor_proto(array)  # strings have no tensor_content
    if as_content:  # packed whatever the size (make_tensor_proto puts one value in a field)
        proto.tensor_content = np.ascontiguousarray(array).tobytes()
        return proto
    flat = array.ravel()
    if field == "half_val":  # the 16 bits of each value, as int32s
        flat = flat.view(np.uint16)
    elif field in ("scomplex_val", "dcomplex_val"):  # real, imaginary, real, ...
        flat = np.stack([flat.real, flat.imag], axis=-1).ravel()
    elif field == "string_val":
        flat = [v if isinstance(v, bytes) else str(v).encode() for v in flat]
    getattr(proto, field).extend(flat if isinstance(flat, list) else flat.tolist())
    return proto


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
