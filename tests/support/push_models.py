"""Models to push, and a small tmpfs to push them to."""
import contextlib
import hashlib
import os
import subprocess

import numpy as np
import tensorflow as tf

VARIABLE_FLOATS = 128 * 1024  # 512 KiB of variables
GRAPH_FLOATS = 384 * 1024  # a constant in the graph: saved_model.pb is 3 MiB


class Scaled(tf.Module):
    """y = x * w + c[0]: 0.5 MiB of variables, a 3 MiB saved_model.pb."""

    def __init__(self, seed: int):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.w = tf.Variable(rng.random(VARIABLE_FLOATS, dtype=np.float32))
        self.c = rng.random(GRAPH_FLOATS, dtype=np.float32)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def serve(self, x):
        return {"y": x * self.w[0] + tf.constant(self.c)[0]}


def export(folder, seed: int = 0) -> str:
    module = Scaled(seed)
    tf.saved_model.save(module, str(folder),
                        signatures={"serving_default": module.serve.get_concrete_function()})
    return str(folder)


def tree(folder) -> dict:
    """{relative path: SHA-256} of every file under ``folder``."""
    found = {}
    for parent, _, names in os.walk(folder):
        for name in names:
            with open(os.path.join(parent, name), "rb") as f:
                found[os.path.relpath(os.path.join(parent, name), folder)] = \
                    hashlib.sha256(f.read()).hexdigest()
    return found


@contextlib.contextmanager
def tmpfs(folder, size: str):
    """A tmpfs of ``size`` mounted on ``folder`` (root only, as in CI)."""
    os.makedirs(folder, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                   check=True)
    try:
        yield str(folder)
    finally:
        subprocess.run(["umount", str(folder)], check=True)
