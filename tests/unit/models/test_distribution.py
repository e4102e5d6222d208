"""TF_CONFIG on several replicas (models/distribution.py): one chief, and only the chief
writes where the model goes."""
import json
import os

import pytest

from components.distributed_trainer import local_workers
from models import distribution
from tests.support.tf_configs import CHIEF_AND_WORKER


def test_tf_config_of_each_replica_names_one_chief(monkeypatch):
    configs = local_workers.tf_configs([1000, 1001, 1002])
    assert configs[0]["cluster"] == {"chief": ["127.0.0.1:1000"],
                                     "worker": ["127.0.0.1:1001", "127.0.0.1:1002"]}
    seen = []
    for config in configs:
        monkeypatch.setenv("TF_CONFIG", json.dumps(config))
        cluster = distribution.cluster_config()
        seen.append((distribution.task_name(cluster), distribution.is_chief(cluster)))
    assert seen == [("chief", True), ("worker-0", False), ("worker-1", False)]
    # Without a chief task, worker 0 is the chief (TensorFlow's rule).
    workers = {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}}
    assert distribution.is_chief(workers)
    assert not distribution.is_chief(dict(workers, task={"type": "worker", "index": 1}))
    # One task (Vertex AI sets TF_CONFIG for a single replica too) is no cluster.
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"chief": ["a:1"]},
                                                "task": {"type": "chief", "index": 0}}))
    assert distribution.cluster_config() is None
    monkeypatch.setenv("TF_CONFIG", "{broken")
    with pytest.raises(ValueError, match="TF_CONFIG is not JSON"):
        distribution.cluster_config()


def test_only_the_chief_writes_where_the_model_goes(tmp_path):
    target = str(tmp_path / "model" / "Format-Serving")
    worker = dict(CHIEF_AND_WORKER, task={"type": "worker", "index": 0})
    assert distribution.write_dir(target, CHIEF_AND_WORKER) == target
    temporary = distribution.write_dir(target, worker)
    assert temporary != target and os.path.dirname(temporary) == os.path.dirname(target)
    os.makedirs(temporary)
    distribution.remove_temporary(temporary, worker)
    assert not os.path.exists(temporary)


def test_local_replicas_on_a_machine_with_gpus_are_refused_naming_the_settings():
    assert distribution.local_replicas_gpu_problem(1, 4) is None  # MirroredStrategy
    assert distribution.local_replicas_gpu_problem(3, 0) is None
    problem = distribution.local_replicas_gpu_problem(3, 2)
    assert "trainer.workers 3" in problem and "all 2 GPU(s)" in problem
    assert "kubeflow.trainer_workers" in problem and "vertex.trainer_workers" in problem
