"""Thin local runner: ``create_pipeline`` + LocalDagRunner + SQLite ML Metadata.

It resolves what the pipeline gets on this machine: paths absolute against the working
directory, ``output.*`` storage, ``beam_args`` (Beam's DirectRunner), SQLite metadata
and the local serving check. One run at a time per output root (a file lock), and
every run is appended to the run history with its HTML report (local/report).

The lock and the setting checks (local/preflight.py) come before TFX is imported (tens of
seconds on a laptop), so a busy root or a wrong setting is refused in seconds.
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from typing import TYPE_CHECKING

from local import history, preflight
from pipeline.config import PipelineConfig, resolve_path

if TYPE_CHECKING:
    from local import summary

LOCK_FILE = "run.lock"


class RunInProgress(RuntimeError):
    """Another run holds the output root's lock."""


def metadata_config(config: PipelineConfig):
    from tfx.orchestration import metadata  # not tfx.v1: pipeline/pipeline.py says why
    os.makedirs(os.path.dirname(os.path.abspath(config.metadata_path)), exist_ok=True)
    return metadata.sqlite_metadata_connection_config(
        os.path.abspath(config.metadata_path))


def use_storage(config: PipelineConfig) -> None:
    """Points this process's S3 clients (tensorflow-io's, boto3's) at ``storage.*``;
    before the first s3:// access, which fixes tensorflow-io's endpoint for the process."""
    os.environ.update(config.storage.environment())


def local_pipeline(config: PipelineConfig):
    """The pipeline (a ``tfx.dsl.Pipeline``) as this machine runs it."""
    from pipeline.pipeline import create_pipeline
    use_storage(config)
    return create_pipeline(
        config,
        pipeline_name=config.name,
        pipeline_root=resolve_path(config.pipeline_root),
        data_root=resolve_path(config.data.input_dir),
        schema_file=resolve_path(config.data.schema_path),
        serving_model_dir=resolve_path(config.push_dir),
        # storage's Beam options first: an explicit beam_args option wins
        beam_pipeline_args=config.storage.beam_args() + list(config.beam_args),
        metadata_connection_config=metadata_config(config),
        trainer_distribution=trainer_distribution(config))


DIRECT_RUNNERS = {"", "direct", "directrunner", "bundlebaseddirectrunner",
                  "switchingdirectrunner"}


def runs_in_process(beam_args: list) -> bool:
    """Whether ``beam_args`` pick Beam's DirectRunner (no ``--runner``: the default)."""
    runner = ""
    for i, arg in enumerate(beam_args):
        if arg == "--runner" and i + 1 < len(beam_args):
            runner = beam_args[i + 1]
        elif arg.startswith("--runner="):
            runner = arg.split("=", 1)[1]
    return runner.rsplit(".", 1)[-1].lower() in DIRECT_RUNNERS


@contextlib.contextmanager
def no_tfx_package_for_direct_runner(beam_args: list):
    """While the block runs, TFX's Beam executors skip packaging TFX for remote Beam
    workers when the DirectRunner runs the components here: each Beam component copied
    TFX's installation (48 MB) into a new temporary folder, never removed, and ran
    ``setup.py sdist`` on it (about 1 s each, four per run) for an ``--extra_package``
    the DirectRunner does not read. Other runners keep TFX's behaviour."""
    from tfx.utils import dependency_utils

    package_tfx = dependency_utils.make_beam_dependency_flags
    if runs_in_process(beam_args):
        dependency_utils.make_beam_dependency_flags = list  # the options as given
    try:
        yield
    finally:
        dependency_utils.make_beam_dependency_flags = package_tfx


def trainer_distribution(config: PipelineConfig):
    """trainer.workers > 1: that many Trainer processes on this machine
    (components/distributed_trainer/local_workers.py); else None."""
    trainer = config.trainer
    if trainer.workers <= 1:
        return None
    return {"launcher": "local", "workers": trainer.workers, **trainer.replica_settings()}


def _try_lock(f, attempts: int = 20, pause: float = 0.05) -> bool:
    """Takes the run lock, trying for about a second: ``run_active`` (``history``) holds
    it shared for an instant, which must not refuse a run."""
    for attempt in range(attempts):
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if attempt + 1 < attempts:
                time.sleep(pause)
    return False


@contextlib.contextmanager
def run_lock(config: PipelineConfig):
    """Held while a run is active; a second run on the same output root is refused (on
    this machine: the lock lives in the local state folder)."""
    os.makedirs(config.state_dir, exist_ok=True)
    path = os.path.join(config.state_dir, LOCK_FILE)
    with open(path, "a+", encoding="utf-8") as f:
        if not _try_lock(f):
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


def run_active(config: PipelineConfig) -> bool:
    """Whether a run holds the output root's lock now."""
    path = os.path.join(config.state_dir, LOCK_FILE)
    if not os.path.exists(path):
        return False
    with open(path, encoding="utf-8") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


def write_report(result: "summary.RunSummary", config: PipelineConfig) -> None:
    """The run's HTML report (local/report); a failure to write it is logged and noted in
    the summary, never raised: the run's own outcome stands."""
    from local import report
    try:
        result.report_path = os.path.abspath(report.write(result, config))
    except Exception as e:  # noqa: BLE001 - the report must not fail or hide the run
        logging.warning("the run report was not written", exc_info=True)
        result.report_error = f"{type(e).__name__}: {e}"


def run(config: PipelineConfig, reason: str = "manual") -> "summary.RunSummary":
    """Runs the pipeline once; never raises for a failed run, the summary says why.

    Raises RunInProgress when another run holds the lock, and ValueError when a setting
    is wrong (local/preflight.py): then nothing is run or recorded.
    """
    with run_lock(config):
        use_storage(config)  # before the first s3:// access (the checks' own)
        preflight.check(config)
        started = time.time()
        run_key = history.start(config.history_path, started, reason, config.name)
        try:
            from tfx.orchestration.local.local_dag_runner import LocalDagRunner

            from local import run_progress, summary
            from models.autograph import skip_library_conversion
            skip_library_conversion()  # the steps that run in this process trace faster
            pipeline = local_pipeline(config)
        except BaseException as e:  # not even built (Ctrl-C included): recorded as failed
            history.append(config.history_path, history.failed(
                config.history_path, run_key, f"{type(e).__name__}: {e}"))
            raise
        error = None
        try:
            with run_progress.component_progress(), \
                    no_tfx_package_for_direct_runner(pipeline.beam_pipeline_args):
                LocalDagRunner().run(pipeline)
        except Exception as e:  # noqa: BLE001 - any component failure ends the run
            logging.info("pipeline run failed", exc_info=True)  # the summary says why
            error = e
        result = summary.collect(pipeline, started, error)
        # How the run ended is recorded before the report (slow: it scores the model), so
        # Ctrl-C or SIGTERM while it is written never leaves a pushed run "interrupted".
        entry = history.record(result, started, time.time(), reason, run_key)
        history.append(config.history_path, entry)
        write_report(result, config)
        if result.report_path:
            history.append(config.history_path, dict(entry, report=result.report_path))
    return result
