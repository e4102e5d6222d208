"""The model store (serving/model_store.py): config errors name the file; a version being
unloaded says UNLOADING, and --num_unload_threads lets the poller go on meanwhile."""
import contextlib
import gc
import os
import shutil
import threading

import grpc
import numpy as np
import pytest
import tensorflow as tf

from serving.batching import BatchingParameters
from serving.errors import ServingError
from serving import model_store
from serving.memory import release_memory
from serving.model_store import LoadOptions, ModelSpec, ModelStore, read_model_config
from serving.servable import LoadSettings, Servable
from tests.support.gate_model import _wait_for, export_gate
from tests.support.serving_models import (export_file_reader, export_half_plus_two,
                                          write_model_config, write_predict_warmup,
                                          write_warmup)


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
class _Stuck:
    """Requests stuck in version 1's batch thread, reading a named pipe."""

    def __init__(self, store: ModelStore, pipe: str):
        self.store, self.pipe = store, pipe
        self.answers: list = []
        self.requests: list = []
        self._writer = None

    def release(self) -> None:
        """Opens the pipe for writing (O_RDWR: never blocks), so the reads go on."""
        if self._writer is None:
            self._writer = os.open(self.pipe, os.O_RDWR)
        for thread in self.requests:
            thread.join(60)

    def close(self) -> None:
        self.release()
        stopping = threading.Thread(target=self.store.stop, daemon=True)
        stopping.start()
        stopping.join(120)  # each version's batch threads get 60 s
        os.close(self._writer)
        assert not stopping.is_alive(), "store.stop() hangs"


@contextlib.contextmanager
def _stuck_version(tmp_path, unload_threads: int, serving=(1,), then=(2,), config="",
                   on_change=None):
    """A store serving the latest ``len(serving)`` versions of a model whose version 1 has
    its one batch thread stuck in a request (it reads a named pipe nobody writes to),
    another request queued behind it; the versions ``then`` are on disk, not yet polled.
    With ``config`` (a ``--model_config_file`` naming ``<tmp_path>/reader``), the store
    reads its models from there."""
    base, pipe = tmp_path / "reader", str(tmp_path / "pipe")
    os.mkfifo(pipe)
    for version in serving:
        export_file_reader(str(base), version)
    specs = (read_model_config(config) if config
             else [ModelSpec("reader", str(base), num_versions=len(serving))])
    store = ModelStore(specs, LoadOptions(
        servable=LoadSettings(batching=BatchingParameters(max_batch_size=1,
                                                          num_batch_threads=1)),
        file_system_poll_seconds=0, unload_threads=unload_threads),
        on_change=on_change, config_path=config)
    store.start()
    stuck = _Stuck(store, pipe)
    try:
        def request(servable):
            try:
                servable.run("serving_default", {"path": np.array([pipe.encode()], object)})
                stuck.answers.append("answered")
            except ServingError as error:
                stuck.answers.append(error.code)

        version_1 = store.get("reader", 1)
        stuck.requests = [threading.Thread(target=request, args=(version_1,), daemon=True)
                          for _ in range(2)]
        for thread in stuck.requests:
            thread.start()
        queue = version_1._batchers["serving_default"]._tasks
        # One request holds the batch thread, the other waits in the queue behind it.
        _wait_for(lambda: queue.qsize() >= 1, 30, "a request queued behind the stuck one")
        for version in then:
            export_file_reader(str(base), version)
        yield stuck
    finally:
        stuck.close()


def _states(store, name="reader") -> dict:
    return {version: status.state for version, status in store.status(name).items()}


def test_a_version_being_unloaded_reports_unloading_while_the_new_one_serves(tmp_path):
    """TF Serving's default (--num_unload_threads=0): the poller unloads, and waits for the
    old version's batch threads; meanwhile the old version reports UNLOADING (it said
    AVAILABLE while it already answered 404) and the new one answers."""
    with _stuck_version(tmp_path, unload_threads=0) as stuck:
        store = stuck.store
        poll = threading.Thread(target=store.poll_once, daemon=True)
        poll.start()
        _wait_for(lambda: _states(store).get(1) != "AVAILABLE", 30, "version 1 leaving AVAILABLE")
        assert _states(store) == {1: "UNLOADING", 2: "AVAILABLE"}  # one step, no gap
        assert poll.is_alive()  # still waiting for version 1's batch thread
        assert store.get("reader").version == 2
        with pytest.raises(ServingError, match="Specific\\(reader, 1\\)"):
            store.get("reader", 1)
        stuck.release()  # the stuck requests go on ...
        poll.join(60)  # ... and so does the poller
        assert not poll.is_alive()
        assert stuck.answers == [grpc.StatusCode.INVALID_ARGUMENT] * 2  # "Illegal seek"
        assert _states(store) == {1: "END", 2: "AVAILABLE"}


