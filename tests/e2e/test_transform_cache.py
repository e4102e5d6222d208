"""Transform is keyed on what it reads: with ``enable_cache``, a run that changes only a
training setting reuses Transform's outputs; one that changes the tokenizer re-runs it.

Real runs of the pipeline's first steps (TextExampleGen to Transform, TFX's partial run)
with the tiny BERT, read back from the run's ML Metadata (``local.summary``).
"""
import time

import pytest

from local import local_runner, summary
from pipeline.config import load_config
from tests.support.pipeline_runs import sample_rows, tiny_overrides, write_labelled_tsv

UP_TO = "Transform"


@pytest.fixture(scope="module")
def reviews(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("data")
    write_labelled_tsv(folder / "reviews.tsv", sample_rows(120))
    return str(folder)


def run_up_to_transform(settings: dict) -> summary.RunSummary:
    """Runs the pipeline ``create_pipeline`` builds, from its sources to Transform."""
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner
    from tfx.orchestration.pipeline import RunOptions

    pipeline = local_runner.local_pipeline(load_config(None, settings))
    started = time.time()
    with local_runner.no_tfx_package_for_direct_runner(pipeline.beam_pipeline_args):
        LocalDagRunner().run(pipeline, run_options=RunOptions(to_nodes=[UP_TO]))
    return summary.collect(pipeline, started)


def statuses(run: summary.RunSummary) -> dict:
    return {c.name: c.status for c in run.components if c.status != "not run"}


def test_transform_is_reused_when_only_training_settings_change(tmp_path, tiny_checkpoint,
                                                                 reviews):
    settings = tiny_overrides(tmp_path, tiny_checkpoint, reviews, enable_cache=True)
    first = run_up_to_transform(settings)
    assert statuses(first)[UP_TO] == "complete", statuses(first)

    settings.update({"model.epochs": 3, "model.learning_rate": 1e-4, "model.seed": 7})
    second = run_up_to_transform(settings)
    assert statuses(second) == dict.fromkeys(statuses(first), "cached")
    assert second.artifacts[UP_TO] == first.artifacts[UP_TO]  # the same graph and examples

    settings["model.max_seq_length"] = 32  # the tokenizer's: Transform runs again
    third = run_up_to_transform(settings)
    assert statuses(third)[UP_TO] == "complete", statuses(third)
    assert third.artifacts[UP_TO] != first.artifacts[UP_TO]
