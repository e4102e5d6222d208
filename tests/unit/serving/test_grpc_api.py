"""Request tensors as TF Serving reads them (serving/grpc_api.py decode_tensor); the
service around it: tests/serving/test_compat.py."""
import grpc
import numpy as np
import pytest
import tensorflow as tf

from serving.errors import ServingError
from serving.grpc_api import decode_tensor
from serving.protos import output_tensor
from tests.unit.serving.test_protos import VALUES

LIMIT = 2**20


def test_a_type_with_no_name_is_an_invalid_argument():
    """dtype 999 was INTERNAL ("ValueError" while naming it); TF Serving's
    Tensor::FromProto fails and Predict answers INVALID_ARGUMENT."""
    proto = tf.make_tensor_proto(np.array([1.0], np.float32))
    proto.dtype = 999
    with pytest.raises(ServingError) as error:
        decode_tensor("x", proto, LIMIT)
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "999" in error.value.message


@pytest.mark.parametrize("value,field", [v for v in VALUES if v[0].size > 1],
                         ids=[f"{v.dtype}" for v, _ in VALUES if v.size > 1])
def test_values_beyond_the_shape_are_left_out_as_tf_serving(value, field):
    """TF Serving (Tensor::FromProto, FromProtoField: ``if (n <= in_n) copy_n``) reads the
    first values the shape holds; here it was INVALID_ARGUMENT "bad tensor: index can't
    contain negative values", numpy's words."""
    proto = output_tensor(value.reshape(-1))
    proto.tensor_shape.dim[0].size = 1
    assert decode_tensor("x", proto, LIMIT).tolist() == value.reshape(-1)[:1].tolist()
    proto.tensor_shape.ClearField("dim")  # a scalar
    scalar = decode_tensor("x", proto, LIMIT)
    assert scalar.shape == () and scalar.tolist() == value.reshape(-1)[:1].tolist()[0]


def test_fewer_values_than_the_shape_repeat_the_last_and_content_must_fit():
    """As TF Serving: typed values short of the shape repeat the last one (none: zeros);
    ``tensor_content`` must hold the shape exactly."""
    proto = output_tensor(np.array([1.0, 2.0], np.float32))
    proto.tensor_shape.dim[0].size = 4
    assert decode_tensor("x", proto, LIMIT).tolist() == [1.0, 2.0, 2.0, 2.0]
    del proto.float_val[:]
    assert decode_tensor("x", proto, LIMIT).tolist() == [0.0] * 4
    packed = tf.make_tensor_proto(np.array([1.0, 2.0], np.float32))
    assert packed.tensor_content
    for size in (1, 3):
        packed.tensor_shape.dim[0].size = size
        with pytest.raises(ServingError) as error:
            decode_tensor("x", packed, LIMIT)
        assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
