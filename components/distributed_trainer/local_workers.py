"""Trainer replicas as processes on this machine, the way the platforms run them.

Each replica is ``python -m tfx.scripts.run_executor`` (TFX's Trainer executor) with its
own ``TF_CONFIG``: a chief and N - 1 workers on 127.0.0.1, as a Training Operator TFJob
or Vertex AI lays them out. A replica that fails is restarted with the others
(TensorFlow's coordination service takes a restarted task back only with the whole
cluster), on new free ports, at most ``max_restarts`` times; every restarted replica
resumes from the last backup (``models/trainer.py``). When the restarts are spent, or
the replicas outlive the deadline, they are stopped and the step fails with the
replica's exit and the end of its log.

Each replica's output goes to ``<name>.log`` in a folder named on stderr; the chief's
progress lines (``  Trainer ...``) are passed on to stderr as they come.
"""
from __future__ import annotations

import collections
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Callable, List, Optional, TextIO

HOST = "127.0.0.1"
POLL_SECONDS = 0.2  # how often the supervisor looks at its replicas
STOP_SECONDS = 20  # SIGTERM to SIGKILL when replicas are stopped
CHIEF_DONE_GRACE_SECONDS = 120  # workers still running after the chief ended well
TAIL_LINES = 30


def free_ports(count: int) -> List[int]:
    """``count`` distinct TCP ports free on 127.0.0.1 now."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind((HOST, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def tf_configs(ports: List[int]) -> List[dict]:
    """TF_CONFIG of each replica: the chief on ports[0], workers on the rest."""
    cluster = {"chief": [f"{HOST}:{ports[0]}"],
               "worker": [f"{HOST}:{port}" for port in ports[1:]]}
    tasks = [("chief", 0)] + [("worker", i) for i in range(len(ports) - 1)]
    return [{"cluster": cluster, "task": {"type": kind, "index": index}}
            for kind, index in tasks]


_LIBC = ctypes.CDLL("libc.so.6", use_errno=True)  # looked up here: not after fork
_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> Callable[[], None]:
    """The child's last step before exec: SIGKILL when the supervisor dies (even by kill
    -9), so no replica outlives the step; refuses to start when it is already gone."""
    def set_death_signal() -> None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:
            raise OSError("the Trainer step ended before its replica started")
    return set_death_signal


def describe_exit(code: int) -> str:
    """'exit 1', 'killed by SIGKILL'."""
    return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit {code}"


class Replica:
    """One replica process: started, restarted, its log and the tail of it."""

    def __init__(self, name: str, command: List[str], env: dict, log_path: str,
                 stream: TextIO):
        self.name, self.command, self.env, self.log_path = name, command, env, log_path
        self.stream, self.tail = stream, collections.deque(maxlen=TAIL_LINES)
        self.process: Optional[subprocess.Popen] = None
        self._copier: Optional[threading.Thread] = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        self.tail = collections.deque(maxlen=TAIL_LINES)  # the old copier keeps its own
        self.process = subprocess.Popen(
            self.command, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, preexec_fn=_die_with_parent(os.getpid()),
            start_new_session=True)
        self._copier = threading.Thread(target=self._copy_output,
                                        args=(self.process, self.tail), daemon=True)
        self._copier.start()
        print(f"  Trainer replica {self.name} started (pid {self.process.pid})",
              file=self.stream, flush=True)

    def _copy_output(self, process: subprocess.Popen, tail: collections.deque) -> None:
        """Copies the replica's output to its log until the pipe ends. A log that cannot
        be written (a full disk) is said once and the pipe still read: unread, it fills
        and the replica blocks in its next print, holding the cluster."""
        log = None
        try:
            log = open(self.log_path, "ab")
            log.write(f"--- {self.name} start {self.starts}, pid {process.pid}\n".encode())
        except OSError as error:
            log = self._log_lost(log, error)
        for raw in process.stdout:
            if log is not None:
                try:
                    log.write(raw)
                    log.flush()
                except OSError as error:
                    log = self._log_lost(log, error)
            line = raw.decode("utf-8", "replace").rstrip("\n")
            tail.append(line)
            if self.name == "chief" and line.startswith("  Trainer "):
                try:  # a closed or ASCII-only terminal must not stop the reading either
                    print(line, file=self.stream, flush=True)
                except (OSError, ValueError):  # UnicodeEncodeError is a ValueError
                    pass
        if log is not None:
            self._log_lost(log, None)

    def _log_lost(self, log, error: Optional[OSError]) -> None:
        """Closes ``log`` (an error closing it is dropped); says ``error``, if any."""
        try:
            if log is not None:
                log.close()
        except OSError:
            pass
        if error is not None:
            print(f"  Trainer replica {self.name}'s log {self.log_path} cannot be written "
                  f"({error}); its output is read on, and its last {TAIL_LINES} lines "
                  f"kept", file=self.stream, flush=True)
        return None

    def last_lines(self) -> str:
        """The end of the current start's output, once its pipe is drained."""
        if self._copier is not None:
            self._copier.join(5)
        return "\n".join(f"    {line}" for line in list(self.tail))

    def poll(self) -> Optional[int]:
        return self.process.poll() if self.process else None



