"""ServingCheck component: the local pipeline's InfraValidator.

Tested end to end: tests/e2e/test_pipeline.py.

Before the Pusher, the blessed candidate is loaded by the local model server
(a child process, real sockets) and its warmup requests are sent over gRPC and
REST (with ``--mixed_precision=bfloat16`` when ``mixed_precision`` says so). The
output is an ``InfraBlessing``, which the stock Pusher honours: a
model that fails to load or answer is not pushed, and the reason is recorded.
"""

import os

from tfx.dsl.component.experimental.annotations import (InputArtifact, OutputArtifact,
                                                        Parameter)
from tfx.dsl.component.experimental.decorators import component
from tfx.dsl.io import fileio
from tfx.types import standard_artifacts
from tfx.utils import path_utils

BLESSED_FILE, NOT_BLESSED_FILE = "INFRA_BLESSED", "INFRA_NOT_BLESSED"  # as InfraValidator


@component
def ServingCheck(model: InputArtifact[standard_artifacts.Model],
                 model_blessing: InputArtifact[standard_artifacts.ModelBlessing],
                 blessing: OutputArtifact[standard_artifacts.InfraBlessing],
                 model_name: Parameter[str],
                 timeout_seconds: Parameter[int] = 300,
                 mixed_precision: Parameter[str] = ""):
    from serving.check import check_model

    if model_blessing.get_int_custom_property("blessed") != 1:
        ok, reason = False, "not checked: the Evaluator did not bless the model"
    else:
        result = check_model(path_utils.serving_model_path(model.uri), model_name,
                             timeout_seconds, mixed_precision)
        ok, reason = result.ok, result.reason
    blessing.set_int_custom_property("blessed", int(ok))
    blessing.set_string_custom_property("reason", reason[:2000])
    fileio.makedirs(blessing.uri)
    with fileio.open(os.path.join(blessing.uri, BLESSED_FILE if ok else NOT_BLESSED_FILE),
                     "w") as f:
        f.write(reason + "\n")
