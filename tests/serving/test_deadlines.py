"""Deadlines stop the work, as TF Serving's RunOptions.timeout_in_ms does: a model run past
its request's deadline is cancelled, so the one worker thread serves the next request.
Real server processes on real sockets; the slow model loops as many times as it is told,
so nothing depends on the machine's speed (it would never finish if not cancelled)."""
import os
import threading

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import (model_pb2, predict_pb2, prediction_service_pb2_grpc,
                                     regression_pb2)

from serving import deadlines
from serving.batching import Batcher, BatchingParameters
from serving.errors import ServingError
from serving.process import ServerProcess

FOREVER = 10**15  # loop iterations: hours of work on any machine
TIMEOUT_MS = 3000  # --rest_api_timeout_in_ms, and the gRPC client's deadline


class Spin(tf.Module):
    """Counts to the largest ``n`` of the batch: predict and regress signatures. The step
    is a variable, so --bfloat16_fold_weights has a weight to fold (a signature without
    variables is served as it is)."""

    def __init__(self):
        super().__init__()
        self.step = tf.Variable(1, dtype=tf.int64)

    def count(self, n):
        limit = tf.reduce_max(n)
        done = tf.while_loop(lambda i: i < limit, lambda i: i + self.step,
                             [tf.constant(0, tf.int64)])[0]
        return n * 0 + done

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64, name="n")])
    def predict(self, n):
        return {"count": self.count(n)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def regress(self, inputs):
        n = tf.io.parse_example(inputs, {"n": tf.io.FixedLenFeature([], tf.int64)})["n"]
        return {"outputs": tf.cast(self.count(n), tf.float32)}


@pytest.fixture(scope="module")
def spin_base(tmp_path_factory):
    base = tmp_path_factory.mktemp("models") / "spin"
    module = Spin()
    tf.saved_model.save(module, str(base / "1"), signatures={
        "serving_default": module.predict.get_concrete_function(),
        "regress": module.regress.get_concrete_function()})
    return str(base)


def _modes():
    """Served as is, batched, and batched in bfloat16 with the weights folded into
    constants (serving/precision.py: another function is called) where the CPU allows it
    (elsewhere the server refuses bfloat16: tests/serving/test_precision.py)."""
    from serving.precision import bfloat16_refusal_here
    return ["direct", "batched"] + ([] if bfloat16_refusal_here() else ["batched_bfloat16"])


@pytest.fixture(scope="module", params=_modes())
def server(request, spin_base, tmp_path_factory):
    """One REST worker thread and one gRPC thread (and one batch thread when batched)."""
    flags = ["--model_name", "spin", "--model_base_path", spin_base,
             "--rest_api_num_threads", "1", "--grpc_max_threads", "1",
             "--rest_api_timeout_in_ms", str(TIMEOUT_MS)]
    if request.param == "batched_bfloat16":
        flags += ["--mixed_precision=bfloat16", "--bfloat16_fold_weights"]
    if request.param.startswith("batched"):
        params = tmp_path_factory.mktemp("batching") / "batching.config"
        params.write_text("max_batch_size { value: 8 }\nnum_batch_threads { value: 1 }\n")
        flags += ["--enable_batching", "--batching_parameters_file", str(params)]
    with ServerProcess(flags) as running:
        assert "cannot have its weights folded" not in running.log()  # folded, not set aside
        yield running


def rest_predict(server, n: int) -> requests.Response:
    return requests.post(f"{server.rest_url}/v1/models/spin:predict",
                         json={"instances": [n]}, timeout=60)


def test_rest_run_past_its_deadline_is_cancelled_and_frees_the_thread(server):
    slow = rest_predict(server, FOREVER)
    assert slow.status_code == 504, slow.text
    assert "Deadline exceeded" in slow.json()["error"]
    fast = rest_predict(server, 5)  # 504 too if the first run still held the thread
    assert fast.status_code == 200, fast.text
    assert fast.json() == {"predictions": [5]}
    # The cancelled run's error is collected, not left to asyncio's garbage report.
    assert "Future exception was never retrieved" not in server.log(), server.log()[-2000:]


def test_a_rest_timeout_of_zero_sets_no_deadline(spin_base):
    """As TF Serving's REST handler (timeout_in_ms > 0 only): it answered every request
    504 "no answer within 0 ms" here."""
    with ServerProcess(["--model_name", "spin", "--model_base_path", spin_base,
                        "--rest_api_timeout_in_ms", "0"]) as running:
        answer = rest_predict(running, 50_000)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"predictions": [50_000]}
        assert requests.get(f"{running.rest_url}/v1/models/spin", timeout=60).status_code == 200


def test_rest_regress_past_its_deadline_is_cancelled(server):
    url = f"{server.rest_url}/v1/models/spin:regress"
    slow = requests.post(url, json={"signature_name": "regress",
                                    "examples": [{"n": FOREVER}]}, timeout=60)
    assert slow.status_code == 504, slow.text
    fast = requests.post(url, json={"signature_name": "regress",
                                    "examples": [{"n": 7}]}, timeout=60)
    assert fast.status_code == 200, fast.text
    assert fast.json() == {"results": [7.0]}


