"""The distributed Trainer's executor (components/distributed_trainer/executor.py): the
arguments each replica gets, and the model artifact keeps only the chief's model."""
import base64
import json
import os

from components.distributed_trainer import executor as distributed
from models import distribution
from tests.support.tf_configs import CHIEF_AND_WORKER


def test_replica_arguments_carry_this_steps_artifacts_and_properties():
    from tfx.scripts import run_executor
    from tfx.types import artifact_utils, standard_artifacts

    examples, model = standard_artifacts.Examples(), standard_artifacts.Model()
    examples.uri, model.uri = "/root/Transform/examples/3", "/root/Trainer/model/4"
    properties = {"custom_config": json.dumps({"distribution": {"workers": 2}}),
                  "run_fn": "models.trainer.run_fn"}
    args = distributed.executor_args({"examples": [examples]}, {"model": [model]},
                                      properties)
    parsed, _ = run_executor.parse_flags(["run_executor", *args])
    assert parsed.executor_class_path == "tfx.components.trainer.executor.GenericExecutor"
    inputs = artifact_utils.parse_artifact_dict(base64.b64decode(parsed.inputs_base64))
    outputs = artifact_utils.parse_artifact_dict(base64.b64decode(parsed.outputs_base64))
    assert inputs["examples"][0].uri == examples.uri and outputs["model"][0].uri == model.uri
    assert json.loads(base64.b64decode(parsed.exec_properties_base64)) == properties
    assert distributed.distribution_of(properties) == {"workers": 2}
    assert distributed.replica_log_dir("/root/p/Trainer/model_run/7") == \
        "/root/p/Trainer/replica_logs/7"


def test_the_model_artifact_keeps_only_the_chiefs_model(tmp_path):
    """A worker stopped between its export and its clean-up leaves a copy beside the
    chief's: the executor removes it."""
    chief = str(tmp_path / "model" / "Format-Serving")
    worker = distribution.write_dir(chief, dict(CHIEF_AND_WORKER,
                                                task={"type": "worker", "index": 0}))
    for folder in (chief, worker):
        os.makedirs(os.path.join(folder, "variables"))
    distributed.remove_worker_copies(chief)
    assert os.listdir(tmp_path / "model") == ["Format-Serving"]
