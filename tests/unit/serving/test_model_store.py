"""TF Serving's model config file (serving/model_store.py): errors name the file."""
import os

import grpc
import pytest

from serving.errors import ServingError
from serving.model_store import read_model_config


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


# -- unloading (TF Serving's UNLOADING state and --num_unload_threads) -----------------------
def _stuck_version(tmp_path, unload_threads: int):
    """A store serving version 1 of a model whose batch thread is stuck in a request (it
    reads a named pipe nobody writes to) with another request queued behind it; version
    2 is on disk, not yet polled. Returns the store, the pipe and the request threads."""
    import threading

    import numpy as np

    from serving.batching import BatchingParameters
    from serving.model_store import LoadOptions, ModelSpec, ModelStore
    from serving.servable import LoadSettings
    from tests.support.serving_models import export_file_reader

    base, pipe = tmp_path / "reader", str(tmp_path / "pipe")
    os.mkfifo(pipe)
    export_file_reader(str(base), 1)
    store = ModelStore([ModelSpec("reader", str(base))], LoadOptions(
        servable=LoadSettings(batching=BatchingParameters(max_batch_size=1,
                                                          num_batch_threads=1)),
        file_system_poll_seconds=0, unload_threads=unload_threads))
    store.start()
    version_1 = store.get("reader")
    answers = []

    def request():
        try:
            version_1.run("serving_default", {"path": np.array([pipe.encode()], object)})
            answers.append("answered")
        except ServingError as error:
            answers.append(error.code)

    requests = [threading.Thread(target=request) for _ in range(2)]
    for thread in requests:
        thread.start()
    queue = version_1._batchers["serving_default"]._tasks
    while queue.qsize() < 1:  # one request holds the batch thread, one waits behind it
        threading.Event().wait(0.01)
    export_file_reader(str(base), 2)
    return store, pipe, requests, answers


def _states(store) -> dict:
    return {version: status.state for version, status in store.status("reader").items()}


def _wait_for(condition, seconds: float = 60.0) -> bool:
    import threading
    import time

    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        threading.Event().wait(0.01)
    return condition()


def test_a_version_being_unloaded_reports_unloading_while_the_new_one_serves(tmp_path):
    """TF Serving's default (--num_unload_threads=0): the poller unloads, and waits for the
    old version's batch threads; meanwhile the old version reports UNLOADING (it said
    AVAILABLE while it already answered 404) and the new one answers."""
    import threading

    store, pipe, requests, answers = _stuck_version(tmp_path, unload_threads=0)
    poll = threading.Thread(target=store.poll_once)
    poll.start()
    assert _wait_for(lambda: _states(store).get(1) != "AVAILABLE", 30), _states(store)
    assert _states(store) == {1: "UNLOADING", 2: "AVAILABLE"}
    assert poll.is_alive()  # still waiting for version 1's batch thread
    assert store.get("reader").version == 2
    with pytest.raises(ServingError, match="Specific\\(reader, 1\\)"):
        store.get("reader", 1)
    writer = os.open(pipe, os.O_WRONLY)  # the stuck requests go on
    for thread in requests + [poll]:
        thread.join(60)
    os.close(writer)
    assert answers == [grpc.StatusCode.INVALID_ARGUMENT] * 2  # "Illegal seek": answered
    assert _states(store) == {1: "END", 2: "AVAILABLE"}
    store.stop()


def test_unload_threads_let_the_poller_go_on(tmp_path):
    """--num_unload_threads=1: the poll returns while version 1 is still unloading; a
    version is not loaded again until its unload has ended."""
    import shutil

    store, pipe, requests, answers = _stuck_version(tmp_path, unload_threads=1)
    store.poll_once()  # returns: version 1's wait runs on the unload thread
    assert _states(store) == {1: "UNLOADING", 2: "AVAILABLE"}
    shutil.rmtree(tmp_path / "reader" / "2")  # a rollback to version 1 ...
    store.poll_once()
    assert _states(store) == {1: "UNLOADING", 2: "AVAILABLE"}  # ... waits for its unload
    assert store.get("reader").version == 2  # and version 2 serves on meanwhile
    writer = os.open(pipe, os.O_WRONLY)
    for thread in requests:
        thread.join(60)
    os.close(writer)
    assert answers == [grpc.StatusCode.INVALID_ARGUMENT] * 2
    assert _wait_for(lambda: _states(store)[1] == "END"), _states(store)
    store.poll_once()  # now version 1 loads again and version 2 goes
    assert _wait_for(lambda: _states(store) == {1: "AVAILABLE", 2: "END"}), _states(store)
    assert store.get("reader").version == 1
    store.stop()
    assert _states(store) == {1: "END", 2: "END"}