def test_unload_threads_let_the_poller_go_on(tmp_path):
    """--num_unload_threads=1: the poll returns while version 1 is still unloading; a
    version is not loaded again until its unload has ended."""
    with _stuck_version(tmp_path, unload_threads=1) as stuck:
        store = stuck.store
        store.poll_once()  # returns: version 1's wait runs on the unload thread
        assert _states(store) == {1: "UNLOADING", 2: "AVAILABLE"}
        shutil.rmtree(tmp_path / "reader" / "2")  # a rollback to version 1 ...
        store.poll_once()
        assert _states(store) == {1: "UNLOADING", 2: "AVAILABLE"}  # waits for its unload
        assert store.get("reader").version == 2  # and version 2 serves on meanwhile
        stuck.release()
        assert stuck.answers == [grpc.StatusCode.INVALID_ARGUMENT] * 2
        # END, then (the background poller may be first) loaded again
        _wait_for(lambda: _states(store)[1] != "UNLOADING", 60, "version 1 unloaded")
        store.poll_once()  # now version 1 loads again and version 2 goes
        _wait_for(lambda: _states(store) == {1: "AVAILABLE", 2: "END"}, 60,
                  "version 1 back and version 2 unloaded")
        assert store.get("reader").version == 1
    assert _states(store) == {1: "END", 2: "END"}  # stop() unloaded it


def test_versions_making_way_go_one_at_a_time_the_newest_serving_on(tmp_path):
    """Versions 1 and 2 make way for 3 and 4 at once (TF Serving's availability-preserving
    order): version 1 is unloaded first while version 2 serves on and says AVAILABLE (the
    poller waits for version 1's batch thread meanwhile); then 4 loads, 2 goes, 3 loads."""
    with _stuck_version(tmp_path, unload_threads=0, serving=(1, 2), then=(3, 4)) as stuck:
        store = stuck.store
        poll = threading.Thread(target=store.poll_once, daemon=True)
        poll.start()
        _wait_for(lambda: _states(store).get(1) == "UNLOADING", 30, "version 1 unloading")
        assert poll.is_alive()  # waiting for version 1's batch thread
        assert _states(store) == {1: "UNLOADING", 2: "AVAILABLE"}
        assert store.get("reader").version == 2
        with pytest.raises(ServingError, match="Specific\\(reader, 1\\)"):
            store.get("reader", 1)
        stuck.release()
        poll.join(60)
        assert _states(store) == {1: "END", 2: "END", 3: "AVAILABLE", 4: "AVAILABLE"}


def test_a_failed_version_no_longer_aspired_is_forgotten(tmp_path):
    """Version 2 fails to load (no variables: a half-finished copy) and waits to retry;
    version 3 comes. Version 2 said LOADING ("retrying in 60s") for good, and the poller
    then woke every 20 ms for the overdue retry; now it ends with its error, and is
    tried afresh once it is aspired again (version 3 deleted), as in TF Serving."""
    base = tmp_path / "reader"
    export_file_reader(str(base), 1)
    store = ModelStore([ModelSpec("reader", str(base))], LoadOptions(
        file_system_poll_seconds=0, load_retry_interval_seconds=60))
    store.start()
    try:
        shutil.rmtree(export_file_reader(str(base), 2) + "/variables")
        store.poll_once()
        failed = store.status("reader")[2]
        assert failed.state == "LOADING" and "retrying in 60s" in failed.error
        export_file_reader(str(base), 3)
        store.poll_once()
        states = store.status("reader")
        assert {v: s.state for v, s in states.items()} == {1: "END", 2: "END", 3: "AVAILABLE"}
        assert states[2].error.startswith(
            "not retried, no longer aspired; load attempt 1 failed: ")
        assert "retrying" not in states[2].error
        assert not store._models["reader"].failures  # no retry left to wake the poller for
        shutil.rmtree(base / "3")  # a rollback: version 2 is aspired again ...
        store.poll_once()
        states = store.status("reader")
        assert states[2].state == "LOADING"  # ... and tried afresh (it fails again)
        assert states[2].error.startswith("load attempt 1 failed, retrying in 60s")
        assert store.get("reader").version == 3  # the newest loaded one serves meanwhile
    finally:
        store.stop()


