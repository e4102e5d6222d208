"""Server-side batching (serving/batching.py): batching and monitoring files parsed as TF
Serving does, concurrent requests merged into one run and the answers (or the error)
split back to every caller, every batch reported to the metrics."""
import os
import threading
import time

import grpc
import numpy as np
import pytest

from serving.batching import Batcher, BatchingParameters, QueueFull
from serving.errors import ServingError
from serving.metrics import Metrics, batching_figures, read_monitoring_config
from tests.support.gate_model import _wait_for
from tests.support.paths import REPO

DEPLOY = os.path.join(REPO, "serving", "deploy")


def test_batching_and_monitoring_files():
    params = BatchingParameters.from_file(os.path.join(DEPLOY, "batching_parameters.txt"))
    assert params == BatchingParameters(max_batch_size=32, batch_timeout_micros=2000,
                                        max_enqueued_batches=100, num_batch_threads=2)
    assert BatchingParameters.parse("max_batch_size: { value: 8 } allowed_batch_sizes: 4 "
                                    "allowed_batch_sizes: 8") == \
        BatchingParameters(max_batch_size=8)
    with pytest.raises(ValueError, match="no field named \"max_batchsize\""):
        BatchingParameters.parse("max_batchsize { value: 8 }")
    with pytest.raises(ValueError, match="max_enqueued_batches must be >= 1"):
        BatchingParameters.parse("max_enqueued_batches { value: 0 }")  # TF's refuses it too


@pytest.mark.parametrize("text,message", [
    # read with TF Serving's own message, as TF Serving reads the file: these were taken
    ("max_batch_size: 32", 'Expected "{"'),  # a wrapper's value needs its braces
    ("max_batch_size { value: 8 } max_batch_size { value: 16 }", "multiple"),
    ("pad_variable_length_inputs: maybe", "pad_variable_length_inputs"),
    # and its checks: a file TF Serving refuses to load with
    ("max_batch_size { value: 32 } allowed_batch_sizes: [8, 16]",
     "Last entry in allowed_batch_sizes must match max_batch_size; last entry was 16"),
    ("max_batch_size { value: 32 } enable_large_batch_splitting { value: true } "
     "allowed_batch_sizes: [32, 8, 32]", "allowed_batch_sizes entries must be monotonically"),
])
def test_batching_files_are_read_as_tf_serving_reads_them(text, message):
    with pytest.raises(ValueError, match=message):
        BatchingParameters.parse(text)


def test_batching_fields_tf_serving_has_are_taken_and_ignored_with_a_warning(caplog):
    """Valid in TF Serving (refused here before): a list of sizes, a thread pool name."""
    params = BatchingParameters.parse(
        'max_batch_size { value: 32 } allowed_batch_sizes: [8, 16, 32] '
        'thread_pool_name { value: "my-pool" }', "b.txt")
    assert params == BatchingParameters(max_batch_size=32)
    assert "b.txt: thread_pool_name, allowed_batch_sizes accepted and ignored" in caplog.text
    path = read_monitoring_config(os.path.join(DEPLOY, "monitoring.config"))
    assert path == "/monitoring/prometheus/metrics"


def test_batcher_merges_concurrent_requests_and_splits_answers():
    sizes, lock = [], threading.Lock()

    def double(inputs):
        with lock:
            sizes.append(len(inputs["x"]))
        return {"y": inputs["x"] * 2}

    observed = []
    batcher = Batcher(double, BatchingParameters(max_batch_size=16,
                                                 batch_timeout_micros=200_000,
                                                 num_batch_threads=1),
                      name="m-1-serving_default",
                      observe=lambda *batch: observed.append(batch))
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
    # Each batch was reported before it ran: its name, rows and each request's wait.
    assert [rows for _, rows, _ in observed] == sizes
    assert {name for name, _, _ in observed} == {"m-1-serving_default"}
    waits = [w for _, _, batch_waits in observed for w in batch_waits]
    assert len(waits) == len(inputs) and 0 <= min(waits) and max(waits) < 5


