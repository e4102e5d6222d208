"""Message classes of TF Serving protos that its API wheel does not ship (SSLConfig,
BatchingParameters), built from their descriptors with the same package, names and field
numbers, so their text format parses as TF Serving parses it.

Tested through their users: tests/unit/serving/test_tls.py, tests/unit/serving/test_batching.py.
"""
from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory


def message_class(file_proto: descriptor_pb2.FileDescriptorProto, full_name: str,
                  dependencies=()):
    """The class of message ``full_name`` in ``file_proto``, built in a private pool (it
    never clashes with a real module of that file); ``dependencies``: the modules of the
    files it imports (e.g. ``wrappers_pb2``)."""
    pool = descriptor_pool.DescriptorPool()
    for module in dependencies:
        pool.AddSerializedFile(module.DESCRIPTOR.serialized_pb)
    pool.AddSerializedFile(file_proto.SerializeToString())
    descriptor = pool.FindMessageTypeByName(full_name)
    if hasattr(message_factory, "GetMessageClass"):  # protobuf >= 4.21
        return message_factory.GetMessageClass(descriptor)
    return message_factory.MessageFactory(pool).GetPrototype(descriptor)
