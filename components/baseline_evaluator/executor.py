"""TFX's Evaluator executor, which first drops a baseline that is not comparable.

The baseline comes from TFX's latest-blessed-model resolver. Locally it sees this
pipeline's runs only; on Kubeflow it compiles into a query by artifact type alone, so
another pipeline's model can come back, and a pipeline whose task changed (single- to
multi-label) resolves a model TFMA cannot score beside the candidate (it fails every run
from then on). Each model's ``model_info.json`` records its pipeline and task: a baseline
of another pipeline or task is dropped, with a warning, and the run is gated as a first
run (the absolute bar only; TFX leaves out the change threshold). The evaluation artifact
says why in its ``baseline_dropped`` property. A model exported before the pipeline was
recorded is compared as before.

Tested: tests/unit/components/baseline_evaluator/test_executor.py, and end to end in
tests/e2e (every run after the first has a baseline).
"""
from __future__ import annotations

import json
import os
from typing import Optional

import tensorflow as tf
from absl import logging
from tfx.components.evaluator import executor as tfx_evaluator
from tfx.types import standard_component_specs
from tfx.utils import path_utils

from serving.contract import ASSETS_EXTRA, MODEL_INFO_FILE

BASELINE_DROPPED = "baseline_dropped"
_BASELINE = standard_component_specs.BASELINE_MODEL_KEY
_TASKS = {True: "multi-label", False: "single-label"}


def model_info(model_uri: str) -> dict:
    """A Trainer model artifact's ``model_info.json`` ({} when it has none)."""
    path = os.path.join(path_utils.serving_model_path(model_uri), ASSETS_EXTRA,
                        MODEL_INFO_FILE)
    try:
        with tf.io.gfile.GFile(path) as f:
            info = json.load(f)
    except (tf.errors.NotFoundError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def mismatch(candidate: dict, baseline: dict) -> Optional[str]:
    """Why a baseline (its model_info) cannot gate the candidate; None when it can."""
    if None not in (candidate.get("pipeline"), baseline.get("pipeline")) \
            and candidate["pipeline"] != baseline["pipeline"]:
        return (f"the latest blessed model is pipeline '{baseline['pipeline']}''s, not "
                f"'{candidate['pipeline']}''s")
    if "multi_label" in candidate and "multi_label" in baseline \
            and bool(candidate["multi_label"]) != bool(baseline["multi_label"]):
        return (f"the latest blessed model is {_TASKS[bool(baseline['multi_label'])]}, this "
                f"run's {_TASKS[bool(candidate['multi_label'])]} (data.label_delimiter)")
    return None


class Executor(tfx_evaluator.Executor):
    """TFX's Evaluator executor with ``comparable_inputs`` first."""

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        super().Do(comparable_inputs(input_dict, output_dict), output_dict, exec_properties)


def comparable_inputs(input_dict: dict, output_dict: dict) -> dict:
    """``input_dict`` without its baseline where ``mismatch`` says it cannot gate the
    candidate; then the evaluation artifact's ``baseline_dropped`` says why."""
    baselines = input_dict.get(_BASELINE) or []
    if len(baselines) != 1:
        return input_dict  # none, or several (TFX's executor refuses those)
    [candidate] = input_dict[standard_component_specs.MODEL_KEY]
    reason = mismatch(model_info(candidate.uri), model_info(baselines[0].uri))
    if reason is None:
        return input_dict
    reason += ": not compared with it; gated on the absolute bar only, as a first run"
    logging.warning("Evaluator: %s", reason)
    for evaluation in output_dict[standard_component_specs.EVALUATION_KEY]:
        evaluation.set_string_custom_property(BASELINE_DROPPED, reason)
    return dict(input_dict, **{_BASELINE: []})
