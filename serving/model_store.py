"""Which model versions are served, following TF Serving's version lifecycle.

* Aspired versions come from the version policy (latest N, all, specific) over
  the complete SavedModel folders under each base path, polled every
  ``--file_system_poll_wait_seconds``.
* Availability preserving (TF Serving's ``AvailabilityPreservingPolicy``): a
  version that serves is unloaded only once an aspired version is AVAILABLE
  (loaded and warmed up); while none is, the newest version that was serving
  keeps serving. So a broken new version, or deleting the newest version, never
  takes a model down; deleting every version does (404 until one reappears).
* Unloading (TF Serving's ``BasicManager``): a version to unload leaves the
  published mapping and reports ``UNLOADING`` in one step (GetModelStatus never shows
  it AVAILABLE while requests get 404, nor a gap with no version AVAILABLE), stays so
  while its batch threads run what is queued and stop, then says ``END``. With
  ``--num_unload_threads`` 0 (the default, as in TF Serving) that happens in the
  poller, which waits for it; with N > 0 on a pool of N threads, so the poller goes
  on loading. A version is not loaded again while it is still unloading.
* Loading: with ``--num_load_threads`` 0 (the default, as in TF Serving) the poller
  loads and warms up each new version in turn, so other models' loads, unloads and
  config re-reads wait for it; with N > 0 up to N versions load at once on a pool and
  the poller goes on. Each version serves as soon as it is AVAILABLE. Start-up loads
  follow the same setting (TF Serving loads its first versions on 4 threads per CPU).
* A failed load is retried ``--max_num_load_retries`` times,
  ``--load_retry_interval_micros`` apart; after that the version stays ``END``
  with its error until its folder's content changes, then it is tried again. A
  failed version that stops being aspired is forgotten, as TF Serving stops managing
  it: one waiting for a retry says ``END`` with its error, and any is tried afresh
  if it is aspired again.
* The ``--model_config_file`` is re-read every
  ``--model_config_file_poll_wait_seconds``: models, policies and version labels
  change without a restart. A label may only name an AVAILABLE version
  (``--allow_version_labels_for_unavailable_models`` relaxes this for new
  labels, as in TF Serving). As TF Serving's ServerCore, labels are checked before
  anything loads: at start no version is available yet, so a config with labels
  starts only with that flag; a re-read config that breaks the rule is logged and
  applied not at all (models, policies and labels), and tried again at the next poll.

Requests see one published ``{version: Servable}`` mapping per model, swapped
in one assignment, and keep the version they started on.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import re
import threading
import time
import traceback
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, List, Optional, Set, Tuple

import tensorflow as tf

from serving.errors import invalid, not_found
from serving.memory import release_memory
from serving.servable import LoadSettings, Servable, first_line, is_saved_model_dir

log = logging.getLogger(__name__)

# ModelVersionStatus.State values (tensorflow_serving/apis/get_model_status.proto).
LOADING, AVAILABLE, UNLOADING, END = "LOADING", "AVAILABLE", "UNLOADING", "END"
UNKNOWN_ERROR = 2  # tensorflow.error.Code UNKNOWN


@dataclasses.dataclass
class ModelSpec:
    """One model of a ``model_config_list``: where its versions are and which to serve."""

    name: str
    base_path: str
    policy: str = "latest"  # latest | all | specific
    num_versions: int = 1
    versions: Tuple[int, ...] = ()
    labels: Dict[str, int] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_proto(cls, model) -> "ModelSpec":
        """From a ``ModelConfig`` of TF Serving's ``model_config_list``."""
        policy = model.model_version_policy.WhichOneof("policy_choice") or "latest"
        return cls(name=model.name, base_path=model.base_path, policy=policy,
                   num_versions=max(1, model.model_version_policy.latest.num_versions),
                   versions=tuple(model.model_version_policy.specific.versions),
                   labels=dict(model.version_labels))

    def wanted(self, available: List[int]) -> List[int]:
        if self.policy == "all":
            return list(available)
        if self.policy == "specific":
            return [v for v in available if v in self.versions]
        return sorted(available)[-self.num_versions:]


