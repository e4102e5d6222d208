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

from absl import logging
from tfx.components.evaluator import executor as tfx_evaluator
from tfx.types import standard_component_specs
from tfx.utils import path_utils

from models import model_info

BASELINE_DROPPED = "baseline_dropped"
_BASELINE = standard_component_specs.BASELINE_MODEL_KEY


class Executor(tfx_evaluator.Executor):
    """TFX's Evaluator executor with ``comparable_inputs`` first."""

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        super().Do(comparable_inputs(input_dict, output_dict), output_dict, exec_properties)


def comparable_inputs(input_dict: dict, output_dict: dict) -> dict:
    """``input_dict`` without its baseline where it cannot gate the candidate
    (``models.model_info.other_run``: another pipeline's or task's); then the
    evaluation artifact's ``baseline_dropped`` says why."""
    baselines = input_dict.get(_BASELINE) or []
    if len(baselines) != 1:
        return input_dict  # none, or several (TFX's executor refuses those)
    [candidate] = input_dict[standard_component_specs.MODEL_KEY]
    this = model_info.read(path_utils.serving_model_path(candidate.uri))
    baseline = path_utils.serving_model_path(baselines[0].uri)
    reason = model_info.other_run(
        baseline, model_info.read(baseline), this.get("pipeline"),
        bool(this["multi_label"]) if "multi_label" in this else None)
    if reason is None:
        return input_dict
    reason = (f"the latest blessed model is no baseline: {reason}; gated on the absolute "
              f"bar only, as a first run")
    logging.warning("Evaluator: %s", reason)
    for evaluation in output_dict[standard_component_specs.EVALUATION_KEY]:
        evaluation.set_string_custom_property(BASELINE_DROPPED, reason)
    return dict(input_dict, **{_BASELINE: []})
