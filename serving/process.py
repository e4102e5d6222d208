"""Runs the local server in a child process on free ports, and waits until it serves;
``alive(pid)``, for who left a record of a process (a push's copy, a run's history).

Tested with a model server: tests/serving/test_server.py, tests/serving/test_drain.py.

With ``--ssl_config_file``, give ``ca_file`` (and, if the server verifies clients,
``client_cert``/``client_key``): readiness is then polled over https."""
from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from typing import List, Optional

import requests


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> List[int]:
    """``count`` distinct free ports (held open together while chosen: one by one, the
    kernel could hand the same port out twice)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


PARENT_ENV = "BERT_SERVING_DIE_WITH"  # set by ServerProcess: the pid its child dies with


def die_with_parent() -> None:
    """In a server ServerProcess started: SIGTERM (its drain, then exit) once the process
    that started it dies, even by kill -9 or an OOM kill, so no server is left holding its
    ports and the model's memory (Linux's PR_SET_PDEATHSIG). The signal follows the
    thread that started it: enter ServerProcess on a thread that outlives the server
    (the serving check and the tests use the main thread)."""
    parent = os.environ.pop(PARENT_ENV, "")
    if not parent or not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    if ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0) != 0:  # SET_PDEATHSIG
        logging.getLogger(__name__).warning("cannot tie this server to process %s: it "
                                            "outlives it", parent)
    elif os.getppid() != int(parent):  # it died before the prctl
        os.kill(os.getpid(), signal.SIGTERM)


class ServerProcess:
    """``with ServerProcess(["--model_name", "m", "--model_base_path", p]) as server:``

    ``server.grpc_address`` and ``server.rest_url`` are ready once the context is
    entered: every model in ``wait_for`` has an AVAILABLE version. ``ca_file`` means the
    REST port speaks TLS (this server with ``--ssl_config_file``; TF Serving's REST is
    plain HTTP, so leave it out there). This server runs with ``--drain_delay_seconds 0``
    unless ``flags`` set it: nothing routes traffic to the child.
    """

    def __init__(self, flags: List[str], wait_for: Optional[List[str]] = None,
                 timeout: float = 180.0, executable: Optional[List[str]] = None,
                 env: Optional[dict] = None, token: Optional[str] = None,
                 ca_file: Optional[str] = None, client_cert: Optional[str] = None,
                 client_key: Optional[str] = None):
        self.grpc_port, self.rest_port = free_ports(2)
        self.flags = ["--port", str(self.grpc_port), "--rest_api_port", str(self.rest_port),
                      *flags]
        if executable is None and not any(f.startswith("--drain_delay_seconds")
                                          for f in flags):
            # No load balancer sends to this child: stopping it needs no drain delay.
            self.flags += ["--drain_delay_seconds", "0"]
        self.wait_for = wait_for if wait_for is not None else _model_names(flags)
        self.timeout = timeout
        self.command = (executable or [sys.executable, "-m", "serving.server"]) + self.flags
        self.env = env
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.ca_file = ca_file
        self.client_cert = (client_cert, client_key) if client_cert else None
        self.process: Optional[subprocess.Popen] = None
        self._log = tempfile.TemporaryFile()

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def rest_url(self) -> str:
        return f"{'https' if self.ca_file else 'http'}://127.0.0.1:{self.rest_port}"

    def __enter__(self) -> "ServerProcess":
        repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(self.env or os.environ, **{PARENT_ENV: str(os.getpid())})
        self.process = subprocess.Popen(self.command, stdout=self._log,
                                        stderr=subprocess.STDOUT, cwd=repo, env=env)
        try:
            self._wait_until_ready()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        self._log.seek(0)
        return self._log.read().decode("utf-8", errors="replace")

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.timeout
        pending = list(self.wait_for)
        while pending:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n"
                                   f"{self.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"server not ready after {self.timeout:.0f}s:\n"
                                   f"{self.log()[-3000:]}")
            try:
                status = requests.get(f"{self.rest_url}/v1/models/{pending[0]}", timeout=2,
                                      headers=self.headers, verify=self.ca_file or True,
                                      cert=self.client_cert)
                versions = status.json().get("model_version_status", [])
                if any(v["state"] == "AVAILABLE" for v in versions):
                    pending.pop(0)
                    continue
                failed = [v for v in versions if v["state"] == "END"
                          and v.get("status", {}).get("error_message")]
                if failed and len(failed) == len(versions):
                    raise RuntimeError(
                        f"model {pending[0]} version {failed[0]['version']} failed to load: "
                        f"{failed[0]['status']['error_message']}")
            except requests.exceptions.SSLError as error:  # a wrong CA or client cert
                raise RuntimeError(f"TLS to {self.rest_url} failed (ca_file, client_cert?): "
                                   f"{error}") from None
            except (requests.ConnectionError, ValueError):
                pass
            time.sleep(0.2)  # polling the child's readiness, not timing a test


def _flag_value(flags: List[str], name: str) -> Optional[str]:
    """The last value of ``--name VALUE`` or ``--name=VALUE`` in ``flags``, or None."""
    value = None
    for i, flag in enumerate(flags):
        if flag == f"--{name}" and i + 1 < len(flags):
            value = flags[i + 1]
        elif flag.startswith(f"--{name}="):
            value = flag.split("=", 1)[1]
    return value


def _model_names(flags: List[str]) -> List[str]:
    config_file = _flag_value(flags, "model_config_file")
    if config_file:
        from serving.model_store import read_model_config
        return [s.name for s in read_model_config(config_file)]
    return [_flag_value(flags, "model_name") or "default"]