def stop_all(replicas: List[Replica]) -> None:
    """SIGTERM to every running replica, then one wait of STOP_SECONDS for them all, then
    SIGKILL to those left (one at a time, a replica that ignores SIGTERM cost each of
    the others that long before it was even told)."""
    running = [r.process for r in replicas if r.process and r.process.poll() is None]
    for process in running:
        process.terminate()
    deadline = time.monotonic() + STOP_SECONDS
    for process in running:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def assign_ports(replicas: List[Replica]) -> None:
    """A new TF_CONFIG for every replica (the chief first, then the workers in order), on
    ports free now."""
    for replica, tf_config in zip(replicas, tf_configs(free_ports(len(replicas)))):
        replica.env = dict(replica.env, TF_CONFIG=json.dumps(tf_config))


def run_replicas(executor_args: List[str], distribution: dict,
                 log_dir: Optional[str] = None, stream: Optional[TextIO] = None,
                 wrap: Callable[[int], List[str]] = lambda index: []) -> None:
    """Runs ``distribution["workers"]`` replicas of ``python -m tfx.scripts.run_executor
    <executor_args>`` until the chief ends well; raises RuntimeError when they fail after
    ``distribution["max_restarts"]`` restarts or outlive ``distribution["deadline_minutes"]``
    (0: none). ``wrap(i)``: a command prefix for replica i (the benchmark pins each one to
    a core with taskset)."""
    stream = stream or sys.stderr
    workers, max_restarts = int(distribution["workers"]), int(
        distribution.get("max_restarts", 0))
    log_dir = log_dir or tempfile.mkdtemp(prefix="trainer-replicas-")
    os.makedirs(log_dir, exist_ok=True)
    command = [sys.executable, "-m", "tfx.scripts.run_executor", *executor_args]
    replicas = []
    for index in range(workers):
        name = "chief" if index == 0 else f"worker-{index - 1}"
        replicas.append(Replica(name, wrap(index) + command,
                                dict(os.environ, TF_USE_LEGACY_KERAS="1"),
                                os.path.join(log_dir, f"{name}.log"), stream))
    print(f"  Trainer: {workers} replicas on {HOST} (a chief and {workers - 1} "
          f"worker{'s' * (workers > 2)}, up to {max_restarts} restarts), logs in {log_dir}",
          file=stream, flush=True)
    minutes = float(distribution.get("deadline_minutes") or 0)
    try:
        _supervise(replicas, max_restarts, stream,
                   deadline=time.monotonic() + 60 * minutes if minutes else None)
    finally:
        stop_all(replicas)


def _supervise(replicas: List[Replica], max_restarts: int, stream: TextIO,
               deadline: Optional[float] = None) -> None:
    """Until every replica ended well (or the chief did, CHIEF_DONE_GRACE_SECONDS ago).

    A failed replica restarts the whole cluster: TensorFlow's coordination service does
    not take a restarted task back while the others run, and the others' collectives
    fail anyway; one restart per incident, as Vertex AI's restart_job_on_worker_restart.
    Each start of the cluster takes new free ports (``assign_ports``)."""
    assign_ports(replicas)
    for replica in replicas:
        replica.start()
    restarts, done, chief_done_at = 0, set(), None
    while len(done) < len(replicas):
        if deadline is not None and time.monotonic() > deadline:
            raise RuntimeError("the Trainer's replicas ran past trainer.deadline_minutes; "
                               "stopped")
        failed = None
        for replica in replicas:
            code = None if replica.name in done else replica.poll()
            if code == 0:
                done.add(replica.name)
                chief_done_at = chief_done_at or (time.monotonic()
                                                  if replica.name == "chief" else None)
            elif code is not None and chief_done_at is not None:
                print(f"  Trainer replica {replica.name} ended with "  # the model is
                      f"{describe_exit(code)} after the chief finished",  # exported
                      file=stream, flush=True)
                done.add(replica.name)
            elif code is not None:
                failed = failed or (replica, code)
        if failed:
            replica, code = failed
            if restarts >= max_restarts or done:
                # after another replica ended well, a restarted cluster could not form
                why = (f"after {', '.join(sorted(done))} ended" if done else
                       f"and the {max_restarts} restarts of trainer.max_restarts are used")
                raise RuntimeError(
                    f"Trainer replica {replica.name} failed ({describe_exit(code)}) {why}; "
                    f"its log: {replica.log_path}; last lines:\n{replica.last_lines()}")
            restarts += 1
            print(f"  Trainer replica {replica.name} ended with {describe_exit(code)}: "
                  f"restarting all {len(replicas)} replicas (restart {restarts} of "
                  f"{max_restarts}); they resume from the last backup",
                  file=stream, flush=True)
            stop_all(replicas)
            assign_ports(replicas)  # one taken meanwhile would fail every later start
            for other in replicas:
                other.start()
        if chief_done_at is not None and \
                time.monotonic() - chief_done_at > CHIEF_DONE_GRACE_SECONDS:
            late = [r.name for r in replicas if r.name not in done]
            print(f"  Trainer replicas {', '.join(late)} still run "
                  f"{CHIEF_DONE_GRACE_SECONDS}s after the chief finished: stopping them",
                  file=stream, flush=True)
            return
        time.sleep(POLL_SECONDS)
