"""BaselineEvaluator (components/baseline_evaluator): a baseline of another pipeline or
task is dropped, said in the evaluation's properties; a comparable one is kept."""
import json
import os

import pytest
from tfx.types import standard_artifacts

from components.baseline_evaluator.executor import BASELINE_DROPPED, comparable_inputs


def _model(tmp_path, name, **info):
    model = standard_artifacts.Model()
    model.uri = str(tmp_path / name)
    if info:
        folder = tmp_path / name / "Format-Serving" / "assets.extra"
        folder.mkdir(parents=True)
        (folder / "model_info.json").write_text(json.dumps(info))
    else:
        os.makedirs(model.uri)
    return model


@pytest.mark.parametrize("baseline_info, reason", [
    ({"pipeline": "other", "multi_label": False},
     "is pipeline 'other''s, this run's is 'reviews' (name)"),
    ({"pipeline": "reviews", "multi_label": True},
     "predicts several labels per text (sigmoid), this run one label per text (softmax) "
     "(data.label_delimiter)"),
    ({"pipeline": "reviews", "multi_label": False}, None),
    ({"multi_label": False}, None),  # exported before the pipeline was recorded
    ({}, None),  # no model_info.json at all
])
def test_a_baseline_of_another_pipeline_or_task_is_dropped(tmp_path, baseline_info, reason):
    candidate = _model(tmp_path, "candidate", pipeline="reviews", multi_label=False)
    baseline = _model(tmp_path, "baseline", **baseline_info)
    evaluation = standard_artifacts.ModelEvaluation()
    inputs = {"model": [candidate], "baseline_model": [baseline], "examples": []}
    checked = comparable_inputs(inputs, {"evaluation": [evaluation]})
    if reason is None:
        assert checked["baseline_model"] == [baseline]
        assert not evaluation.has_custom_property(BASELINE_DROPPED)
    else:
        assert checked["baseline_model"] == [] and checked["examples"] == []
        said = evaluation.get_string_custom_property(BASELINE_DROPPED)
        assert said.startswith("the latest blessed model is no baseline: the model ") \
            and reason in said and said.endswith("gated on the absolute bar only, as a "
                                                  "first run"), said
        assert inputs["baseline_model"] == [baseline]  # the caller's dict is not changed

