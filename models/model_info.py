"""A model's ``assets.extra/model_info.json`` read back, and whether a model of an earlier
run can stand in for this run's: as its warm start (models/warm_start.py) or as the
baseline its gate compares with (components/baseline_evaluator).

Tested: tests/unit/models/test_warm_start.py and
tests/unit/components/baseline_evaluator/test_executor.py.
"""
from __future__ import annotations

import json
import os
from typing import Optional

import tensorflow as tf

from serving import contract

TASKS = {True: "several labels per text (sigmoid)", False: "one label per text (softmax)"}


def read(model_dir: str) -> dict:
    """The exported model's ``model_info.json`` ({} for models exported before it)."""
    path = os.path.join(model_dir, contract.ASSETS_EXTRA, contract.MODEL_INFO_FILE)
    try:
        with tf.io.gfile.GFile(path) as f:
            info = json.load(f)
    except (tf.errors.NotFoundError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def other_run(model_dir: str, info: dict, pipeline: Optional[str] = None,
              multi_label: Optional[bool] = None) -> Optional[str]:
    """Why the model ``model_dir`` (its ``info``) is another pipeline's (``pipeline``: this
    run's name) or answers another task (``multi_label``: this run's) than this run;
    None when neither is so, or not known (models exported before they were recorded)."""
    if pipeline and info.get("pipeline") not in (None, pipeline):
        return (f"the model {model_dir} is pipeline '{info['pipeline']}''s, this run's is "
                f"'{pipeline}' (name)")
    if multi_label is not None and "multi_label" in info \
            and bool(info["multi_label"]) != multi_label:
        return (f"the model {model_dir} predicts {TASKS[bool(info['multi_label'])]}, this "
                f"run {TASKS[multi_label]} (data.label_delimiter)")
    return None
