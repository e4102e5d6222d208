"""TFX executors the replica launcher's tests run as replicas (through
``python -m tfx.scripts.run_executor``, as the Trainer's replicas run)."""
import json
import os
import threading

from tfx.dsl.components.base import base_executor


class WorkerFails(base_executor.BaseExecutor):
    """Worker replicas raise; the chief waits until it is stopped."""

    def Do(self, input_dict, output_dict, exec_properties):
        task = json.loads(os.environ["TF_CONFIG"])["task"]
        if task["type"] == "worker":
            raise RuntimeError(f"worker {task['index']} broke on purpose")
        print(f"chief waiting, pid {os.getpid()}", flush=True)
        threading.Event().wait()


_HELD = []  # the worker's end of the FIFO, open until its process exits


class ChiefFailsWorkerEnds(base_executor.BaseExecutor):
    """The worker ends well; the chief fails once the worker's process has exited: it reads
    the FIFO named by REPLICA_ORDER_FIFO until EOF, which comes when the worker's process,
    holding the other end, is gone."""

    def Do(self, input_dict, output_dict, exec_properties):
        fifo = os.environ["REPLICA_ORDER_FIFO"]
        if json.loads(os.environ["TF_CONFIG"])["task"]["type"] == "chief":
            with open(fifo, encoding="utf-8") as f:
                f.read()
            raise RuntimeError("chief broke on purpose")
        _HELD.append(open(fifo, "w", encoding="utf-8"))


class Waits(base_executor.BaseExecutor):
    """Every replica waits until it is stopped (a cluster that never forms)."""

    def Do(self, input_dict, output_dict, exec_properties):
        print(f"waiting, pid {os.getpid()}", flush=True)
        threading.Event().wait()


class Chatty(base_executor.BaseExecutor):
    """Prints 200 KiB (more than a pipe holds), as a long training run logs, and ends."""

    def Do(self, input_dict, output_dict, exec_properties):
        for n in range(4000):
            print(f"  line {n} " + "x" * 40, flush=True)


class ChiefIgnoresTerm(base_executor.BaseExecutor):
    """The chief ignores SIGTERM (as TensorFlow's collectives can hold it); on SIGTERM
    the worker writes whether the chief was still alive then to REPLICA_REPORT and ends.
    Each writes ``<REPLICA_REPORT>.<name>.ready`` (its pid) once its handler is set."""

    def Do(self, input_dict, output_dict, exec_properties):
        import signal

        report = os.environ["REPLICA_REPORT"]
        task = json.loads(os.environ["TF_CONFIG"])["task"]
        if task["type"] == "chief":
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        else:
            def on_term(signum, frame):
                with open(f"{report}.chief.ready") as f:
                    chief = int(f.read())
                try:
                    os.kill(chief, 0)
                    alive = "alive"
                except ProcessLookupError:
                    alive = "gone"
                with open(report, "w") as f:
                    f.write(alive)
                os._exit(0)
            signal.signal(signal.SIGTERM, on_term)
        with open(f"{report}.{task['type']}.ready", "w") as f:
            f.write(str(os.getpid()))
        threading.Event().wait()


SQUAT = """
import socket, sys, time
host, port, pid_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
deadline = time.monotonic() + 120
while True:  # until the chief's port is free (the supervisor stops the chief)
    sock = socket.socket()
    try:
        sock.bind((host, port))
        break
    except OSError:
        sock.close()
        if time.monotonic() > deadline:
            sys.exit(1)
        time.sleep(0.01)
sock.listen()
with open(pid_file, "w") as f:
    f.write(str(__import__("os").getpid()))
time.sleep(600)
"""


class BindsItsPort(base_executor.BaseExecutor):
    """Each replica binds its TF_CONFIG address, as TensorFlow's gRPC server does, and
    fails when it is taken. The worker's first start leaves a process that takes the
    chief's port once the chief is stopped (its pid in ``<REPLICA_REPORT>.squatter``),
    then fails; a second start of either ends well. The chief's first start waits."""

    def Do(self, input_dict, output_dict, exec_properties):
        import socket
        import subprocess
        import sys
        import time

        report = os.environ["REPLICA_REPORT"]
        config = json.loads(os.environ["TF_CONFIG"])
        kind, index = config["task"]["type"], config["task"]["index"]
        host, port = config["cluster"][kind][index].rsplit(":", 1)
        with open(f"{report}.{kind}.starts", "a") as f:
            f.write("x")
        with open(f"{report}.{kind}.starts") as f:
            start = len(f.read())
        sock = socket.socket()
        sock.bind((host, int(port)))  # OSError 98 when taken: the replica fails
        sock.listen()
        if start > 1:
            return
        if kind == "chief":
            open(f"{report}.chief.bound", "w").close()
            threading.Event().wait()
        while not os.path.exists(f"{report}.chief.bound"):
            time.sleep(0.05)
        chief_port = config["cluster"]["chief"][0].rsplit(":", 1)[1]
        subprocess.Popen([sys.executable, "-c", SQUAT, host, chief_port,
                          f"{report}.squatter"], start_new_session=True)
        raise RuntimeError("worker 0 fails once, leaving the chief's port to a squatter")