def test_a_model_removed_and_added_back_while_unloading_waits_for_its_unload(tmp_path):
    """--num_unload_threads=1: the model leaves the config while version 1 unloads on the
    pool, and comes back before that unload has ended. Its version 1 loads again only
    once the old one has ended: never two of one servable at once."""
    (tmp_path / "empty").mkdir()
    both = {"reader": tmp_path / "reader", "other": tmp_path / "empty"}
    config = tmp_path / "models.config"
    events = []
    write_model_config(config, both)
    with _stuck_version(tmp_path, unload_threads=1, then=(), config=str(config),
                        on_change=lambda *event: events.append(event)) as stuck:
        store = stuck.store
        write_model_config(config, {"other": both["other"]})
        store.reload_config()  # returns: version 1's wait runs on the unload thread
        assert store.model_names() == ["other"]
        with pytest.raises(ServingError, match="Latest\\(reader\\)"):
            store.get("reader")
        write_model_config(config, both)
        store.reload_config()  # back, but version 1 has not ended its unload
        with pytest.raises(ServingError, match="Latest\\(reader\\)"):
            store.get("reader")
        assert events[-1] == ("reader", 1, "UNLOADING")
        stuck.release()
        assert stuck.answers == [grpc.StatusCode.INVALID_ARGUMENT] * 2
        _wait_for(lambda: ("reader", 1, "END") in events, 60, "version 1 unloaded")
        store.poll_once()  # (the background poller may be first)
        assert store.get("reader").version == 1
        assert _states(store) == {1: "AVAILABLE"}
        assert [e[2] for e in events if e[:2] == ("reader", 1)] == [
            "LOADING", "AVAILABLE", "UNLOADING", "END", "LOADING", "AVAILABLE"]


@pytest.mark.parametrize("unload_threads", [0, 1])
def test_a_version_whose_unload_fails_still_ends(tmp_path, monkeypatch, unload_threads):
    """A servable's close() raising and a metrics callback raising on UNLOADING must not
    leave the version UNLOADING for good, nor refused for a reload until a restart."""
    closing = Servable.close

    def close_then_fail(servable, *args, **kwargs):
        closing(servable, *args, **kwargs)
        raise RuntimeError("closing failed")

    def report(name, version, state):
        if state == "UNLOADING":
            raise RuntimeError("metrics failed")

    monkeypatch.setattr(Servable, "close", close_then_fail)
    base = tmp_path / "reader"
    export_file_reader(str(base), 1)
    store = ModelStore([ModelSpec("reader", str(base))], LoadOptions(
        file_system_poll_seconds=0, unload_threads=unload_threads), on_change=report)
    store.start()
    try:
        export_file_reader(str(base), 2)
        store.poll_once()
        _wait_for(lambda: _states(store) == {1: "END", 2: "AVAILABLE"}, 60,
                  "version 1 ended")
        shutil.rmtree(base / "2")  # a rollback: version 1 loads again
        store.poll_once()
        _wait_for(lambda: _states(store) == {1: "AVAILABLE", 2: "END"}, 60,
                  "version 1 back")
        assert store.get("reader").version == 1
    finally:
        store.stop()
    assert _states(store) == {1: "END", 2: "END"}


def test_a_warmup_of_examples_with_a_context_loads(tmp_path):
    """A Regress warmup record in example_list_with_context: it read example_list only,
    found no example, and the load failed ("Input is empty.")."""
    from tensorflow_serving.apis import (input_pb2, model_pb2, prediction_log_pb2,
                                         regression_pb2)
    base = tmp_path / "half"
    version = export_half_plus_two(str(base), 1)
    context = tf.train.Example()
    context.features.feature["x"].float_list.value.append(4.0)
    request = regression_pb2.RegressionRequest(
        model_spec=model_pb2.ModelSpec(signature_name="regress"),
        input=input_pb2.Input(example_list_with_context=input_pb2.ExampleListWithContext(
            examples=[tf.train.Example()] * 2, context=context)))
    write_warmup(version, prediction_log_pb2.PredictionLog(
        regress_log=prediction_log_pb2.RegressLog(request=request)))
    store = ModelStore([ModelSpec("half", str(base))], LoadOptions(
        file_system_poll_seconds=0, max_load_retries=0))
    store.start()
    try:
        assert _states(store, "half") == {1: "AVAILABLE"}, store.status("half")
    finally:
        store.stop()


