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
