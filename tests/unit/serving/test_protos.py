"""Predict outputs as TF Serving's gRPC writes them (serving/protos.py)."""
import numpy as np
import pytest
import tensorflow as tf

from serving.protos import output_tensor

VALUES = [
    (np.array([[0.25, -1.5]], np.float32), "float_val"),
    (np.array([1e300], np.float64), "double_val"),
    (np.array([[1, -2], [3, 4]], np.int32), "int_val"),
    (np.array([-128, 127], np.int8), "int_val"),
    (np.array([255], np.uint8), "int_val"),
    (np.array([65535], np.uint16), "int_val"),
    (np.array([2**40], np.int64), "int64_val"),
    (np.array([2**32 - 1], np.uint32), "uint32_val"),
    (np.array([2**64 - 1], np.uint64), "uint64_val"),
    (np.array([True, False]), "bool_val"),
    (np.array([b"long", "Grüße".encode(), b"\xff"], object), "string_val"),
    (np.array([0.5, -2.0], np.float16), "half_val"),
    (np.array([1.5, 3.0], tf.bfloat16.as_numpy_dtype), "half_val"),
    (np.array([1 + 2j], np.complex64), "scomplex_val"),
    (np.array([[3 - 4j]], np.complex128), "dcomplex_val"),
    (np.float32(7.0), "float_val"),  # a scalar
]


@pytest.mark.parametrize("value,field", VALUES, ids=[f"{v.dtype}" for v, _ in VALUES])
def test_outputs_go_in_their_typed_field_as_tf_serving_writes_them(value, field):
    """TF Serving's Predict writes Tensor::AsProtoField: clients read
    ``outputs[name].float_val``; tf.make_tensor_proto packed every output of more than one
    value into tensor_content, where such clients found nothing."""
    proto = output_tensor(value)
    assert not proto.tensor_content and len(getattr(proto, field)) > 0
    assert list(proto.tensor_shape.dim) == [d for d in tf.TensorShape(
        np.shape(value)).as_proto().dim]
    back = tf.make_ndarray(proto)
    assert back.dtype == np.asarray(value).dtype and back.shape == np.shape(value)
    assert back.tolist() == np.asarray(value).tolist()


@pytest.mark.parametrize("value", [np.array([[0.25, -1.5]], np.float32),
                                   np.array([1.5], np.float32), np.int64(7),
                                   np.array([1.5], tf.bfloat16.as_numpy_dtype)])
def test_tensor_content_on_request(value):
    """--enable_serialization_as_tensor_content (TF Serving 2.19's AsProtoTensorContent):
    packed whatever the size (make_tensor_proto left one value in its field)."""
    proto = output_tensor(value, as_content=True)
    assert proto.tensor_content and not proto.float_val and not proto.int64_val
    back = tf.make_ndarray(proto)
    assert back.dtype == np.asarray(value).dtype
    assert back.tolist() == np.asarray(value).tolist()
