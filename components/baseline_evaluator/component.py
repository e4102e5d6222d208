"""BaselineEvaluator: TFX's Evaluator (same spec, inputs, outputs) whose executor drops a
baseline of another pipeline or task (executor.py). The pipeline gives it the id
``Evaluator``, as the stock component has.

Tested: tests/unit/components/baseline_evaluator/test_executor.py.
"""
from tfx.components import Evaluator
from tfx.dsl.components.base import executor_spec

from components.baseline_evaluator import executor


class BaselineEvaluator(Evaluator):
    """The stock Evaluator with ``executor.Executor``."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)