def test_a_failed_load_is_freed_before_its_heap_is_trimmed(tmp_path, monkeypatch):
    """A version whose warmup fails: the collection and malloc_trim after it must find the
    servable gone. They ran inside the except block, whose traceback (warm_up's frame)
    still held it, so its heap was handed back only at the next load or unload."""
    base = tmp_path / "reader"
    write_predict_warmup(export_file_reader(str(base), 1), "serving_default",
                         {"path": np.array([str(tmp_path / "missing").encode()], object)})
    alive_at_release = []

    def release_and_look():
        release_memory()
        alive_at_release.append(sum(isinstance(o, Servable) and o.path.startswith(str(base))
                                    for o in gc.get_objects()))

    monkeypatch.setattr(model_store, "release_memory", release_and_look)
    store = ModelStore([ModelSpec("reader", str(base))], LoadOptions(
        file_system_poll_seconds=0, max_load_retries=0))
    store.start()
    try:
        failed = store.status("reader")[1]
        assert failed.state == "END" and "NotFoundError" in failed.error
        assert alive_at_release == [0]
    finally:
        store.stop()


def test_load_threads_let_the_poller_go_on_while_a_version_loads(tmp_path):
    """--num_load_threads=2: gate's version 2 warms up for as long as its gate stays
    shut. Meanwhile its version 1 serves on, and the poller goes on: other's version 2
    loads and replaces version 1. Then gate leaves the config: once its load ends, the
    version is unloaded at once, never served."""
    (tmp_path / "gate-folder").mkdir()
    folder = str(tmp_path / "gate-folder")
    models = {"gate": tmp_path / "gate", "other": tmp_path / "other"}
    export_gate(str(models["gate"]), 1, folder)
    export_half_plus_two(str(models["other"]), 1)
    config = write_model_config(tmp_path / "models.config", models)
    events = []
    store = ModelStore(read_model_config(config), LoadOptions(
        file_system_poll_seconds=0.05, load_threads=2), config_path=config,
        on_change=lambda *event: events.append(event))
    store.start()
    try:
        export_gate(str(models["gate"]), 2, folder, held_load=True)
        _wait_for(lambda: ("gate", 2, "LOADING") in events, 30, "gate version 2 loading")
        export_half_plus_two(str(models["other"]), 2)
        _wait_for(lambda: ("other", 1, "END") in events, 60, "other version 2 serving")
        assert store.get("other").version == 2
        assert _states(store, "gate") == {1: "AVAILABLE", 2: "LOADING"}
        assert store.get("gate").version == 1
        write_model_config(tmp_path / "models.config", {"other": models["other"]})
        store.reload_config()
        assert store.model_names() == ["other"]
        (tmp_path / "gate-folder" / "open").touch()
        _wait_for(lambda: ("gate", 2, "END") in events, 60, "gate version 2 unloaded")
        assert [e[2] for e in events if e[:2] == ("gate", 2)] == [
            "LOADING", "UNLOADING", "END"]
        assert not store._loads
    finally:
        (tmp_path / "gate-folder" / "open").touch()
        store.stop()


def test_stop_waits_for_a_pool_load_and_serves_nothing_it_loads(tmp_path):
    """--num_load_threads=1: stop() waits for the load under way, as TF Serving, but the
    version it loads is unloaded unserved (before, it went live and retired the old
    version on the way out), and a load still queued is not run."""
    folder = tmp_path / "gate-folder"
    folder.mkdir()
    models = {"gate": tmp_path / "gate", "other": tmp_path / "other"}
    export_gate(str(models["gate"]), 1, str(folder))
    export_half_plus_two(str(models["other"]), 1)
    events = []
    store = ModelStore([ModelSpec(name, str(base)) for name, base in models.items()],
                       LoadOptions(file_system_poll_seconds=0.05, load_threads=1),
                       on_change=lambda *event: events.append(event))
    store.start()
    stopping = threading.Thread(target=store.stop, daemon=True)
    try:
        export_gate(str(models["gate"]), 2, str(folder), held_load=True)
        _wait_for(lambda: ("gate", 2, "LOADING") in events, 30, "gate version 2 loading")
        export_half_plus_two(str(models["other"]), 2)  # queued behind it: one thread
        _wait_for(lambda: ("other", 2, "LOADING") in events, 30, "other version 2 queued")
        stopping.start()
        _wait_for(lambda: store._stop.is_set(), 30, "stop() called")
        assert stopping.is_alive()  # waiting for gate's version 2
        (folder / "open").touch()
        stopping.join(120)
        assert not stopping.is_alive()
    finally:
        (folder / "open").touch()
        stopping.join(120)
    assert [e[2] for e in events if e[:2] == ("gate", 2)] == ["LOADING", "UNLOADING", "END"]
    assert [e[2] for e in events if e[:2] == ("other", 2)] == ["LOADING", "END"]
    assert store.status("other")[2].error == "not loaded: the server is stopping"
    assert _states(store, "gate") == {1: "END", 2: "END"}


