"""URI file systems for ``tf.io.gfile`` beyond TensorFlow's own, a clean exit, and
``sync`` (a local file or folder flushed to the disk).

Tested on object storage: tests/storage/test_push.py, tests/storage/test_model_card.py.

TensorFlow reads ``gs://`` itself; ``s3://`` (and ``hdfs://``, ``az://``) come from
tensorflow-io once it is imported (TFX and tensorflow-transform import it too).
Endpoint, region and credentials: the standard variables (``S3_ENDPOINT``,
``AWS_REGION``, ``AWS_ACCESS_KEY_ID``...; see docs/object-storage.md).

tensorflow-io 0.37.1, the last release for TF 2.16, aborts the interpreter's exit
after any ``s3://`` access ("pure virtual method called", status 134; tensorflow/io
issue 2039): its AWS SDK's static objects are destroyed out of order. A process that
may have used ``s3://`` ends through ``exit_process``: Python's exit handlers run as
usual (logging, temporary folders), then the process ends without C++ static
destructors, with its own exit status.
"""
from __future__ import annotations

import atexit
import os
import sys


def register() -> None:
    """Adds tensorflow-io's file systems to tf.io.gfile when it is installed."""
    try:
        import tensorflow_io  # noqa: F401
    except ImportError:
        pass


def exit_process(code: int) -> None:
    """Ends the process with ``code``; past C++ static destructors once tensorflow-io
    is loaded (see the module's docstring)."""
    if "tensorflow_io" not in sys.modules:
        sys.exit(code)
    atexit._run_exitfuncs()  # what a normal exit runs first: logging, tempfile, Beam
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def sync(path: str) -> None:
    """Flushes a local file or folder (its entries: a rename) to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
