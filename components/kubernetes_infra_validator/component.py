"""InfraValidator for Kubeflow Pipelines v2.

Tested compiled for Kubeflow: tests/unit/kubeflow/test_kubeflow_runner.py.

TFX 1.16's KubeflowV2DagRunner refuses the ``InfraValidator`` class (and its
subclasses) by type, although its executor runs in any pod that can reach the
Kubernetes API: it starts ``tensorflow/serving`` in a pod next to itself, loads the
candidate, sends requests built from real examples and writes the ``InfraBlessing``
that the Pusher honours. This component has InfraValidator's own spec under another
class, so the V2 compiler emits it as an ordinary container step, and its own executor
(``executor.py``): TFX's, with the model server pod hardened (``hardened_runner.py``). The
executor finds its pod from ``KFP_POD_NAME``/``KFP_NAMESPACE``, which the image's
entrypoint (``kubeflow/entrypoint.sh``) sets from the pod's hostname and service
account.
"""
from typing import Optional

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.proto import infra_validator_pb2
from tfx.types import standard_artifacts, standard_component_specs

from components.kubernetes_infra_validator.executor import Executor


class KubernetesInfraValidator(base_component.BaseComponent):
    """InfraValidator (same spec; TFX's executor with a hardened model server pod) as a
    Kubeflow v2 step."""

    SPEC_CLASS = standard_component_specs.InfraValidatorSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, model: types.BaseChannel,
                 serving_spec: infra_validator_pb2.ServingSpec,
                 examples: Optional[types.BaseChannel] = None,
                 request_spec: Optional[infra_validator_pb2.RequestSpec] = None,
                 validation_spec: Optional[infra_validator_pb2.ValidationSpec] = None):
        if not serving_spec.HasField("kubernetes"):
            raise ValueError("KubernetesInfraValidator needs serving_spec.kubernetes")
        super().__init__(spec=self.SPEC_CLASS(
            model=model, examples=examples,
            blessing=types.Channel(type=standard_artifacts.InfraBlessing),
            serving_spec=serving_spec, validation_spec=validation_spec,
            request_spec=request_spec))
