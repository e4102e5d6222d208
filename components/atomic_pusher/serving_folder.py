"""What a serving folder (``<serving_dir>/<model_name>``) really holds, as the run
summary and report state it: the versions a model server loads, numbered folders it
would try to load but cannot (no ``saved_model.pb``, or one that does not parse: a
half-copied version), and anything else (the ``.partial-*`` copy of a killed push,
stray files)."""
from __future__ import annotations

import dataclasses
import os
from typing import Optional

import tensorflow as tf

from components.atomic_pusher.publish import (SAVED_MODEL, PushError, check_saved_model,
                                              pushing_here)
from serving.model_store import version_number


@dataclasses.dataclass
class ServingFolder:
    path: str
    exists: bool = True
    versions: list = dataclasses.field(default_factory=list)  # complete, oldest first
    incomplete: list = dataclasses.field(default_factory=list)  # digits, no SavedModel
    other: list = dataclasses.field(default_factory=list)  # not versions
    pushing: list = dataclasses.field(default_factory=list)  # a live push's .partial-*
    error: Optional[str] = None  # why it could not be listed

    @property
    def clean(self) -> bool:
        return self.error is None and not self.incomplete and not self.other \
            and not self.pushing

    def describe(self) -> str:
        """One sentence: ``/s/m: versions 17, 18; nothing else`` and any warning."""
        if self.error:
            return f"{self.path}: could not be listed ({self.error})"
        if not self.exists:
            return f"{self.path}: does not exist (no model is served from it)"
        text = (f"{self.path}: version{'s' if len(self.versions) > 1 else ''} "
                f"{', '.join(self.versions)}" if self.versions else
                f"{self.path}: no versions")
        if self.clean:
            return text + "; nothing else"
        if self.incomplete:
            text += (f"; WARNING: {', '.join(self.incomplete)}: numbered but no complete "
                     f"{SAVED_MODEL} (a half-copied version, or a push still copying it): "
                     f"a model server tries to load it; once no push is running, remove it")
        if self.pushing:
            text += (f"; {', '.join(self.pushing)}: a push running on this machine (not "
                     f"loaded by model servers; leave it)")
        if self.other:
            text += (f"; also {', '.join(self.other)} (not loaded by model servers; a "
                     f"leftover of an interrupted push, unless a push elsewhere is still "
                     f"writing it: remove it once none is)")
        return text


def inspect(path: str) -> ServingFolder:
    """Lists ``path`` (a local folder or a URI) and sorts its entries."""
    folder = ServingFolder(path)
    try:
        if not tf.io.gfile.isdir(path):
            folder.exists = False
            return folder
        entries = sorted(entry.rstrip("/") for entry in tf.io.gfile.listdir(path))
        for entry in entries:
            if pushing_here(entry):
                folder.pushing.append(entry)
            elif version_number(entry) is None:  # as model servers read names ('²': none)
                folder.other.append(entry)
            elif _loadable(os.path.join(path, entry, SAVED_MODEL)):
                folder.versions.append(entry)
            else:
                folder.incomplete.append(entry)
    except Exception as error:  # noqa: BLE001 - said in the summary, never raised
        folder.error = f"{type(error).__name__}: {error}"
    folder.versions.sort(key=version_number)
    folder.incomplete.sort(key=version_number)
    return folder


def _loadable(saved_model: str) -> bool:
    if not tf.io.gfile.exists(saved_model):
        return False
    try:
        check_saved_model(saved_model)
    except PushError:
        return False
    return True
