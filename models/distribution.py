"""Training on several machines: the cluster ``TF_CONFIG`` names, who the chief is, how
data is split among the replicas and where each replica may write.

Every replica (a process, a TFJob pod, a Vertex AI worker) runs the same ``run_fn``
with its own ``TF_CONFIG``; only the chief's outputs are kept (TensorFlow's
multi-worker guide): it exports the model and writes TensorBoard, the training stats and
the progress lines, the others write to a temporary folder they delete.
"""
from __future__ import annotations

import json
import os
from typing import Optional

import tensorflow as tf

BACKUP_DIR = "backup"  # under the model run folder: Keras BackupAndRestore's checkpoint


def cluster_config() -> Optional[dict]:
    """``TF_CONFIG`` when it names more than one task (a multi-worker cluster), else None."""
    raw = os.environ.get("TF_CONFIG", "")
    if not raw:
        return None
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not JSON ({error.msg}): {raw[:200]}") from None
    tasks = sum(len(addresses) for job, addresses in config.get("cluster", {}).items()
                if job in ("chief", "worker"))
    return config if tasks > 1 else None


def is_chief(config: Optional[dict]) -> bool:
    """The chief: task ``chief``, or worker 0 in a cluster without one; a single process
    is its own chief."""
    if not config:
        return True
    task = config.get("task", {})
    if "chief" in config.get("cluster", {}):
        return task.get("type") == "chief"
    return task.get("type") == "worker" and int(task.get("index", 0)) == 0


def task_name(config: Optional[dict]) -> str:
    """'chief', 'worker-1' (TF_CONFIG's task), or 'chief' for a single process."""
    if not config:
        return "chief"
    task = config.get("task", {})
    return task.get("type", "worker") if task.get("type") == "chief" else \
        f"{task.get('type', 'worker')}-{task.get('index', 0)}"


def local_replicas_gpu_problem(workers: int, gpus: int) -> Optional[str]:
    """Why ``trainer.workers`` replicas cannot run on this machine: each would see (and
    take the memory of) every one of its ``gpus`` GPUs; None when they can."""
    if workers <= 1 or not gpus:
        return None
    return (f"trainer.workers {workers} runs the replicas on this machine, and each would "
            f"take all {gpus} GPU(s): train with trainer.workers 1 (MirroredStrategy over "
            "this machine's GPUs), or on several machines with kubeflow.trainer_workers or "
            "vertex.trainer_workers")


def multi_worker_strategy() -> tf.distribute.Strategy:
    """MultiWorkerMirroredStrategy from ``TF_CONFIG``; created before any other TensorFlow
    op of the process ("Collective ops must be configured at program startup")."""
    return tf.distribute.MultiWorkerMirroredStrategy()


def shard_data(dataset: tf.data.Dataset, files: int, replicas: int) -> tf.data.Dataset:
    """Each worker reads its share: whole files when there are at least as many files as
    replicas (FILE), else every worker reads all files and keeps its share of the
    batches (DATA)."""
    options = tf.data.Options()
    policy = tf.data.experimental.AutoShardPolicy
    options.experimental_distribute.auto_shard_policy = \
        policy.FILE if files >= replicas else policy.DATA
    return dataset.with_options(options)


def _beside(path: str, task: str) -> str:
    """The hidden folder ``.<task>-<name>`` beside ``path``."""
    folder, name = os.path.split(path.rstrip("/"))
    return os.path.join(folder, f".{task}-{name}")


def write_dir(path: str, config: Optional[dict]) -> str:
    """``path`` for the chief, a temporary folder beside it for the others (delete it
    with ``remove_temporary``)."""
    return path if is_chief(config) else _beside(path, task_name(config))


def worker_copies(path: str) -> str:
    """The glob of every non-chief replica's ``write_dir(path)``."""
    return _beside(path, "*")


def remove_temporary(path: str, config: Optional[dict]) -> None:
    """Deletes what a non-chief replica wrote to ``write_dir(...)``."""
    if not is_chief(config) and tf.io.gfile.exists(path):
        tf.io.gfile.rmtree(path)


def remove_backup(model_run_dir: str) -> None:
    """Deletes the BackupAndRestore folder (Keras leaves the workers' temporary parts)."""
    path = os.path.join(model_run_dir, BACKUP_DIR)
    if tf.io.gfile.exists(path):
        tf.io.gfile.rmtree(path)


def barrier(strategy: tf.distribute.Strategy) -> None:
    """Returns once every replica got here (an all-reduce of one number): the others wait
    for the chief's export, which TFX's executor looks for in each replica."""
    value = strategy.reduce(tf.distribute.ReduceOp.SUM,
                            strategy.run(lambda: tf.constant(1.0)), axis=None)
    if int(value.numpy()) != strategy.num_replicas_in_sync:
        raise RuntimeError(f"barrier: {int(value.numpy())} of "
                           f"{strategy.num_replicas_in_sync} replicas answered")