def parse_model_server_config(path: str):
    """The ``ModelServerConfig`` proto of a ``--model_config_file`` (a model_config_list)."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    try:
        with tf.io.gfile.GFile(path, "r") as f:
            text = f.read()
    except tf.errors.OpError as error:  # missing or unreadable: an OSError, as open() gives
        raise OSError(f"{path}: {error.message}") from None
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as error:
        raise ValueError(f"{path}: {error}") from None
    if config.WhichOneof("config") != "model_config_list":
        raise ValueError(f"{path}: expected a model_config_list")
    return config


def read_model_config(path: str) -> List[ModelSpec]:
    """Parses a ``--model_config_file`` with TF Serving's own ``ModelServerConfig`` proto."""
    specs = []
    for model in parse_model_server_config(path).model_config_list.config:
        if model.model_platform not in ("", "tensorflow"):
            raise ValueError(f"{path}: model {model.name}: platform {model.model_platform} "
                             "is not supported (only 'tensorflow')")
        specs.append(ModelSpec.from_proto(model))
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
    """A version's ``ModelVersionStatus``: state, and the error of its last failed load."""

    state: str
    error: str = ""
    error_code: int = 0  # tensorflow.error.Code of ``error``


@dataclasses.dataclass
class LoadOptions:
    """TF Serving's load settings (same flags, same defaults)."""

    servable: LoadSettings = dataclasses.field(default_factory=LoadSettings)
    file_system_poll_seconds: float = 1.0  # 0: scan the base paths once
    max_load_retries: int = 5
    load_retry_interval_seconds: float = 60.0
    config_poll_seconds: float = 0.0  # 0: read the config file once
    allow_labels_for_unavailable: bool = False
    no_versions_log_seconds: float = 60.0  # how often "no versions under ..." is repeated
    unload_threads: int = 0  # --num_unload_threads; 0: unload in the poller
    load_threads: int = 0  # --num_load_threads; 0: load in the poller


@dataclasses.dataclass
class _Failure:
    attempts: int  # failed loads so far
    retry_at: Optional[float]  # monotonic time of the next try; None: gave up
    fingerprint: Tuple  # the folder's content when it last failed
    message: str = ""  # the last error, "<type>: <first line>"


class _Model:
    """One configured model: its spec, versions on disk, loaded and published versions."""

    def __init__(self, spec: ModelSpec):
        self.spec = spec
        self.labels: Dict[str, int] = {}  # applied labels (checked against availability)
        self.on_disk: Dict[int, str] = {}
        self.loaded: Dict[int, Servable] = {}
        self.published: Dict[int, Servable] = {}  # what requests see
        self.states: Dict[int, VersionState] = {}
        self.failures: Dict[int, _Failure] = {}
        self.no_versions_logged: Optional[float] = None  # when it was last said
        self.base_path_gone_logged: Optional[float] = None  # likewise


