"""ModelCard component: the candidate model with its model card, for the checks and push.

Tested end to end: tests/e2e/test_model_card.py.

After the Evaluator, the Trainer's SavedModel is copied with ``assets.extra/model_card.md``
added (data, training, metrics overall, per slice and per class, the gate, intended use,
limitations, owners and lineage; see card.py). The serving check and the Pusher take
this copy, so the pushed model carries its card; TF Serving (and the local model server)
ignore ``assets.extra`` files they do not know, so serving is unchanged. The card is
written for every run, blessed or not (the run report shows it).
"""
from __future__ import annotations

import json

from tfx.dsl.components.base import base_component, executor_spec
from tfx import types
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.model_card import executor
from serving.contract import LABEL_FEATURE, TEXT_FEATURE


class ModelCardSpec(ComponentSpec):
    PARAMETERS = {name: ExecutionParameter(type=str) for name in (
        "model_name", "input_base", "file_patterns", "label_feature", "text_feature",
        "intended_use", "limitations", "owners", "gated_metric")}
    INPUTS = {
        "examples": ChannelParameter(type=standard_artifacts.Examples),
        "statistics": ChannelParameter(type=standard_artifacts.ExampleStatistics),
        "model": ChannelParameter(type=standard_artifacts.Model),
        "model_run": ChannelParameter(type=standard_artifacts.ModelRun),
        "evaluation": ChannelParameter(type=standard_artifacts.ModelEvaluation),
        "model_blessing": ChannelParameter(type=standard_artifacts.ModelBlessing),
    }
    OUTPUTS = {"model_with_card": ChannelParameter(type=standard_artifacts.Model)}


class ModelCard(base_component.BaseComponent):
    """Outputs ``model_with_card``: the Trainer's ``model`` plus its card."""

    SPEC_CLASS = ModelCardSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, *, examples, statistics, model, model_run, evaluation, model_blessing,
                 model_name: str, input_base: str, file_patterns: list, intended_use: str,
                 limitations: str, owners: str, label_feature: str = LABEL_FEATURE,
                 text_feature: str = TEXT_FEATURE, gated_metric: str = ""):
        super().__init__(spec=ModelCardSpec(
            examples=examples, statistics=statistics, model=model, model_run=model_run,
            evaluation=evaluation, model_blessing=model_blessing,
            model_with_card=types.Channel(type=standard_artifacts.Model),
            model_name=model_name, input_base=input_base,
            file_patterns=json.dumps(file_patterns), label_feature=label_feature,
            text_feature=text_feature, intended_use=intended_use,
            limitations=limitations, owners=owners, gated_metric=gated_metric))
