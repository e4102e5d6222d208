"""The serving check run before the Pusher: load in the model server, answer the
warmup requests over gRPC and REST, or block the push with the reason."""
import os

import numpy as np

from serving.check import check_model
from tests.support.serving_models import export_half_plus_two, write_predict_warmup


def test_model_that_loads_and_answers_passes(tmp_path):
    model = export_half_plus_two(str(tmp_path), 1)
    write_predict_warmup(model, "two_inputs", {"a": np.array([1.0, 2.0], np.float32),
                                               "b": np.array([[1, 2], [3, 4]], np.int64)})
    result = check_model(model, "half")
    assert result.ok and result.requests == 1, result.reason


def test_model_that_cannot_answer_its_warmup_requests_fails(tmp_path):
    model = export_half_plus_two(str(tmp_path), 1)
    write_predict_warmup(model, "serving_default", {"x": np.array(["text"], object)})
    result = check_model(model, "half")
    assert not result.ok and "did not load" in result.reason  # TF Serving: warmup fails load
    assert "Expects arg[0] to be float but string is provided" in result.reason


def test_model_without_warmup_requests_or_loadable_graph_fails(tmp_path):
    model = export_half_plus_two(str(tmp_path), 1)
    result = check_model(model, "half")
    assert not result.ok and "no warmup requests" in result.reason
    with open(os.path.join(model, "saved_model.pb"), "wb") as f:
        f.write(b"not a SavedModel")
    result = check_model(model, "half", timeout_seconds=60)
    assert not result.ok and "did not load" in result.reason