def test_grpc_client_deadline_cancels_the_run(server):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(
        grpc.insecure_channel(server.grpc_address))

    def predict(n: int, timeout: float):
        request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="spin"))
        request.inputs["n"].CopyFrom(tf.make_tensor_proto([n], dtype=tf.int64))
        return stub.Predict(request, timeout=timeout)

    with pytest.raises(grpc.RpcError) as slow:
        predict(FOREVER, TIMEOUT_MS / 1000)
    assert slow.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # One gRPC thread: this waits behind the first run unless it was cancelled.
    answer = predict(9, 60)
    assert tf.make_ndarray(answer.outputs["count"]).tolist() == [9]

    request = regression_pb2.RegressionRequest(
        model_spec=model_pb2.ModelSpec(name="spin", signature_name="regress"))
    request.input.example_list.examples.add().features.feature["n"].int64_list.value.append(
        FOREVER)
    with pytest.raises(grpc.RpcError) as slow:
        stub.Regress(request, timeout=TIMEOUT_MS / 1000)
    assert slow.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert tf.make_ndarray(predict(2, 60).outputs["count"]).tolist() == [2]


@pytest.mark.parametrize("fold_weights", [False, True])
def test_servable_cancels_only_runs_with_a_deadline(spin_base, fold_weights, caplog):
    """No deadline (gRPC without a client deadline): never cancelled. The same with the
    signatures folded (--bfloat16_fold_weights: serving/precision.py), on any CPU."""
    from serving.precision import FoldedSignature
    from serving.servable import LoadSettings, Servable

    servable = Servable("spin", 1, os.path.join(spin_base, "1"),
                        LoadSettings(fold_weights=fold_weights))
    assert isinstance(servable._functions["serving_default"], FoldedSignature) == fold_weights
    assert "cannot have its weights folded" not in caplog.text
    assert servable.run("", {"n": np.array([20_000])})["count"].tolist() == [20_000]
    with pytest.raises(ServingError) as error:
        servable.run("", {"n": np.array([FOREVER])}, deadline=deadlines.after(0.2))
    assert error.value.code == grpc.StatusCode.DEADLINE_EXCEEDED


def test_a_long_run_under_a_deadline_is_made_in_slices(spin_base, half_base):
    """Straight-line graphs (a BERT) are not cancelled mid-call, so a run under a deadline
    goes in slices of DEADLINE_SLICE_ROWS rows; Spin counts to the largest n of each call,
    which shows the slices. The answer is the same as one call's for row-wise models."""
    from serving.servable import DEADLINE_SLICE_ROWS, Servable

    spin = Servable("spin", 1, os.path.join(spin_base, "1"))
    n = np.array([1] * DEADLINE_SLICE_ROWS + [5] * (DEADLINE_SLICE_ROWS + 2))
    assert spin.run("", {"n": n})["count"].tolist() == [5] * len(n)
    sliced = spin.run("", {"n": n}, deadline=deadlines.after(600))["count"].tolist()
    assert sliced == [1] * DEADLINE_SLICE_ROWS + [5] * (DEADLINE_SLICE_ROWS + 2)

    half = Servable("half", 1, os.path.join(half_base, "1"))
    inputs = {"a": np.arange(150, dtype=np.float32), "b": np.ones((150, 2), np.int64)}
    whole = half.run("two_inputs", inputs)
    in_slices = half.run("two_inputs", inputs, deadline=deadlines.after(600))
    assert {k: v.tolist() for k, v in in_slices.items()} == {
        k: v.tolist() for k, v in whole.items()}


def test_batcher_caller_gives_up_at_its_deadline_and_its_request_is_dropped():
    busy, release, seen = threading.Event(), threading.Event(), []

    def echo(inputs):
        seen.append(inputs["x"].tolist())
        busy.set()
        release.wait()
        return inputs

    batcher = Batcher(echo, BatchingParameters(max_batch_size=1, num_batch_threads=1))
    first = threading.Thread(target=batcher, args=({"x": np.array([1])},))
    first.start()
    busy.wait()  # the only batch thread is taken: the next request waits in the queue
    with pytest.raises(ServingError) as error:
        batcher({"x": np.array([2])}, deadlines.after(0.1))
    assert error.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    release.set()
    first.join()
    assert batcher({"x": np.array([3])})["x"].tolist() == [3]
    assert seen == [[1], [3]]  # the abandoned request never ran
    batcher.close()


@pytest.mark.parametrize("second,expected", [(None, None), (120.0, 120.0)])
def test_a_merged_batch_runs_until_its_latest_deadline(second, expected):
    """A batch is cancelled only when none of its callers waits any longer (TF Serving's
    batching session takes the largest timeout; no timeout if one has none)."""
    scopes = []

    def record(inputs):
        scopes.append(deadlines.remaining(deadlines.current()))
        return inputs

    batcher = Batcher(record, BatchingParameters(max_batch_size=2, num_batch_threads=1,
                                                 batch_timeout_micros=600_000_000))
    results = {}
    callers = [threading.Thread(target=lambda i=i, d=d: results.update(
        {i: batcher({"x": np.array([i])}, deadlines.after(d))}))
        for i, d in enumerate([60.0, second])]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    batcher.close()
    assert {i: r["x"].tolist() for i, r in results.items()} == {0: [0], 1: [1]}
    assert len(scopes) == 1  # one merged batch
    if expected is None:
        assert scopes == [None]
    else:
        assert 60.0 < scopes[0] <= expected
