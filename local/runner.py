"""Thin local runner: ``create_pipeline`` + LocalDagRunner + SQLite ML Metadata."""
from __future__ import annotations

import logging
import os
import time

from tfx import v1 as tfx

from local import summary
from pipeline.config import PipelineConfig
from pipeline.pipeline import create_pipeline


def metadata_config(config: PipelineConfig):
    os.makedirs(os.path.dirname(os.path.abspath(config.metadata_path)), exist_ok=True)
    return tfx.orchestration.metadata.sqlite_metadata_connection_config(
        os.path.abspath(config.metadata_path))


def run(config: PipelineConfig) -> summary.RunSummary:
    """Runs the pipeline once; never raises for a failed run, the summary says why."""
    started = time.time()
    error = None
    try:
        tfx.orchestration.LocalDagRunner().run(
            create_pipeline(config, metadata_connection_config=metadata_config(config)))
    except Exception as e:  # noqa: BLE001 - any component failure ends the run
        logging.info("pipeline run failed", exc_info=True)  # the summary says why
        error = e
    return summary.collect(config, metadata_config(config), started, error)
