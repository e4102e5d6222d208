"""Serving configuration: the deploy files, TF Serving's flags, batching semantics."""
import os
import threading

import numpy as np
import pytest

from serving.batching import Batcher, BatchingParameters
from serving.metrics import read_monitoring_config
from serving.model_store import read_model_config
from serving.server import parse_flags
from tests.support.paths import REPO

DEPLOY = os.path.join(REPO, "serving", "deploy")


def test_model_config_errors_name_the_file(tmp_path):
    bad = tmp_path / "models.config"
    bad.write_text('model_config_list { config { name: "m" base_path: "relative/m" } }')
    with pytest.raises(ValueError, match="models.config: Expected model m to have an absolute"):
        read_model_config(str(bad))
    bad.write_text('model_config_list { config { name: "m" base_path: "/m" } '
                   'config { name: "m" base_path: "/n" } }')
    with pytest.raises(ValueError, match="Illegal to list model m multiple times"):
        read_model_config(str(bad))
    bad.write_text('model_config_list { config { nme: "m" } }')
    with pytest.raises(ValueError, match="models.config"):
        read_model_config(str(bad))


def test_batching_and_monitoring_files():
    params = BatchingParameters.from_file(os.path.join(DEPLOY, "batching_parameters.txt"))
    assert params == BatchingParameters(max_batch_size=32, batch_timeout_micros=2000,
                                        max_enqueued_batches=100, num_batch_threads=2)
    assert BatchingParameters.parse("max_batch_size: 8 allowed_batch_sizes: 8") == \
        BatchingParameters(max_batch_size=8)
    with pytest.raises(ValueError, match="unknown field.*max_batchsize"):
        BatchingParameters.parse("max_batchsize { value: 8 }")
    path = read_monitoring_config(os.path.join(DEPLOY, "monitoring.config"))
    assert path == "/monitoring/prometheus/metrics"


def test_tf_serving_flags_are_accepted():
    args = parse_flags(["--port=8500", "--rest_api_port=8501", "--model_name=m",
                        "--model_base_path=/models/m", "--enable_batching",
                        "--file_system_poll_wait_seconds=5"])
    assert (args.port, args.rest_api_port, args.enable_batching, args.host) == (
        8500, 8501, True, "127.0.0.1")
    assert parse_flags(["--model_base_path=/m", "--enable_batching=false"]).enable_batching \
        is False
    with pytest.raises(SystemExit):
        parse_flags(["--port=8500"])  # no model


def test_batcher_merges_concurrent_requests_and_splits_answers():
    sizes, lock = [], threading.Lock()

    def double(inputs):
        with lock:
            sizes.append(len(inputs["x"]))
        return {"y": inputs["x"] * 2}

    batcher = Batcher(double, BatchingParameters(max_batch_size=16,
                                                 batch_timeout_micros=200_000,
                                                 num_batch_threads=1))
    inputs = [np.full(i % 3 + 1, float(i)) for i in range(24)]
    results = [None] * len(inputs)

    def call(i):
        results[i] = batcher({"x": inputs[i]})["y"]

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    batcher.close()
    for x, y in zip(inputs, results):
        np.testing.assert_array_equal(y, x * 2)
    assert sum(sizes) == sum(len(x) for x in inputs)
    assert max(sizes) > 3 and max(sizes) <= 16  # requests were merged, never past the max


def test_batcher_passes_errors_to_every_caller():
    def fail(inputs):
        raise ValueError("model error")

    batcher = Batcher(fail, BatchingParameters(max_batch_size=4, num_batch_threads=1))
    with pytest.raises(ValueError, match="model error"):
        batcher({"x": np.ones(2)})
    batcher.close()


def test_example_dicts_take_rest_b64_bytes():
    from serving.client import make_example

    example = make_example({"text": [{"b64": "aMOpbGxv"}, "x"], "n": 3, "f": [0.5, 1]})
    features = example.features.feature
    assert list(features["text"].bytes_list.value) == ["héllo".encode(), b"x"]
    assert list(features["n"].int64_list.value) == [3]
    assert list(features["f"].float_list.value) == [0.5, 1.0]