def _predict_log(signature: str, tag: bytes):
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2
    request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(
        signature_name=signature))
    request.inputs["tag"].CopyFrom(tf.make_tensor_proto(np.array([tag], object)))
    return prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(
        request=request))


def test_a_folder_that_changes_during_a_failed_load_is_loaded_again(tmp_path):
    """What must change before a failed version is tried again is the folder as the load
    read it. Version 2's warmup (read at the start of its load) waits at the gate, then
    fails; meanwhile its warmup file is mended (a copy completing). When the fingerprint
    was taken after the failure, it held the mended file, and version 2 stayed END."""
    folder = tmp_path / "gate-folder"
    folder.mkdir()
    base = tmp_path / "gate"
    export_gate(str(base), 1, str(folder))
    staged = export_gate(str(tmp_path / "staging"), 2, str(folder))
    write_warmup(staged, _predict_log("serving_default", b"warmup"), _predict_log("nope", b"x"))
    events = []
    store = ModelStore([ModelSpec("gate", str(base))], LoadOptions(
        file_system_poll_seconds=0.05, max_load_retries=0),
        on_change=lambda *event: events.append(event))
    store.start()
    try:
        os.rename(staged, base / "2")
        _wait_for(lambda: (folder / "started-warmup").exists(), 60, "version 2's warmup")
        write_warmup(str(base / "2"), _predict_log("quick", b"mended"))
        (folder / "open").touch()
        _wait_for(lambda: ("gate", 2, "AVAILABLE") in events, 60, "version 2 loaded again")
        assert [e[2] for e in events if e[:2] == ("gate", 2)] == [
            "LOADING", "END", "LOADING", "AVAILABLE"]
        assert store.get("gate").version == 2
    finally:
        (folder / "open").touch()
        store.stop()


@pytest.mark.parametrize("version", [1, 2])
def test_a_start_refused_for_a_label_loads_nothing_and_leaves_no_thread_behind(tmp_path,
                                                                              version):
    """As TF Serving's ServerCore, labels are checked before anything loads, so at start
    any label refuses it, even one on a version on disk (the server used to start with
    it, and stock TF Serving then crash-looped on the same config); nothing is loaded and
    the load and unload pools are gone."""
    base = tmp_path / "half"
    export_half_plus_two(str(base), 1)
    events = []
    before = set(threading.enumerate())  # another test's leftovers are not this store's
    store = ModelStore([ModelSpec("half", str(base), labels={"stable": version})],
                       LoadOptions(file_system_poll_seconds=0.05, load_threads=2,
                                   unload_threads=1),
                       on_change=lambda *event: events.append(event))
    with pytest.raises(ValueError, match=f"label to version {version} of model half, which is "
                                         f"not currently available .*start with version "
                                         f"labels only with --allow_version_labels_for_"):
        store.start()
    assert events == []
    assert not [t.name for t in set(threading.enumerate()) - before
                if t.name.startswith(("model-load", "model-unload", "model-poller"))]