def test_num_batch_threads_bounds_the_batches_running_in_the_whole_server():
    """TF Serving runs the batches of every model, version and signature on one scheduler
    of num_batch_threads threads (one per server: saved_model_bundle_factory.cc). Here
    each signature's batcher had threads of its own, so a model of four signatures ran
    four times num_batch_threads batches at once on the same cores. With 1: while one
    signature's batch runs, another's waits; its caller's deadline passes meanwhile, and
    its request is dropped, never run."""
    from serving import deadlines
    from serving.batching import shared_slots

    params = BatchingParameters(max_batch_size=4, num_batch_threads=1)
    slots = shared_slots(params)
    running, go, ran = threading.Event(), threading.Event(), []

    def held(inputs):
        running.set()
        assert go.wait(60)
        return {"y": inputs["x"]}

    def other(inputs):
        ran.append(len(inputs["x"]))
        return {"y": inputs["x"]}

    first = Batcher(held, params, name="m-1-serving_default", slots=slots)
    second = Batcher(other, params, name="m-1-classify", slots=slots)
    answers = []
    caller = threading.Thread(target=lambda: answers.append(first({"x": np.ones(2)})["y"]))
    caller.start()
    assert running.wait(60)
    with pytest.raises(ServingError) as late:
        second({"x": np.ones(3)}, deadline=deadlines.after(0.3))
    assert late.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    go.set()
    caller.join(60)
    first.close()
    second.close()
    np.testing.assert_array_equal(answers[0], [1.0, 1.0])
    assert ran == []  # dropped once a thread was free: its caller had gone
    # alone, a batcher has num_batch_threads of its own (as a server of one signature)
    alone = Batcher(other, params)
    assert alone._slots is not slots
    alone.close()


def test_a_busy_signature_does_not_starve_another_of_the_servers_batch_threads():
    """The shared threads go to batches in the order they asked: with a semaphore, a
    batch thread of a signature under load (32 callers) released its slot and took it
    straight back, and another signature's requests all ran past their 2 s deadlines
    (a new version's warmup, with no deadline, waited until the load stopped)."""
    from serving import deadlines
    from serving.batching import shared_slots

    params = BatchingParameters(max_batch_size=4, num_batch_threads=4)
    slots = shared_slots(params)
    busy_calls, stop = threading.Semaphore(0), threading.Event()

    def model(inputs):  # a model's call: 20 ms without the GIL, as TensorFlow runs
        time.sleep(0.02)
        busy_calls.release()
        return {"y": inputs["x"]}

    busy = Batcher(model, params, name="m-1-serving_default", slots=slots)
    other = Batcher(lambda inputs: {"y": inputs["x"]}, params, name="m-1-classify",
                    slots=slots)

    def flood():
        while not stop.is_set():
            busy({"x": np.ones(1)})

    callers = [threading.Thread(target=flood) for _ in range(32)]
    for caller in callers:
        caller.start()
    try:
        for _ in range(20):  # the load is on: batches have run
            assert busy_calls.acquire(timeout=60)
        answers = [other({"x": np.full(1, float(i))}, deadline=deadlines.after(2.0))["y"][0]
                   for i in range(10)]
    finally:
        stop.set()
        for caller in callers:
            caller.join(60)
        busy.close()
        other.close()
    assert answers == [float(i) for i in range(10)]


def test_batch_metrics_are_tf_serving_batching_session_metrics():
    metrics = Metrics()
    metrics.observe_batch("m-serving_default", 5, [0.002, 0.0005])
    metrics.observe_batch("m-serving_default", 1, [0.0])
    text = metrics.exposition().decode()
    prefix = ":tensorflow:serving:batching_session:"
    labels = '{thread_pool_name="m-serving_default"}'
    assert f"{prefix}wrapped_run_count 2.0" in text
    assert f"{prefix}processed_batch_size_sum{labels} 6.0" in text
    assert f"{prefix}processed_batch_size_count{labels} 2.0" in text
    assert f"{prefix}queuing_latency_count{labels} 3.0" in text
    assert f"{prefix}queuing_latency_sum{labels} 2500.0" in text  # microseconds
    metrics.observe_batch("other-serving_default", 3, [0.001])
    metrics.observe_batch("m-classify", 7, [0.001])  # another signature: not counted
    assert batching_figures(metrics.exposition().decode(), "serving_default") == {
        "wrapped_run_count": 4.0, "processed_batch_size_sum": 9.0,
        "processed_batch_size_count": 3.0, "queuing_latency_sum": 3500.0,
        "queuing_latency_count": 4.0}