class ModelStore:
    """Loads, serves and unloads versions of the configured models."""

    def __init__(self, specs: List[ModelSpec], options: Optional[LoadOptions] = None,
                 on_change: Optional[Callable[[str, int, str], None]] = None,
                 config_path: str = ""):
        self.options = options or LoadOptions()
        self._on_change = on_change or (lambda name, version, state: None)
        self._config_path = config_path
        self._models: Dict[str, _Model] = {s.name: _Model(s) for s in specs}
        # models taken out of the config: their versions' states (END once unloaded)
        # still answer status, as TF Serving's ServableStateMonitor keeps them
        self._removed: Dict[str, _Model] = {}
        self._lock = threading.RLock()  # one sync at a time (poller vs. start/tests)
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._unloading: Set[Tuple[str, int]] = set()  # (model, version) not yet END
        # States, their on_change and _unloading change together (poller, unload threads).
        self._states_lock = threading.RLock()
        self._unloader = (ThreadPoolExecutor(self.options.unload_threads, "model-unload")
                          if self.options.unload_threads > 0 else None)
        self._loader = (ThreadPoolExecutor(self.options.load_threads, "model-load")
                        if self.options.load_threads > 0 else None)
        self._loads: Dict[Tuple[str, int], futures.Future] = {}  # on the load pool (under _lock)

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        """Applies the labels (``ValueError`` if one names a version that is not available:
        at start, any label without ``allow_labels_for_unavailable``, as TF Serving), loads
        what is there now, then keeps polling in a thread."""
        with self._lock:
            problems = self._apply_labels({n: m.spec.labels for n, m in self._models.items()})
        if problems:
            self.stop()
            raise ValueError("; ".join(problems) + " (at start no version is available yet: "
                             "TF Serving and this server start with version labels only with "
                             "--allow_version_labels_for_unavailable_models)")
        try:
            self.poll_once()
        except BaseException:  # (Ctrl-C too) no load left running on the pool
            self.stop()
            raise
        self._thread = threading.Thread(target=self._poll_loop, name="model-poller",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stops polling, waits for the loads under way (as TF Serving; the versions they
        load are unloaded unserved, the queued ones not loaded), unloads every version and
        waits for the unloads."""
        self._stop.set()
        if self._thread:
            self._thread.join()
        if self._loader:
            self._loader.shutdown(wait=True)
        with self._lock:
            for model in self._models.values():
                self._unload(model, sorted(model.loaded))
        if self._unloader:
            self._unloader.shutdown(wait=True)

    def _poll_loop(self) -> None:
        now = time.monotonic()
        next_scan = now + self.options.file_system_poll_seconds
        next_config = now + self.options.config_poll_seconds
        while not self._stop.wait(self._wait_seconds(next_scan, next_config)):
            now = time.monotonic()
            try:
                with self._lock:
                    if self._config_path and self.options.config_poll_seconds > 0 \
                            and now >= next_config:
                        next_config = now + self.options.config_poll_seconds
                        self.reload_config()
                    rescan = self.options.file_system_poll_seconds > 0 and now >= next_scan
                    if rescan:
                        next_scan = now + self.options.file_system_poll_seconds
                    for model in list(self._models.values()):
                        self._sync_logged(model, rescan)
            except Exception:  # a bad poll must not kill the poller
                log.exception("polling the model config failed")

    def _sync_logged(self, model: _Model, rescan: bool) -> None:
        try:
            self._sync(model, rescan)
        except Exception:  # one unreadable base path must not stop the other models
            log.exception("polling model %s failed", model.spec.name)

    def _wait_seconds(self, next_scan: float, next_config: float) -> float:
        due = [next_scan] if self.options.file_system_poll_seconds > 0 else []
        if self._config_path and self.options.config_poll_seconds > 0:
            due.append(next_config)
        with self._lock:  # poll_once and reload_config change the failures
            due += [f.retry_at for m in self._models.values() for f in m.failures.values()
                    if f.retry_at is not None]
        return min(1.0, max(0.02, min(due, default=time.monotonic() + 1) - time.monotonic()))

    def poll_once(self) -> None:
        """Scans every base path and loads/unloads now, and waits for the loads (start-up,
        tests and the serving check)."""
        with self._lock:
            for model in self._models.values():
                self._sync(model, rescan=True)
            loads = list(self._loads.values())
        futures.wait(loads)  # without the lock: each load takes it to publish its version

    # -- config ---------------------------------------------------------------------------
    def reload_config(self) -> None:
        """Re-reads the config file: adds/removes models, new policies, new labels."""
        try:
            specs = {s.name: s for s in read_model_config(self._config_path)}
        except (OSError, ValueError, tf.errors.OpError) as error:
            log.error("model config not reloaded: %s", error)
            return
        # Labels first, against what serves now, as TF Serving's ReloadConfig: a config
        # whose labels fail changes nothing (its models and policies neither).
        problems = self._label_problems({n: s.labels for n, s in specs.items()})
        if problems:
            for problem in problems:
                log.error("model config not reloaded (version labels): %s", problem)
            return
        for name in [n for n in self._models if n not in specs]:
            model = self._removed[name] = self._models[name]  # status: from here on
            del self._models[name]  # predictions: 404 from here on
            self._unload(model, sorted(model.loaded))
            log.info("model %s removed from the config: unloaded", name)
        for name, spec in specs.items():
            if name in self._models:
                self._models[name].spec = spec
            else:
                self._models[name] = _Model(spec)
                removed = self._removed.pop(name, None)
                if removed is not None:  # added again: its versions that ended stay END
                    with self._states_lock:
                        self._models[name].states.update(
                            (v, s) for v, s in removed.states.items() if s.state == END)
            self._sync_logged(self._models[name], rescan=True)
        # checked above; they fail here only where this config's policy unloaded a version
        for problem in self._apply_labels({n: s.labels for n, s in specs.items()}):
            log.error("version labels not updated: %s", problem)

    def _apply_labels(self, wanted: Dict[str, Dict[str, int]]) -> List[str]:
        """Sets every model's labels, or none if one names an unavailable version."""
        problems = self._label_problems(wanted)
        if not problems:
            for name, labels in wanted.items():
                self._models[name].labels = dict(labels)
        return problems

    def _label_problems(self, wanted: Dict[str, Dict[str, int]]) -> List[str]:
        """TF Serving's refusal for each label naming a version not available now (a new
        label may, with ``allow_labels_for_unavailable``); a model not served yet has
        none available."""
        problems = []
        for name, labels in wanted.items():
            model = self._models.get(name) or _Model(ModelSpec(name, ""))
            for label, version in sorted(labels.items()):
                existing = model.labels.get(label)
                relaxed = (self.options.allow_labels_for_unavailable
                           and existing in (None, version))
                if not relaxed and version not in model.published:
                    problems.append(f"Request to assign label to version {version} of model "
                                    f"{name}, which is not currently available for inference")
        return problems

    # -- loading --------------------------------------------------------------------------
    def _sync(self, model: _Model, rescan: bool) -> None:
        if rescan:
            try:
                # A base path that vanished with versions loaded (a remount, a folder
                # swapped by rename) keeps them served, as TF Serving's source errs then
                # rather than aspire to nothing.
                model.on_disk = versions_on_disk(model.spec.base_path,
                                                 missing_ok=not model.loaded)
            except OSError as error:  # gone, or cannot be listed (permissions, credentials)
                self._log_base_path_gone(model, error)
                rescan = False
            else:
                model.base_path_gone_logged = None
        aspired = model.spec.wanted(sorted(model.on_disk))
        self._give_up_unwanted(model, aspired)  # a deleted folder too: a fresh start
        if rescan:
            self._log_no_versions(model)
        # Unloads first what no longer needs to serve (an aspired version serves, or
        # several unaspired do), as TF Serving's availability-preserving policy: latest 2
        # never holds three versions while the third loads.
        self._publish(model, aspired)
        for version in sorted(aspired, reverse=True):  # the newest first, as TF Serving
            if version not in model.loaded and self._may_load(model, version):
                self._start_load(model, version)  # it serves once loaded
        self._publish(model, aspired)

    def _give_up_unwanted(self, model: _Model, aspired: List[int]) -> None:
        """Forgets the failures of versions no longer aspired (a newer one came, the policy
        changed, the folder went), as TF Serving stops managing them: one waiting for a
        retry ends (``END`` with its error; it said LOADING for good), and any is tried
        afresh if it is aspired again."""
        for version in [v for v in model.failures if v not in aspired]:
            failure = model.failures.pop(version)
            if failure.retry_at is not None:
                code = model.states.get(version, VersionState(END)).error_code
                self._set_state(model, version, VersionState(
                    END, f"not retried, no longer aspired; load attempt {failure.attempts} "
                         f"failed: {failure.message}", code))

    def _log_base_path_gone(self, model: _Model, error: OSError) -> None:
        """Says that the base path is gone (or cannot be listed) and what stays served,
        then every ``no_versions_log_seconds`` while it is."""
        now = time.monotonic()
        last = model.base_path_gone_logged
        if last is not None and now - last < self.options.no_versions_log_seconds:
            return
        model.base_path_gone_logged = now
        if model.loaded:
            log.error("%s for servable %s: versions %s stay served until it is back",
                      first_line(error), model.spec.name,
                      ", ".join(map(str, sorted(model.loaded))))
        else:
            log.error("%s for servable %s: nothing is served until it can be read",
                      first_line(error), model.spec.name)

    def _log_no_versions(self, model: _Model) -> None:
        """While a base path holds no version: says so at once, then every
        ``no_versions_log_seconds``, with what is there instead."""
        now = time.monotonic()
        if model.on_disk:
            if model.no_versions_logged is not None:
                log.info("model %s: versions found under %s", model.spec.name,
                         model.spec.base_path)
            model.no_versions_logged = None
            return
        last = model.no_versions_logged
        if last is not None and now - last < self.options.no_versions_log_seconds:
            return
        model.no_versions_logged = now
        base = model.spec.base_path
        log.warning("No versions of servable %s found under base path %s (looked for "
                    "%s/<version number>/saved_model.pb): %s; requests answer 404 until "
                    "one appears", model.spec.name, base, base.rstrip("/"),
                    no_versions_hint(base))

    def _may_load(self, model: _Model, version: int) -> bool:
        if (model.spec.name, version) in self._loads:
            return False  # (a model removed and added back while its version loads too)
        with self._states_lock:
            if (model.spec.name, version) in self._unloading:
                return False  # once it is END (TF Serving: no load and unload of one servable)
        failure = model.failures.get(version)
        if failure is None:
            return True
        if failure.retry_at is not None:
            return time.monotonic() >= failure.retry_at
        if _fingerprint(model.on_disk[version]) != failure.fingerprint:
            del model.failures[version]  # the folder changed: try again from scratch
            log.info("model %s version %d changed on disk: loading it again",
                     model.spec.name, version)
            return True
        return False

    def _start_load(self, model: _Model, version: int) -> None:
        """Loads ``version`` here or, with ``--num_load_threads``, on the load pool."""
        key, path = (model.spec.name, version), model.on_disk[version]
        fingerprint = _fingerprint(path)  # what fails, if it fails (it may change meanwhile)
        self._set_state(model, version, VersionState(LOADING))
        if self._loader:
            try:
                self._loads[key] = self._loader.submit(self._load, model, version, path,
                                                       fingerprint)
                return
            except RuntimeError:  # the pool has shut down (a sync after stop): load here
                pass
        self._load(model, version, path, fingerprint)

    def _load(self, model: _Model, version: int, path: str, fingerprint: Tuple) -> None:
        """Loads and warms up ``version`` (on the load pool without the store's lock), then
        serves it as the version policy says, or records its failure. A version whose
        model left the config meanwhile, or that loaded while the store stops, is unloaded
        unserved; one still queued when the store stops is not loaded."""
        servable, failure = None, ("not loaded: the server is stopping", UNKNOWN_ERROR)
        try:
            if not self._stop.is_set():
                servable, failure = self._build(model.spec.name, version, path)
        except Exception as error:  # noqa: BLE001  on the pool nobody would see it
            log.error("model %s version %d: loading failed: %s", model.spec.name, version,
                      traceback.format_exc())
            failure = (traceback.format_exception_only(type(error), error)[-1].strip(),
                       UNKNOWN_ERROR)
        try:
            # Loading and the warmup's first calls (Grappler optimizing each signature:
            # several copies of the weights with --bfloat16_fold_weights) leave freed heap
            # that glibc keeps: hand it back, or the process stays at the load's peak while
            # it serves. After a failure too, once the failed servable is gone.
            release_memory()
        except Exception:  # noqa: BLE001  the version loaded all the same
            log.error("model %s version %d: releasing memory failed: %s", model.spec.name,
                      version, traceback.format_exc())
        with self._lock:
            self._loads.pop((model.spec.name, version), None)
            current = (self._models.get(model.spec.name) is model
                       and not self._stop.is_set())
            if servable is None:
                if current:
                    self._failed(model, version, fingerprint, *failure)
                else:
                    self._set_state(model, version, VersionState(END, *failure))
                return
            model.failures.pop(version, None)
            model.loaded[version] = servable
            if current:
                self._publish(model, model.spec.wanted(sorted(model.on_disk)))
            else:
                self._unload(model, [version])

    def _build(self, name: str, version: int, path: str
               ) -> Tuple[Optional[Servable], Optional[Tuple[str, int]]]:
        """The loaded and warmed-up servable, or None and why: ``(message, error code)``.
        Text only, as the error's traceback holds the failed servable (the frames of its
        ``__init__`` or ``warm_up``): once this returns, it can be freed."""
        servable = None
        try:
            servable = Servable(name, version, path, self.options.servable)
            warmed = servable.warm_up()  # a failing warmup fails the load, as TF Serving
        except Exception as error:  # noqa: BLE001  the version stays unloaded, others serve
            if servable is not None:
                try:
                    servable.close()
                except Exception:  # noqa: BLE001  the load failed: say why, not this
                    log.error("model %s version %d: closing the failed load failed: %s",
                              name, version, traceback.format_exc())
                servable = None
            return None, (f"{type(error).__name__}: {first_line(error)}",
                          getattr(error, "error_code", UNKNOWN_ERROR) or UNKNOWN_ERROR)
        log.info("model %s version %d loaded (%d warmup requests)", name, version, warmed)
        return servable, None

    def _failed(self, model: _Model, version: int, fingerprint: Tuple, message: str,
                code: int) -> None:
        previous = model.failures.get(version)
        attempts = (previous.attempts if previous else 0) + 1
        retries_left = self.options.max_load_retries - (attempts - 1)
        if retries_left > 0:
            wait = max(0.0, self.options.load_retry_interval_seconds)
            model.failures[version] = _Failure(attempts, time.monotonic() + wait, fingerprint,
                                               message)
            state = VersionState(LOADING, f"load attempt {attempts} failed, retrying in "
                                          f"{wait:g}s ({retries_left} left): {message}", code)
        else:
            model.failures[version] = _Failure(attempts, None, fingerprint, message)
            state = VersionState(END, message, code)
        log.error("model %s version %d failed to load (attempt %d): %s", model.spec.name,
                  version, attempts, message)
        self._set_state(model, version, state)

    def _publish(self, model: _Model, aspired: List[int]) -> None:
        """Serves the AVAILABLE aspired versions; while there are aspired versions but none
        is available, the newest other loaded version serves on. Unloads the rest."""
        ready = set(model.loaded)
        keep = ready & set(aspired)
        others = ready - keep
        if aspired and not keep and others:
            keep = {max(others)}
        with self._states_lock:  # GetModelStatus sees the swap as one step
            retired = self._retire(model, sorted(ready - keep),
                                   {v: model.loaded[v] for v in sorted(keep)})
            for version in sorted(keep):
                if model.states.get(version, VersionState(END)).state != AVAILABLE:
                    self._set_state(model, version, VersionState(AVAILABLE))
        self._close_all(model, retired)

    def _unload(self, model: _Model, versions: List[int]) -> None:
        self._close_all(model, self._retire(model, versions))

    def _retire(self, model: _Model, versions: List[int],
                published: Optional[Dict[int, Servable]] = None
                ) -> List[Tuple[int, List[Servable]]]:
        """Stops serving ``versions`` and says ``UNLOADING`` for them, in one step for
        GetModelStatus: ``published`` replaces what requests see, else they lose
        ``versions``. Returns each version with a list holding the only reference to its
        servable, for ``_close_all``."""
        if published is None:
            published = {v: s for v, s in model.published.items() if v not in versions}
        with self._states_lock:
            model.published = published  # one assignment
            for version in versions:
                self._unloading.add((model.spec.name, version))
                self._set_state(model, version, VersionState(UNLOADING))
        return [(version, [model.loaded.pop(version)]) for version in versions]

    def _close_all(self, model: _Model, retired: List[Tuple[int, List[Servable]]]) -> None:
        """Closes and frees each retired version (``END``) here or, with
        ``--num_unload_threads``, on the unload pool."""
        for version, held in retired:
            try:
                if self._unloader:
                    self._unloader.submit(self._close, model, version, held)
                    continue
            except RuntimeError:  # the pool has shut down (a sync after stop): unload here
                pass
            self._close(model, version, held)

    def _close(self, model: _Model, version: int, held: List[Servable]) -> None:
        """Closes the servable (its batch threads run what is queued and stop), frees it,
        then says END; whatever fails is logged (nothing escapes the pool) and the version
        ends all the same. Errors are logged as text: a traceback would keep the servable."""
        try:
            try:
                held[0].close()
            finally:
                held.clear()
        except Exception:  # noqa: BLE001
            log.error("model %s version %d: closing failed: %s", model.spec.name, version,
                      traceback.format_exc())
        try:
            if not self._stop.is_set():  # at shutdown the process ends: no gc, no trim
                release_memory()  # once the servable (and any traceback) is gone
        except Exception:  # noqa: BLE001
            log.error("model %s version %d: releasing memory failed: %s", model.spec.name,
                      version, traceback.format_exc())
        finally:
            with self._states_lock:
                self._unloading.discard((model.spec.name, version))
                self._set_state(model, version, VersionState(END))
        log.info("model %s version %d unloaded", model.spec.name, version)

    def _set_state(self, model: _Model, version: int, state: VersionState) -> None:
        with self._states_lock:
            model.states[version] = state
            try:
                self._on_change(model.spec.name, version, state.state)
            except Exception:  # noqa: BLE001  metrics must not break the version lifecycle
                log.exception("model %s version %d: reporting state %s failed",
                              model.spec.name, version, state.state)

    # -- lookups (request threads) --------------------------------------------------------
    def get(self, name: str, version: Optional[int] = None,
            label: Optional[str] = None) -> Servable:
        if label is not None:  # first, as TF Serving: an unknown model's label is unknown
            version = self.label_version(name, label)
        model = self._models.get(name)
        if model is None:
            raise not_found(_request_text(name, version, label))
        versions = model.published
        if version is None:
            if not versions:
                raise not_found(_request_text(name, version, label))
            return versions[max(versions)]
        if version not in versions:
            raise not_found(_request_text(name, version, label))
        return versions[version]

    def label_version(self, name: str, label: str) -> int:
        model = self._models.get(name)
        if model is None or label not in model.labels:
            raise invalid(f"Unrecognized servable version label: {label}")
        return model.labels[label]

    def status(self, name: str, version: Optional[int] = None) -> Dict[int, VersionState]:
        model = self._models.get(name) or self._removed.get(name)
        with self._states_lock:
            states = dict(model.states) if model else {}
        if not states:
            raise not_found(f"Could not find any versions of model {name}")
        if version is not None:
            if version not in states:
                raise not_found(f"Could not find version {version} of model {name}")
            return {version: states[version]}
        return states

    def loaded_versions(self, name: str) -> List[int]:
        model = self._models.get(name)
        return sorted(model.published) if model else []

    def is_configured(self, name: str) -> bool:
        """Whether ``name`` is a model of the config (served, or taken out of it)."""
        return name in self._models or name in self._removed

    def model_names(self) -> List[str]:
        return sorted(self._models)


def _request_text(name: str, version: Optional[int], label: Optional[str]) -> str:
    if version is None and label is None:
        return f"Servable not found for request: Latest({name})"
    return f"Servable not found for request: Specific({name}, {version})"


_INT64_MAX = 2 ** 63 - 1


def version_number(entry: str) -> Optional[int]:
    """A version folder's number: ASCII digits within int64 (TF Serving's SimpleAtoi), so
    '²' or '٣' is no version; None otherwise."""
    entry = entry.rstrip("/")
    if not re.fullmatch(r"[0-9]+", entry) or int(entry) > _INT64_MAX:
        return None
    return int(entry)


def versions_on_disk(base_path: str, missing_ok: bool = True) -> Dict[int, str]:
    """Numeric subfolders holding a ``saved_model.pb`` (their load may still fail). Two
    names of one number ('01', '1'): the last in name order, as TF Serving. A missing
    base path holds none, or with ``missing_ok=False`` is ``FileNotFoundError``."""
    try:
        if not tf.io.gfile.isdir(base_path):
            if missing_ok:
                return {}
            raise FileNotFoundError(f"Could not find base path {base_path}")
        entries = tf.io.gfile.listdir(base_path)
    except tf.errors.OpError as error:  # an unreachable store: keep serving what is loaded
        raise OSError(f"cannot list {base_path}: {error}") from None
    versions = {}
    for entry in sorted(e.rstrip("/") for e in entries):
        path = os.path.join(base_path, entry)
        number = version_number(entry)
        if number is not None and is_saved_model_dir(path):
            versions[number] = path
    return versions


def no_versions_hint(base_path: str) -> str:
    """What a base path without versions holds instead, and what to do about it."""
    try:
        if not tf.io.gfile.isdir(base_path):
            return "the folder does not exist (--model_base_path, or base_path in " \
                   "--model_config_file)"
        entries = sorted(e.rstrip("/") for e in tf.io.gfile.listdir(base_path))
        return _holds_instead(base_path, entries)
    except (tf.errors.OpError, OSError) as error:
        return f"it cannot be listed: {first_line(error)}"


def _holds_instead(base_path: str, entries: List[str]) -> str:
    if not entries:
        return "the folder is empty (has the model been pushed?)"
    if is_saved_model_dir(base_path):
        return ("found a SavedModel directly under the base path; move it into a "
                f"numbered version folder, e.g. {os.path.join(base_path, '1')}/")
    folders = [e for e in entries if tf.io.gfile.isdir(os.path.join(base_path, e))]
    unnumbered = [e for e in folders if is_saved_model_dir(os.path.join(base_path, e))]
    if unnumbered:
        return ("found SavedModels in folders not named by a number "
                f"({', '.join(unnumbered[:5])}); rename them to version numbers, e.g. 1/")
    higher = [e for e in folders if versions_on_disk(os.path.join(base_path, e))]
    if higher:
        return (f"found versions one level down, under {os.path.join(base_path, higher[0])}"
                "; point the base path there")
    numbered = [e for e in folders if version_number(e) is not None]
    if numbered:
        return (f"version folders without saved_model.pb ({', '.join(numbered[:5])}): "
                "incomplete or still being copied")
    return f"it holds {', '.join(entries[:5])}{', ...' if len(entries) > 5 else ''}"


def _fingerprint(path: str) -> Tuple:
    """Names, sizes and modification times of every file under a version folder."""
    files = []
    try:
        for folder, _, names in tf.io.gfile.walk(path):
            for file_name in names:
                stat = tf.io.gfile.stat(os.path.join(folder, file_name))
                files.append((os.path.relpath(os.path.join(folder, file_name), path),
                              stat.length, stat.mtime_nsec))
    except tf.errors.OpError:
        pass  # gone while listing: the next scan sees it
    return tuple(sorted(files))

