"""TFX's Pusher executor with an atomic copy (``publish.push_version``).

Everything else is TFX 1.16's: the blessing checks, the model path, Unix-time versions,
an existing version folder left as it is, the archive copy in the ``pushed_model``
artifact and its ``pushed``, ``pushed_destination`` and ``pushed_version`` properties.
Two differences in order: ``pushed`` is 0 until the version is in place, and the archive
copy is made before the push (a failing archive copy fails the run with nothing pushed,
never after a version was published). A failed push raises ``PushError``: the run fails
with the cause, and ML Metadata records no pushed model. Before a push, partial copies
left by killed pushes are removed (``publish.remove_stale_copies``).
"""
from __future__ import annotations

import os
import time

from absl import logging
from tfx.components.pusher import executor as tfx_pusher
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

from components.atomic_pusher.publish import (STAGING_PREFIX, push_version, remove_stale_copies,
                                              staged_version)
from serving.model_store import version_number

_Versioning = pusher_pb2.Versioning


def _destination(exec_properties) -> pusher_pb2.PushDestination.Filesystem:
    destination = pusher_pb2.PushDestination()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.PUSH_DESTINATION_KEY],
                              destination)
    kind = destination.WhichOneof("destination")
    if kind != "filesystem":
        raise NotImplementedError(f"Invalid push destination {kind}")
    filesystem = destination.filesystem
    if filesystem.versioning not in (_Versioning.AUTO, _Versioning.UNIX_TIMESTAMP):
        raise NotImplementedError(f"Invalid Versioning {filesystem.versioning}")
    return filesystem


def next_version(base_directory: str, now: int) -> int:
    """The version to push: the Unix time, or one above the newest version already there
    or being pushed (a clock set back, a version placed by hand, two pushes in one
    second), so the new model is the one TF Serving's latest policy serves, and no other
    push's, nor a killed push's leftover, has its number."""
    names = [name.rstrip("/") for name in
             (fileio.listdir(base_directory) if fileio.isdir(base_directory) else [])]
    # half-copied versions too, and staging copies (.partial-<version>-…)
    numbers = [staged_version(name) if name.startswith(STAGING_PREFIX) else version_number(name)
               for name in names]
    return max(now, max((n for n in numbers if n is not None), default=0) + 1)


class Executor(tfx_pusher.Executor):
    """Pushes a blessed model as ``<base_directory>/<unix time>``, whole or not at all."""

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        model_push = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        self._MarkNotPushed(model_push)
        if not self.CheckBlessing(input_dict):
            return
        model_path = self.GetModelPath(input_dict)
        base_directory = _destination(exec_properties).base_directory
        version = str(next_version(base_directory, int(time.time())))
        serving_path = os.path.join(base_directory, version)
        io_utils.copy_dir(model_path, model_push.uri)  # TFX's archive copy
        for name in remove_stale_copies(base_directory):
            logging.warning("Removed %s from %s: the partial copy of a push that was "
                            "killed.", name, base_directory)
        # A push racing this one to the same version makes the rename fail (PushError):
        # never marked pushed with a folder that holds another model.
        push_version(model_path, base_directory, version)
        logging.info("Model written to serving path %s.", serving_path)
        self._MarkPushed(model_push, pushed_destination=serving_path,
                         pushed_version=version)
        logging.info("Model pushed to %s.", model_push.uri)