def test_a_failing_batch_observer_fails_no_request(caplog):
    def broken(*_):
        raise RuntimeError("metrics down")

    batcher = Batcher(lambda inputs: {"y": inputs["x"] + 1},
                      BatchingParameters(max_batch_size=4, num_batch_threads=1),
                      name="m-1-x", observe=broken)
    np.testing.assert_array_equal(batcher({"x": np.ones(2)})["y"], [2.0, 2.0])
    batcher.close()
    assert "m-1-x: batch metrics failed" in caplog.text


def test_batcher_passes_errors_to_every_caller():
    def fail(inputs):
        raise ValueError("model error")

    batcher = Batcher(fail, BatchingParameters(max_batch_size=4, num_batch_threads=1))
    with pytest.raises(ValueError, match="model error"):
        batcher({"x": np.ones(2)})
    batcher.close()


def test_closing_a_batcher_stops_its_threads_and_lets_its_function_go():
    """An unloaded version's memory is handed back right after its batchers close
    (serving/model_store.py): a batch thread still running then kept the version, its
    folded weights included (1.6 GiB of the main job's model), until the next load."""
    import gc
    import weakref

    class Model:  # a stand-in for a version: collected once nothing refers to it
        def __call__(self, inputs):
            return {"y": inputs["x"] + 1}

    model = Model()
    version = weakref.ref(model)
    batcher = Batcher(model, BatchingParameters(max_batch_size=4, num_batch_threads=3))
    np.testing.assert_array_equal(batcher({"x": np.ones(2)})["y"], [2.0, 2.0])
    threads = list(batcher._threads)
    batcher.close()
    assert not any(thread.is_alive() for thread in threads)
    del model, batcher
    gc.collect()
    assert version() is None


def test_a_request_that_reaches_a_closed_batcher_runs_alone():
    """A request that took the version just before it was unloaded: no batch thread is
    left to run it, so it runs in its caller's thread instead of waiting forever."""
    from serving import deadlines

    batcher = Batcher(lambda inputs: {"y": inputs["x"] * 3},
                      BatchingParameters(max_batch_size=4, num_batch_threads=1))
    batcher.close()
    result = batcher({"x": np.ones(2)}, deadline=deadlines.after(5))
    np.testing.assert_array_equal(result["y"], [3.0, 3.0])


def test_closing_runs_every_request_queued_before_it(caplog):
    """What is queued when a version is unloaded is still answered (as TF Serving drains
    a servable's requests before unloading it); a batch thread stuck past the wait is
    named in a warning."""
    release = threading.Event()

    def slow_double(inputs):
        release.wait()
        return {"y": inputs["x"] * 2}

    batcher = Batcher(slow_double, BatchingParameters(max_batch_size=1, num_batch_threads=1),
                      name="m-1-x")
    results = {}

    def call(i):
        results[i] = batcher({"x": np.full(1, float(i))})["y"]

    callers = [threading.Thread(target=call, args=(i,)) for i in range(5)]
    for caller in callers:
        caller.start()
    # one request runs (blocked), four are queued
    _wait_for(lambda: batcher._tasks.qsize() >= 4, 30, "four requests queued")
    batcher.close(timeout=0.2)  # the running request holds the thread past the wait
    assert "m-1-x: batch threads ['m-1-x-0'] still running 0.2s after close" in caplog.text
    release.set()
    for caller in callers:
        caller.join()
    assert {i: y.tolist() for i, y in results.items()} == {i: [2.0 * i] for i in range(5)}
    batcher._threads[0].join(5)  # it stops once its queue is run
    assert not batcher._threads[0].is_alive()


def _held_and_queued(rows: int):
    """A batcher of one batch of ``rows`` (one thread, room for one batch) whose thread is
    held in a first request of ``rows`` while a second one waits in the queue; returns
    (batcher, the release event, the two callers' threads)."""
    entered, release = threading.Event(), threading.Event()

    def stuck(inputs):
        entered.set()
        release.wait()
        return {"y": inputs["x"]}

    batcher = Batcher(stuck, BatchingParameters(max_batch_size=rows, max_enqueued_batches=1,
                                                num_batch_threads=1))
    callers = [threading.Thread(target=batcher, args=({"x": np.ones(rows)},), daemon=True)
               for _ in range(2)]
    callers[0].start()
    assert entered.wait(30)  # the batch thread is held in the first request
    callers[1].start()
    _wait_for(lambda: batcher._tasks.qsize() >= 1, 30, "the second request queued")
    return batcher, release, callers


