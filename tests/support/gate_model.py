"""A model whose runs wait until released, so a test knows which requests are in flight."""
import os
import time

import numpy as np
import tensorflow as tf
from tensorflow.python.data.experimental.ops import testing

from tests.support.serving_models import save_version


class Gate(tf.Module):
    """``wait``: writes ``<folder>/started-<tag>``, then waits until ``<folder>/open``
    exists; answers its tags. ``quick``: answers at once."""

    def __init__(self, folder: str):
        super().__init__()
        self.folder = folder

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="tag")])
    def wait(self, tag):
        started = tf.io.write_file(tf.strings.join([self.folder, "/started-", tag[0]]), tag[0])
        gate = tf.strings.join([self.folder, "/open"])

        def closed(waited):
            return tf.equal(tf.size(tf.io.matching_files(gate)), 0)

        def pause(waited):
            nap = tf.data.Dataset.range(1).apply(testing.sleep(50_000))
            return waited + nap.reduce(tf.constant(1, tf.int64), lambda a, b: a + b)

        with tf.control_dependencies([started]):
            waited = tf.while_loop(closed, pause, [tf.constant(0, tf.int64)])[0]
        return {"tag": tf.strings.join([tag, tf.strings.substr(
            tf.strings.as_string(waited), 0, 0)])}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="tag")])
    def quick(self, tag):
        return {"tag": tag}


def export_gate(base_path: str, version: int, folder: str, held_load: bool = False) -> str:
    """Gate(``folder``) as ``<base_path>/<version>/`` (``wait`` as ``serving_default``,
    and ``quick``); with ``held_load``, a warmup request to ``wait``, so its load waits
    until the gate opens."""
    module = Gate(folder)
    return save_version(base_path, version, module, {
        "serving_default": module.wait.get_concrete_function(),
        "quick": module.quick.get_concrete_function()},
        warmup=("serving_default", {"tag": np.array([b"warmup"], object)}) if held_load
        else None)


def _started(folder) -> int:
    return sum(name.startswith("started-") for name in os.listdir(folder))


def _wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"{what} not within {timeout}s"
        time.sleep(0.05)  # polling a condition, not timing the test
    return value
