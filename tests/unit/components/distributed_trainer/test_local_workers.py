"""The local replica launcher (components/distributed_trainer/local_workers.py), with real
``tfx.scripts.run_executor`` processes: failing replicas, deadlines, restarts."""
import os
import re
import sys

import pytest

from components.distributed_trainer import local_workers


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_a_replica_that_keeps_failing_fails_the_step_and_stops_the_others(tmp_path):
    """Real replica processes: worker-0 raises at every start; after trainer.max_restarts
    (1) the step fails naming it, with its log, and the chief is stopped."""
    args = _replica_args("WorkerFails")
    with pytest.raises(RuntimeError) as failure:
        local_workers.run_replicas(args, {"workers": 2, "max_restarts": 1},
                                   log_dir=str(tmp_path))
    message = str(failure.value)
    assert "replica worker-0 failed (exit 1)" in message and "1 restarts" in message
    assert "worker 0 broke on purpose" in message
    worker_log = (tmp_path / "worker-0.log").read_text()
    assert worker_log.count("--- worker-0 start") == 2  # started, restarted once
    chief_log = (tmp_path / "chief.log").read_text()
    assert chief_log.count("--- chief start") == 2  # restarted with it: the whole cluster
    chiefs = [int(pid) for pid in re.findall(r"chief waiting, pid (\d+)", chief_log)]
    assert chiefs and not any(map(_alive, chiefs))


def _replica_args(executor: str) -> list:
    return ["--executor_class_path", f"tests.support.replica_executors.{executor}",
            "--inputs", "{}", "--outputs", "{}", "--exec-properties", "{}"]


def test_replicas_past_the_deadline_are_stopped_and_fail_the_step(tmp_path):
    """The replicas' pids come from the launcher's own log lines, not from the replicas:
    on a busy machine a replica was still importing TFX at the 15 s deadline and had
    printed nothing (the test then found no pid and failed)."""
    with pytest.raises(RuntimeError, match="ran past trainer.deadline_minutes"):
        local_workers.run_replicas(_replica_args("Waits"),
                                   {"workers": 2, "max_restarts": 1,
                                    "deadline_minutes": 0.25}, log_dir=str(tmp_path))
    logs = "".join((tmp_path / name).read_text() for name in ("chief.log", "worker-0.log"))
    pids = [int(p) for p in re.findall(r"^--- (?:chief|worker-0) start 1, pid (\d+)$", logs,
                                       re.MULTILINE)]
    assert len(pids) == 2 and not any(map(_alive, pids))
    assert "start 2" not in logs  # a deadline stops the step: nothing is restarted


def test_a_replica_failing_after_another_ended_well_is_not_restarted(tmp_path, monkeypatch):
    """A restarted replica would wait forever for a cluster that cannot form again: the
    step fails at once, whatever restarts are left. (The chief fails only once the worker's
    process is gone: in a busy CI run it once failed first and was restarted.)"""
    os.mkfifo(tmp_path / "order")
    monkeypatch.setenv("REPLICA_ORDER_FIFO", str(tmp_path / "order"))
    args = _replica_args("ChiefFailsWorkerEnds")
    with pytest.raises(RuntimeError, match=r"replica chief failed \(exit 1\) after "
                                           r"worker-0 ended"):
        local_workers.run_replicas(args, {"workers": 2, "max_restarts": 3},
                                   log_dir=str(tmp_path))
    assert (tmp_path / "worker-0.log").read_text().count("--- worker-0 start") == 1


def test_a_replica_log_that_cannot_be_written_does_not_stall_the_replica(tmp_path):
    """chief.log on a full disk (a link to /dev/full: real ENOSPC): the thread copying
    the chief's output died at its first write, nothing read the pipe any more, and once
    it was full the chief blocked in print until trainer.deadline_minutes (24 h by
    default). Its output is still read (the tail kept in memory), said once."""
    import io

    os.symlink("/dev/full", tmp_path / "chief.log")
    stream = io.StringIO()
    local_workers.run_replicas(  # stalled, it raised "ran past trainer.deadline_minutes"
        _replica_args("Chatty"), {"workers": 2, "max_restarts": 0, "deadline_minutes": 2},
        log_dir=str(tmp_path), stream=stream)
    assert f"replica chief's log {tmp_path / 'chief.log'} cannot be written " \
           f"([Errno 28] No space left on device)" in stream.getvalue()
    assert (tmp_path / "worker-0.log").read_text().count("  line ") == 4000


def test_replicas_are_stopped_together(tmp_path, monkeypatch):
    """Stopped one at a time, each replica that ignored SIGTERM (TensorFlow's collectives
    can) cost STOP_SECONDS before the next was even told: every restart, deadline and
    Ctrl-C waited that long per replica. All get SIGTERM first now, then one wait: the
    worker, told to stop, finds the chief (which ignores SIGTERM) still alive."""
    import json

    from tests.support.gate_model import _wait_for

    monkeypatch.setattr(local_workers, "STOP_SECONDS", 3)
    report = tmp_path / "report"
    command = [sys.executable, "-m", "tfx.scripts.run_executor",
               *_replica_args("ChiefIgnoresTerm")]
    replicas = []
    for config in local_workers.tf_configs(local_workers.free_ports(2)):
        name = config["task"]["type"]
        env = dict(os.environ, TF_CONFIG=json.dumps(config), REPLICA_REPORT=str(report))
        replicas.append(local_workers.Replica(name, command, env, str(tmp_path / name),
                                              sys.stderr))
    try:
        for replica in replicas:
            replica.start()
        for name in ("chief", "worker"):
            _wait_for(lambda: os.path.exists(f"{report}.{name}.ready"), 120, name)
        local_workers.stop_all(replicas)
    finally:
        for replica in replicas:
            if replica.poll() is None:
                replica.process.kill()
    assert report.read_text() == "alive"
    assert all(replica.poll() is not None for replica in replicas)


def test_a_restart_takes_new_ports(tmp_path, monkeypatch):
    """The replicas kept their ports across restarts: a port another process took
    meanwhile (here, once the chief was stopped) failed every later start of that
    replica, and the restarts ran out. Each (re)start now has new free ports."""
    import signal

    from tests.support.gate_model import _wait_for

    report = tmp_path / "report"
    monkeypatch.setenv("REPLICA_REPORT", str(report))
    try:
        local_workers.run_replicas(_replica_args("BindsItsPort"),
                                   {"workers": 2, "max_restarts": 2},
                                   log_dir=str(tmp_path))
        _wait_for(lambda: os.path.exists(f"{report}.squatter"), 60, "the squatter")
        assert (tmp_path / "chief.log").read_text().count("--- chief start") == 2
    finally:
        if os.path.exists(f"{report}.squatter"):
            os.kill(int(open(f"{report}.squatter").read()), signal.SIGKILL)
