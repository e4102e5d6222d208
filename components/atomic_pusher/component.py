"""AtomicPusher: TFX's Pusher (same spec, inputs, outputs and artifact properties) whose
executor never leaves a half-copied version where a model server loads it (see
publish.py). The pipeline gives it the id ``Pusher``, as the stock component has.

Tested end to end: tests/e2e/test_pipeline.py.
"""
from tfx.components import Pusher
from tfx.dsl.components.base import executor_spec

from components.atomic_pusher import executor


class AtomicPusher(Pusher):
    """The stock Pusher with ``executor.Executor``; needs a filesystem push_destination."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, *, push_destination, **inputs):
        if push_destination is None:
            raise ValueError("AtomicPusher needs push_destination (a filesystem folder)")
        super().__init__(push_destination=push_destination, **inputs)
