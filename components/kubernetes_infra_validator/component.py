"""InfraValidator for Kubeflow Pipelines v2.

TFX 1.16's KubeflowV2DagRunner refuses the ``InfraValidator`` class (and its
subclasses) by type, although its executor runs in any pod that can reach the
Kubernetes API: it starts ``tensorflow/serving`` in a pod next to itself, loads the
candidate, sends requests built from real examples and writes the ``InfraBlessing``
that the Pusher honours. This component has InfraValidator's own spec and executor
under another class, so the V2 compiler emits the stock executor as an ordinary
container step. The executor finds its pod from ``KFP_POD_NAME``/``KFP_NAMESPACE``,
which the image's entrypoint (``kubeflow/entrypoint.sh``) sets from the pod's
hostname and service account.
"""
from typing import Optional

from tfx import types
from tfx.components.infra_validator.component import InfraValidator
from tfx.dsl.components.base import base_component
from tfx.proto import infra_validator_pb2
from tfx.types import standard_artifacts, standard_component_specs


class KubernetesInfraValidator(base_component.BaseComponent):
    """The stock InfraValidator (same spec, same executor) as a Kubeflow v2 step."""

    SPEC_CLASS = standard_component_specs.InfraValidatorSpec
    EXECUTOR_SPEC = InfraValidator.EXECUTOR_SPEC

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