def test_an_error_escaping_a_pool_load_is_a_failed_load_not_a_lost_one(tmp_path,
                                                                       monkeypatch):
    """On the load pool nobody waits for the load's future: an error escaping the load
    (a bug) would leave the version LOADING for good and its key in _loads, so it never
    loaded again. It ends as a failed load, and the version loads once the error is gone."""
    building = ModelStore._build
    broken = [True]

    def build_or_fail(store, *args):
        if broken[0]:
            raise RuntimeError("a bug in the load")
        return building(store, *args)

    monkeypatch.setattr(ModelStore, "_build", build_or_fail)
    base = tmp_path / "half"
    export_half_plus_two(str(base), 1)
    store = ModelStore([ModelSpec("half", str(base))], LoadOptions(
        file_system_poll_seconds=0.05, load_threads=1, max_load_retries=1,
        load_retry_interval_seconds=0.2))
    store.start()
    try:
        _wait_for(lambda: "retrying" in (store.status("half")[1].error or ""), 60,
                  "the first attempt failed")
        assert "RuntimeError: a bug in the load" in store.status("half")[1].error
        broken[0] = False
        _wait_for(lambda: _states(store, "half") == {1: "AVAILABLE"}, 60, "the retry")
        assert not store._loads
    finally:
        store.stop()


def _started_reader(tmp_path):
    """(base path, started store) of a model with version 1, polled only when asked."""
    base = tmp_path / "reader"
    export_file_reader(str(base), 1)
    store = ModelStore([ModelSpec("reader", str(base))], LoadOptions(
        file_system_poll_seconds=0))
    store.start()
    return base, store


def test_a_base_path_that_vanishes_keeps_its_versions_served(tmp_path, caplog):
    """A remount or a model folder swapped by rename: while the base path is gone, the
    loaded version serves on (TF Serving's source errs rather than aspire to nothing),
    said once; a base path missing from the start serves nothing, as before."""
    base, store = _started_reader(tmp_path)
    try:
        os.rename(base, tmp_path / "reader.old")
        store.poll_once()
        store.poll_once()
        assert store.get("reader").version == 1
        assert {v: s.state for v, s in store.status("reader").items()} == {1: "AVAILABLE"}
        gone = [r.getMessage() for r in caplog.records if "Could not find base path" in
                r.getMessage()]
        assert gone == [f"Could not find base path {base} for servable reader: versions 1 "
                        f"stay served until it is back"]
        os.rename(tmp_path / "reader.old", base)
        export_file_reader(str(base), 2)
        store.poll_once()
        assert store.get("reader").version == 2
    finally:
        store.stop()


def test_version_folders_are_ascii_numbers_the_last_name_of_one_number_wins(tmp_path):
    """'²' and '٣' pass str.isdigit(): '²' stopped every poll (int() refuses it) and '٣'
    loaded as version 3. TF Serving takes ASCII digits within int64 only."""
    base = tmp_path / "reader"
    for name in ("1", "01"):
        export_file_reader(str(base), 1)
        os.rename(base / "1", base / f"tmp-{name}")
    os.rename(base / "tmp-1", base / "1")
    os.rename(base / "tmp-01", base / "01")
    for name in ("²", "٣", str(2 ** 63)):
        shutil.copytree(base / "1", base / name)
    assert model_store.versions_on_disk(str(base)) == {1: str(base / "1")}


def test_labels_at_start_with_the_flag_and_a_reload_whose_labels_fail_changes_nothing(
        tmp_path):
    """With allow_labels_for_unavailable a new label is taken at start (and serves once its
    version loads). A re-read config whose label names a version not available applies
    nothing, its policy neither, as TF Serving's ReloadConfig checks labels first."""
    base = tmp_path / "half"
    for version in (1, 2):
        export_half_plus_two(str(base), version)
    config = tmp_path / "models.config"

    def write(labels: dict, policy: str = "latest { num_versions: 1 }") -> None:
        staging = tmp_path / "models.config.new"
        staging.write_text(
            f'model_config_list {{ config {{ name: "half" base_path: "{base}" '
            f'model_platform: "tensorflow" model_version_policy {{ {policy} }} ' +
            "".join(f'version_labels {{ key: "{k}" value: {v} }} ' for k, v in labels.items())
            + "} }")
        os.replace(staging, config)

    write({"stable": 2})
    store = ModelStore(read_model_config(str(config)), LoadOptions(
        file_system_poll_seconds=0, config_poll_seconds=0,
        allow_labels_for_unavailable=True), config_path=str(config))
    store.start()
    try:
        assert store.get("half", label="stable").version == 2
        write({"stable": 7}, policy="all { }")
        store.reload_config()
        assert store._models["half"].spec.policy == "latest"  # not applied
        assert store.get("half", label="stable").version == 2
    finally:
        store.stop()


