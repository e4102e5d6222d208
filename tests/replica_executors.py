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


class ChiefFailsWorkerEnds(base_executor.BaseExecutor):
    """The worker ends well at once; the chief fails."""

    def Do(self, input_dict, output_dict, exec_properties):
        if json.loads(os.environ["TF_CONFIG"])["task"]["type"] == "chief":
            raise RuntimeError("chief broke on purpose")


class Waits(base_executor.BaseExecutor):
    """Every replica waits until it is stopped (a cluster that never forms)."""

    def Do(self, input_dict, output_dict, exec_properties):
        print(f"waiting, pid {os.getpid()}", flush=True)
        threading.Event().wait()