def test_stopping_a_full_batcher_does_not_wait_for_room():
    """A version unloaded while its queue is full (overload, a stuck model): the stops
    used to wait for room in the queue, with no limit, holding up the unload (and the
    model poller) until a request left the queue."""
    from serving import deadlines

    batcher, release, callers = _held_and_queued(1)
    try:
        assert batcher._tasks.qsize() == 1  # the second fills the queue
        with pytest.raises(QueueFull):
            batcher({"x": np.ones(1)}, deadline=deadlines.after(5))
        stopping = threading.Thread(target=batcher.stop, daemon=True)
        stopping.start()
        stopping.join(10)
        assert not stopping.is_alive()
    finally:
        release.set()
    for caller in callers:
        caller.join(10)
    assert batcher.wait(time.monotonic() + 10, 10)


def test_the_queue_is_bounded_in_rows_as_in_batches():
    """max_enqueued_batches 1 of max_batch_size 4: room for one batch, 4 rows. Requests of
    4 rows each queued 4 of them (16 rows, four batches) before UNAVAILABLE."""
    from serving import deadlines

    batcher, release, callers = _held_and_queued(4)
    try:
        with pytest.raises(QueueFull):  # a second batch's rows
            batcher({"x": np.ones(4)}, deadline=deadlines.after(5))
        with pytest.raises(QueueFull):  # one more row is over too
            batcher({"x": np.ones(1)}, deadline=deadlines.after(5))
    finally:
        release.set()
    for caller in callers:
        caller.join(10)
    assert batcher._queued_rows == 0  # every row taken out of the count again
    np.testing.assert_array_equal(batcher({"x": np.ones(4)})["y"], np.ones(4))  # room again
    batcher.close()


