"""TFX's Trainer executor, run as several replicas of itself.

With ``custom_config["distribution"]["workers"]`` > 1 the step does not train: it runs
``python -m tfx.scripts.run_executor`` with TFX's own ``GenericExecutor`` and this
step's inputs, outputs and properties once per replica (as TFX's Vertex AI Trainer
does on Vertex), each with its ``TF_CONFIG``, through a launcher: processes on this
machine (``local``) or a Training Operator TFJob (``tfjob``). ``models/trainer.py``
makes every replica train its share and the chief export the one model.
"""
from __future__ import annotations

import base64
import json
import os
from typing import Any, Dict, List

from tfx import types
from tfx.components.trainer import executor as trainer_executor
from tfx.dsl.io import fileio
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import json_utils, path_utils

from models.distribution import local_replicas_gpu_problem, worker_copies

REPLICA_EXECUTOR = "tfx.components.trainer.executor.GenericExecutor"


def distribution_of(exec_properties: Dict[str, Any]) -> dict:
    """The ``distribution`` entry of the Trainer's custom_config ({} when absent)."""
    custom_config = json_utils.loads(
        exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY) or "null") or {}
    return custom_config.get("distribution") or {}


def executor_args(input_dict: Dict[str, List[types.Artifact]],
                  output_dict: Dict[str, List[types.Artifact]],
                  exec_properties: Dict[str, Any]) -> List[str]:
    """The arguments of ``python -m tfx.scripts.run_executor`` that run TFX's Trainer
    executor on exactly this step's artifacts and properties (base64: no quoting)."""
    def encode(text: str) -> str:
        return base64.b64encode(text.encode("utf-8")).decode("ascii")

    return ["--executor_class_path", REPLICA_EXECUTOR,
            "--inputs-base64", encode(artifact_utils.jsonify_artifact_dict(input_dict)),
            "--outputs-base64", encode(artifact_utils.jsonify_artifact_dict(output_dict)),
            "--exec-properties-base64",
            encode(json.dumps(exec_properties, sort_keys=True))]


def replica_log_dir(model_run_uri: str):
    """<pipeline root>/Trainer/replica_logs/<execution>: beside the model run artifact,
    which TFX deletes when the step fails (the logs say why); None for a URI (the
    launcher picks a local temporary folder)."""
    if "://" in model_run_uri:
        return None
    folder, execution = os.path.split(model_run_uri.rstrip("/"))
    return os.path.join(os.path.dirname(folder), "replica_logs", execution)


class Executor(trainer_executor.GenericExecutor):
    """Runs the replicas the distribution asks for; one replica: TFX's executor here."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        distribution = distribution_of(exec_properties)
        if distribution.get("workers", 1) <= 1:
            return super().Do(input_dict, output_dict, exec_properties)
        args = executor_args(input_dict, output_dict, exec_properties)
        launcher = distribution.get("launcher")
        if launcher == "local":
            from components.distributed_trainer import local_workers
            refuse_local_gpus(int(distribution.get("workers", 1)))
            local_workers.run_replicas(args, distribution, log_dir=replica_log_dir(
                artifact_utils.get_single_uri(
                    output_dict[standard_component_specs.MODEL_RUN_KEY])))
        elif launcher == "tfjob":
            from components.distributed_trainer import tfjob
            tfjob.run_replicas(args, distribution)
        else:
            raise ValueError(f"distribution launcher {launcher!r}: expected local or tfjob")
        model_dir = path_utils.serving_model_dir(artifact_utils.get_single_uri(
            output_dict[standard_component_specs.MODEL_KEY]))
        if not fileio.exists(model_dir):
            raise RuntimeError(f"the Trainer's replicas ended without the chief's model in "
                               f"{model_dir}")
        remove_worker_copies(model_dir)


def refuse_local_gpus(workers: int) -> None:
    """Refuses local replicas on a machine with GPUs (``local_replicas_gpu_problem``; the
    run's settings check refuses it first, local/preflight.py)."""
    import tensorflow as tf
    problem = local_replicas_gpu_problem(workers, len(tf.config.list_physical_devices("GPU")))
    if problem:
        raise ValueError(problem)


def remove_worker_copies(model_dir: str) -> None:
    """Deletes what a worker stopped between its export and its clean-up left beside the
    chief's model (``models.distribution.write_dir``): the artifact holds one model."""
    for path in fileio.glob(worker_copies(model_dir)):
        fileio.rmtree(path)