def test_a_model_removed_from_the_config_still_answers_status_with_its_end(tmp_path):
    """TF Serving's ServableStateMonitor keeps a removed model's versions at END (status
    200); here its status was 404 "Could not find any versions"."""
    export_half_plus_two(str(tmp_path / "half"), 1)
    export_half_plus_two(str(tmp_path / "other"), 3)
    config = tmp_path / "models.config"
    both = {"half": tmp_path / "half", "other": tmp_path / "other"}
    write_model_config(config, both)
    store = ModelStore(read_model_config(str(config)), LoadOptions(
        file_system_poll_seconds=0, config_poll_seconds=0), config_path=str(config))
    store.start()
    try:
        write_model_config(config, {"other": both["other"]})
        store.reload_config()
        assert _states(store, "half") == {1: "END"}
        with pytest.raises(ServingError, match=r"Latest\(half\)"):
            store.get("half")  # predictions: not found
        write_model_config(config, both)
        store.reload_config()  # back: loaded again
        assert store.get("half").version == 1 and _states(store, "half") == {1: "AVAILABLE"}
    finally:
        store.stop()


def test_latest_two_unloads_the_oldest_before_loading_a_third(tmp_path):
    """TF Serving's availability-preserving policy unloads a version no longer aspired
    first where an aspired one serves: latest 2 held three versions in memory for the
    whole load and warmup of the new one (version 1 went only after version 3 loaded).
    Latest 1 still keeps its version serving while the next one loads."""
    base = str(tmp_path / "half")
    export_half_plus_two(base, 1)
    export_half_plus_two(base, 2)
    loaded_at_load, stores = {}, []

    def on_change(name, version, state):
        if state == "LOADING":
            loaded_at_load[len(stores), version] = sorted(stores[-1]._models["half"].loaded)

    for versions, new in ((2, 3), (1, 4)):
        store = ModelStore([ModelSpec("half", base, num_versions=versions)],
                           LoadOptions(file_system_poll_seconds=0), on_change=on_change)
        stores.append(store)
        store.start()
        try:
            export_half_plus_two(base, new)
            store.poll_once()
        finally:
            store.stop()
    assert loaded_at_load[1, 3] == [2]  # version 1 was unloaded first
    assert loaded_at_load[2, 4] == [3]  # the only version served on while 4 loaded


def test_a_base_path_that_cannot_be_listed_is_said_once_a_minute(tmp_path, caplog,
                                                                  monkeypatch):
    """Permissions taken away, expired object-store credentials: every poll (each second
    by default) logged a traceback, 86,000 a day; it is said as a vanished base path is,
    and the loaded version serves on."""
    base, store = _started_reader(tmp_path)
    try:
        def denied(path):
            raise tf.errors.PermissionDeniedError(None, None, f"{path}: Permission denied")

        monkeypatch.setattr(tf.io.gfile, "listdir", denied)
        caplog.clear()
        for _ in range(3):
            store.poll_once()
        assert store.get("reader").version == 1
        said = [r for r in caplog.records if r.levelname == "ERROR"]
        assert [r.getMessage() for r in said] == [
            f"cannot list {base}: {base}: Permission denied for servable reader: versions 1 "
            f"stay served until it is back"]
        assert said[0].exc_info is None
    finally:
        store.stop()


def test_every_version_and_signature_shares_the_servers_batch_threads(tmp_path):
    """One pool of num_batch_threads for the whole server, as TF Serving's one shared
    batch scheduler: every batcher of every loaded version (two models here, two versions
    of one, four signatures each) takes its turn from the same semaphore."""
    for version in (1, 2):
        export_half_plus_two(str(tmp_path / "a"), version)
    export_half_plus_two(str(tmp_path / "b"), 1)
    settings = LoadSettings(batching=BatchingParameters(num_batch_threads=3))
    store = ModelStore([ModelSpec("a", str(tmp_path / "a"), num_versions=2),
                        ModelSpec("b", str(tmp_path / "b"))],
                       LoadOptions(servable=settings, file_system_poll_seconds=0))
    store.start()
    try:
        batchers = [batcher for name, version in (("a", 1), ("a", 2), ("b", 1))
                    for batcher in store.get(name, version)._batchers.values()]
        assert len(batchers) == 12
        assert {id(batcher._slots) for batcher in batchers} == {id(settings.batch_slots)}
        assert settings.batch_slots.count == 3
    finally:
        store.stop()
