"""Thin local runner: ``create_pipeline`` + LocalDagRunner + SQLite ML Metadata.

One run at a time per output root (a file lock), and every run is appended to the
run history.
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time

from tfx import v1 as tfx

from local import history, summary
from pipeline.config import PipelineConfig
from pipeline.pipeline import create_pipeline

LOCK_FILE = "run.lock"


class RunInProgress(RuntimeError):
    """Another run holds the output root's lock."""


def metadata_config(config: PipelineConfig):
    os.makedirs(os.path.dirname(os.path.abspath(config.metadata_path)), exist_ok=True)
    return tfx.orchestration.metadata.sqlite_metadata_connection_config(
        os.path.abspath(config.metadata_path))


@contextlib.contextmanager
def run_lock(config: PipelineConfig):
    """Held while a run is active; a second run on the same output root is refused."""
    os.makedirs(config.output.root, exist_ok=True)
    path = os.path.join(config.output.root, LOCK_FILE)
    with open(path, "a+", encoding="utf-8") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise RunInProgress(f"another run is active on {config.output.root} "
                                f"({f.read().strip() or 'see ' + path})") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        f.flush()
        try:
            yield
        finally:
            f.truncate(0)
            fcntl.flock(f, fcntl.LOCK_UN)


def run(config: PipelineConfig, reason: str = "manual") -> summary.RunSummary:
    """Runs the pipeline once; never raises for a failed run, the summary says why.

    Raises RunInProgress when another run holds the lock (nothing is run or recorded).
    """
    with run_lock(config):
        started = time.time()
        error = None
        try:
            tfx.orchestration.LocalDagRunner().run(
                create_pipeline(config, metadata_connection_config=metadata_config(config)))
        except Exception as e:  # noqa: BLE001 - any component failure ends the run
            logging.info("pipeline run failed", exc_info=True)  # the summary says why
            error = e
        result = summary.collect(config, metadata_config(config), started, error)
        history.append(config.history_path, history.record(result, started, time.time(), reason))
    return result