def _two_concurrent(batcher, a, b):
    """Runs requests ``a`` and ``b`` on ``batcher`` at once (one batch); their answers or
    errors, in that order."""
    answers = [None, None]

    def call(i, inputs):
        try:
            answers[i] = batcher(inputs)
        except Exception as error:  # noqa: BLE001 - the test reads it
            answers[i] = error

    threads = [threading.Thread(target=call, args=(i, x)) for i, x in enumerate((a, b))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return answers


def test_a_request_whose_inputs_differ_in_rows_is_refused_before_it_is_queued():
    """Inputs of 2 and 1 rows (TensorFlow broadcasts them, run alone): merged with another
    caller's, one caller's `a` was paired with the other's `b`, and answers carried the
    other's rows. TF Serving's batching session refuses such a request."""
    batcher = Batcher(lambda x: {"sum": x["a"] + x["b"].sum(axis=1)},
                      BatchingParameters(max_batch_size=8, batch_timeout_micros=300_000,
                                         num_batch_threads=1))
    a = {"a": np.array([1.0, 2.0]), "b": np.array([[0.0, 0.0]])}
    b = {"a": np.array([10.0]), "b": np.array([[100.0, 100.0], [200.0, 200.0]])}
    with pytest.raises(ServingError, match="Batching Run\\(\\) input tensors must have "
                                           "equal 0th-dimension size") as refused:
        batcher(a)
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    good = {"a": np.array([3.0]), "b": np.array([[2.0, 2.0]])}
    answers = _two_concurrent(batcher, b, good)
    batcher.close()
    assert isinstance(answers[0], ServingError)
    np.testing.assert_array_equal(answers[1]["sum"], [7.0])  # the well-formed one answered


def test_a_batch_whose_outputs_are_not_one_row_per_input_row_fails():
    """An output of other rows than its inputs (a mask): sliced by request, A got B's row
    and B got nothing. TF Serving fails such a batch (FAILED_PRECONDITION)."""
    batcher = Batcher(lambda x: {"y": x["x"][x["x"] > 0]},
                      BatchingParameters(max_batch_size=8, batch_timeout_micros=300_000,
                                         num_batch_threads=1))
    answers = _two_concurrent(batcher, {"x": np.array([1.0, -1.0])}, {"x": np.array([2.0])})
    batcher.close()
    for answer in answers:
        assert isinstance(answer, ServingError), answer
        assert answer.code == grpc.StatusCode.FAILED_PRECONDITION
        assert "0th dimension does not equal the sum" in str(answer)


@pytest.mark.parametrize("text,message", [
    # TF Serving's bundle factory asks this whether or not batches are split
    ("max_batch_size { value: 32 } enable_large_batch_splitting { value: true } "
     "max_execution_batch_size { value: 16 } allowed_batch_sizes: [8, 16]",
     "Last entry in allowed_batch_sizes must match max_batch_size; last entry was 16"),
    # TensorFlow's shared batch scheduler
    ("max_batch_size { value: 8 } enable_large_batch_splitting { value: true } "
     "max_execution_batch_size { value: 64 }",
     "max_execution_batch_size 64 is larger than max_batch_size 8"),
])
def test_batching_files_tf_serving_refuses_are_refused(text, message):
    with pytest.raises(ValueError, match=message):
        BatchingParameters.parse(text)


def test_a_huge_batch_timeout_waits_as_long_as_the_clock_allows():
    """batch_timeout_micros 1e16 (valid in TF Serving): the batch thread raised an
    OverflowError on the first request and died, leaving its caller waiting forever."""
    batcher = Batcher(lambda x: {"y": x["x"] * 2},
                      BatchingParameters(max_batch_size=2, batch_timeout_micros=10**16,
                                         num_batch_threads=1))
    answers = _two_concurrent(batcher, {"x": np.array([1.0])}, {"x": np.array([2.0])})
    assert [a["y"].tolist() for a in answers] == [[2.0], [4.0]]  # a full batch runs at once
    assert all(thread.is_alive() for thread in batcher._threads)
    batcher.close()


def test_the_batch_timeout_counts_from_the_oldest_requests_arrival():
    """A request that waited behind a busy batch thread for longer than the timeout then
    waited a whole timeout more, alone (TF Serving's clock starts when the batch gets its
    first request). Here: queued behind a 1 s batch with a 0.5 s timeout, it runs as soon
    as the thread is free."""
    from serving import deadlines

    release = threading.Event()
    ran = []

    def fn(x):
        if x["x"][0] == 0:
            release.wait(30)
        ran.append(time.monotonic())
        return {"y": x["x"]}

    batcher = Batcher(fn, BatchingParameters(max_batch_size=4, batch_timeout_micros=30_000_000,
                                             num_batch_threads=1))
    first = threading.Thread(target=batcher, args=({"x": np.zeros(4)},))
    first.start()  # a full batch: runs at once and holds the thread
    _wait_for(lambda: batcher._tasks.qsize() == 0 and not ran and first.is_alive(), 30,
              "the first batch running")
    second = threading.Thread(target=batcher, args=({"x": np.ones(1)}, deadlines.after(60)))
    second.start()
    _wait_for(lambda: batcher._tasks.qsize() == 1, 30, "the second request queued")
    queued_at = batcher._tasks.queue[0].queued_at
    batcher._tasks.queue[0].queued_at = queued_at - 30  # as if it had waited 30 s already
    release.set()
    second.join(10)
    assert not second.is_alive()  # it did not wait another 30 s for company
    batcher.close()


@pytest.mark.parametrize("text,path", [
    # TF Serving's text-proto parser takes each: they were read here as metrics off, or
    # the default path, or refused
    ("prometheus_config { enable: True }", "/monitoring/prometheus/metrics"),
    ("prometheus_config { enable: t }", "/monitoring/prometheus/metrics"),
    ("prometheus_config { enable: true path: '/custom' }", "/custom"),
    ('prometheus_config { enable: true path: "" }', "/monitoring/prometheus/metrics"),
    ("prometheus_config: { enable: 1 path: \"/m\" } # on", "/m"),
    ("prometheus_config { enable: false path: '/custom' }", None),
    ("", None),
])
def test_monitoring_files_are_read_as_tf_serving_reads_them(tmp_path, text, path):
    config = tmp_path / "monitoring.config"
    config.write_text(text)
    assert read_monitoring_config(str(config)) == path


@pytest.mark.parametrize("text,message", [
    ("prometheus_config { enabled: true }", 'no field named "enabled"'),
    ("prometheus_config { enable: true path: 'metrics' }", "path must start with '/'"),
])
def test_monitoring_files_tf_serving_would_refuse_are_refused(tmp_path, text, message):
    config = tmp_path / "monitoring.config"
    config.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_monitoring_config(str(config))
