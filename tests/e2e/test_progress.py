"""Progress lines of a real LocalDagRunner run of two small components."""
import io
import logging
import re

import pytest
from absl import logging as absl_logging
from tfx import v1 as tfx
from tfx.dsl.component.experimental.decorators import component

from local import run_progress


@component
def Produce(examples: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.Examples]):
    absl_logging.info("chatter the quiet run hides")
    verbosity = absl_logging.get_verbosity()  # as TensorFlow does while it saves a model
    absl_logging.set_verbosity(absl_logging.FATAL)
    absl_logging.set_verbosity(verbosity)


@component
def Fail(examples: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Examples]):
    raise RuntimeError("broken on purpose")


def test_component_lines_of_a_real_local_run_and_the_rest_stays_quiet(tmp_path):
    produce = Produce()
    fail = Fail(examples=produce.outputs["examples"])
    pipeline = tfx.dsl.Pipeline(
        pipeline_name="progress", pipeline_root=str(tmp_path / "root"),
        components=[produce, fail],
        metadata_connection_config=tfx.orchestration.metadata
        .sqlite_metadata_connection_config(str(tmp_path / "metadata.sqlite")))
    out, passed = io.StringIO(), []
    absl_logger = logging.getLogger("absl")
    keep = logging.Handler()
    keep.emit = passed.append  # what the filter lets through to absl's handlers
    absl_logger.addHandler(keep)
    verbosity = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.ERROR)  # as `bert-pipeline run` (no --verbose)
    try:
        with pytest.raises(RuntimeError, match="broken on purpose"):
            with run_progress.component_progress(stream=out):
                tfx.orchestration.LocalDagRunner().run(pipeline)
        assert absl_logging.get_verbosity() == absl_logging.ERROR  # restored
    finally:
        absl_logger.removeHandler(keep)
        absl_logging.set_verbosity(verbosity)
    lines = out.getvalue().splitlines()
    assert [re.sub(r"[\d.]+s", "T", line) for line in lines] == [
        "[   T] Produce started", "[   T] Produce complete in T",
        "[   T] Fail started", "[   T] Fail failed in T"], lines
    assert not [r for r in passed if r.levelno < logging.ERROR]
