"""InfraValidator's executor (components/kubernetes_infra_validator/executor.py) makes the
hardened runner only for Kubernetes."""
import pytest
from tfx.proto import infra_validator_pb2

from components.kubernetes_infra_validator.executor import make_runner


def test_executor_makes_the_hardened_runner_only_for_kubernetes():
    local = infra_validator_pb2.ServingSpec(local_docker=infra_validator_pb2.LocalDockerConfig())
    with pytest.raises(ValueError, match="not on 'local_docker'"):
        make_runner("/m/bert_classifier/1", None, local)
