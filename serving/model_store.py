"""Which model versions are served: version policy, labels, polling the base paths.

New versions are loaded (and warmed up) before they replace old ones, and a
request keeps the version it started with, so swapping drops no request
(TF Serving's availability-preserving policy).
"""
from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

import tensorflow as tf

from serving.batching import BatchingParameters
from serving.errors import invalid, not_found
from serving.servable import Servable, is_saved_model_dir

log = logging.getLogger(__name__)

# ModelVersionStatus.State values (tensorflow_serving/apis/get_model_status.proto).
LOADING, AVAILABLE, END = "LOADING", "AVAILABLE", "END"


@dataclasses.dataclass
class ModelSpec:
    """One model of a ``model_config_list``: where its versions are and which to serve."""

    name: str
    base_path: str
    policy: str = "latest"  # latest | all | specific
    num_versions: int = 1
    versions: Tuple[int, ...] = ()
    labels: Dict[str, int] = dataclasses.field(default_factory=dict)

    def wanted(self, available: List[int]) -> List[int]:
        if self.policy == "all":
            return list(available)
        if self.policy == "specific":
            return [v for v in available if v in self.versions]
        return sorted(available)[-self.num_versions:]


def read_model_config(path: str) -> List[ModelSpec]:
    """Parses a ``--model_config_file`` with TF Serving's own ``ModelServerConfig`` proto."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    with open(path, encoding="utf-8") as f:
        try:
            text_format.Parse(f.read(), config)
        except text_format.ParseError as error:
            raise ValueError(f"{path}: {error}") from None
    if config.WhichOneof("config") != "model_config_list":
        raise ValueError(f"{path}: expected a model_config_list")
    specs = []
    for model in config.model_config_list.config:
        if model.model_platform not in ("", "tensorflow"):
            raise ValueError(f"{path}: model {model.name}: platform {model.model_platform} "
                             "is not supported (only 'tensorflow')")
        policy = model.model_version_policy.WhichOneof("policy_choice") or "latest"
        specs.append(ModelSpec(
            name=model.name, base_path=model.base_path, policy=policy,
            num_versions=max(1, model.model_version_policy.latest.num_versions),
            versions=tuple(model.model_version_policy.specific.versions),
            labels=dict(model.version_labels)))
    names = [s.name for s in specs]
    if not specs:
        raise ValueError(f"{path}: no model in model_config_list")
    for spec in specs:
        if names.count(spec.name) > 1:
            raise ValueError(f"{path}: Illegal to list model {spec.name} multiple times "
                             "in config list")
        if not (os.path.isabs(spec.base_path) or "://" in spec.base_path):
            raise ValueError(f"{path}: Expected model {spec.name} to have an absolute path "
                             f"or URI; got base_path()={spec.base_path}")
    return specs


@dataclasses.dataclass
class VersionState:
    state: str
    error: str = ""


class ModelStore:
    """Loads, serves and unloads versions of the configured models."""

    def __init__(self, specs: List[ModelSpec], batching: Optional[BatchingParameters] = None,
                 poll_seconds: float = 1.0,
                 on_change: Optional[Callable[[str, int, str], None]] = None):
        self.specs = {s.name: s for s in specs}
        self._batching = batching
        self._poll_seconds = poll_seconds
        self._on_change = on_change or (lambda name, version, state: None)
        self._servables: Dict[str, Dict[int, Servable]] = {s.name: {} for s in specs}
        self._states: Dict[str, Dict[int, VersionState]] = {s.name: {} for s in specs}
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        """Loads what is there now, then polls every ``poll_seconds`` (0: never again)."""
        self.poll_once()
        if self._poll_seconds > 0:
            self._thread = threading.Thread(target=self._poll_loop, name="model-poller",
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        for name in self._servables:
            for servable in self._servables[name].values():
                servable.close()

    def _poll_loop(self) -> None:
        while not self._stop.wait(self._poll_seconds):
            try:
                self.poll_once()
            except Exception:  # a bad poll must not kill the poller
                log.exception("polling the model base paths failed")

    def poll_once(self) -> None:
        for spec in self.specs.values():
            self._sync(spec)

    def _sync(self, spec: ModelSpec) -> None:
        available = _versions_on_disk(spec.base_path)
        wanted = spec.wanted(sorted(available))
        current = self._servables[spec.name]
        states = self._states[spec.name]
        loaded = dict(current)
        for version in wanted:
            if version in loaded or (version in states and states[version].state == END):
                continue  # loaded, or failed before: TF Serving does not retry a version
            states[version] = VersionState(LOADING)
            self._on_change(spec.name, version, LOADING)
            servable = None
            try:
                servable = Servable(spec.name, version, available[version], self._batching)
                warmed = servable.warm_up()  # a failing warmup fails the load, as TF Serving
            except Exception as error:  # the version stays unloaded, the others serve on
                if servable is not None:
                    servable.close()
                log.error("model %s version %d failed to load: %s", spec.name, version, error)
                states[version] = VersionState(END, f"{type(error).__name__}: {error}")
                self._on_change(spec.name, version, END)
                continue
            log.info("model %s version %d loaded (%d warmup requests)", spec.name, version,
                     warmed)
            loaded[version] = servable
        keep = {v: s for v, s in loaded.items() if v in wanted}
        self._servables[spec.name] = keep  # one assignment: requests see old or new set
        for version in sorted(set(keep) - set(current)):
            states[version] = VersionState(AVAILABLE)
            self._on_change(spec.name, version, AVAILABLE)
        for version, servable in loaded.items():
            if version not in keep:
                servable.close()
                states[version] = VersionState(END)
                self._on_change(spec.name, version, END)
                log.info("model %s version %d unloaded", spec.name, version)

    # -- lookups --------------------------------------------------------------------------
    def get(self, name: str, version: Optional[int] = None,
            label: Optional[str] = None) -> Servable:
        if name not in self._servables:
            raise not_found(_request_text(name, version, label))
        versions = self._servables[name]
        if label is not None:
            if label not in self.specs[name].labels:
                raise invalid(f"Unrecognized servable version label: {label}")
            version = self.specs[name].labels[label]
        if version is None:
            if not versions:
                raise not_found(_request_text(name, version, label))
            return versions[max(versions)]
        if version not in versions:
            raise not_found(_request_text(name, version, label))
        return versions[version]

    def status(self, name: str, version: Optional[int] = None) -> Dict[int, VersionState]:
        states = self._states.get(name)
        if not states:
            raise not_found(f"Could not find any versions of model {name}")
        if version is not None:
            if version not in states:
                raise not_found(f"Could not find version {version} of model {name}")
            return {version: states[version]}
        return dict(states)

    def loaded_versions(self, name: str) -> List[int]:
        return sorted(self._servables.get(name, {}))


def _request_text(name: str, version: Optional[int], label: Optional[str]) -> str:
    if version is None and label is None:
        return f"Servable not found for request: Latest({name})"
    return f"Servable not found for request: Specific({name}, {version})"


def _versions_on_disk(base_path: str) -> Dict[int, str]:
    """Numeric subfolders holding a complete SavedModel."""
    if not tf.io.gfile.isdir(base_path):
        return {}
    versions = {}
    for entry in tf.io.gfile.listdir(base_path):
        entry = entry.rstrip("/")
        path = os.path.join(base_path, entry)
        if entry.isdigit() and is_saved_model_dir(path):
            versions[int(entry)] = path
    return versions
