"""Version labels (``stable``, ``canary``, any name) in a TF Serving ``model_config_list``.

The file is read and written with TF Serving's own ``ModelServerConfig`` proto. A label
may only name a version that TF Serving will have loaded: a complete SavedModel folder
(``<base_path>/<version>/saved_model.pb``) among those the model's version policy serves,
because TF Serving refuses to reload its config when a label names any other version. At
start nothing is loaded yet, so a server started on a config with labels needs
``--allow_version_labels_for_unavailable_models`` (the shipped manifests pass it). The
file is replaced atomically (a temporary file in the same folder, then ``os.replace``),
so a server polling it never reads half a file; one edit at a time (a lock on its folder).
Its leading ``#``
comment lines are kept; comments inside the proto are not.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import re
import sys
import tempfile
from typing import Dict, Iterable, List, Optional

import tensorflow as tf
from google.protobuf import text_format

from serving.model_store import (ModelSpec, parse_model_server_config, version_number,
                                  versions_on_disk)

LABEL_NAME = re.compile(r"[A-Za-z0-9_.-]+")


class LabelError(ValueError):
    """A label that cannot be set, or a config file that cannot be used."""


def read_config(path: str):
    """The config's ``ModelServerConfig`` (parsed as the model server parses it)."""
    try:
        return parse_model_server_config(path)
    except ValueError as error:
        raise LabelError(str(error)) from None


def find_model(config, path: str, name: Optional[str]):
    """The ``ModelConfig`` called ``name`` (or the only one when ``name`` is None)."""
    models = list(config.model_config_list.config)
    names = [m.name for m in models]
    if name is None and len(models) == 1:
        return models[0]
    if name is None:
        raise LabelError(f"{path} has models {', '.join(names) or '(none)'}: pick one "
                         "with --model")
    for model in models:
        if model.name == name:
            return model
    raise LabelError(f"{path} has no model {name!r} (models: {', '.join(names) or 'none'})")


def _missing(base_path: str) -> str:
    """A note when ``base_path`` is not on this machine (e.g. a container path)."""
    if tf.io.gfile.isdir(base_path):
        return ""
    return f" ({base_path} does not exist here: give --base_path)"


def served_versions(model, on_disk: List[int]) -> List[int]:
    """The versions of ``on_disk`` that the model's version policy loads."""
    return ModelSpec.from_proto(model).wanted(on_disk)


def parse_assignments(items: Iterable[str]) -> Dict[str, int]:
    """``["stable=1764012345", ...]`` -> ``{"stable": 1764012345, ...}``."""
    labels = {}
    for item in items:
        name, sep, version = item.partition("=")
        if not sep or not LABEL_NAME.fullmatch(name) or version_number(version) is None:
            raise LabelError(f"bad label assignment {item!r}: expected NAME=VERSION, e.g. "
                             "stable=1764012345 (NAME of letters, digits, '_', '.', '-')")
        if name in labels:
            raise LabelError(f"label {name!r} given twice: which version is meant?")
        labels[name] = version_number(version)
    if not labels:
        raise LabelError("no label given: e.g. set stable=1764012345 canary=1764099999")
    return labels


@contextlib.contextmanager
def one_edit_at_a_time(path: str):
    """Holds an exclusive lock on the config's folder (the file itself is replaced, so a
    lock on it would hold nothing) while an edit reads, changes and writes ``path``: two
    edits at once each wrote back what they read, and the later dropped the other's."""
    try:
        fd = os.open(os.path.dirname(os.path.realpath(path)), os.O_RDONLY)
    except FileNotFoundError:  # no folder, no file: read_config says so, naming it
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"{path}: waiting for another edit of it to finish", file=sys.stderr,
                  flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def set_labels(path: str, labels: Dict[str, int], model_name: Optional[str] = None,
               base_path: Optional[str] = None, allow_unavailable: bool = False):
    """Points each label at its version and rewrites ``path``; returns the ``ModelConfig``.

    ``base_path`` is where the versions are as seen from here (default: the config's
    ``base_path``, often a path inside the server's container).
    """
    with one_edit_at_a_time(path):
        return _set_labels(path, labels, model_name, base_path, allow_unavailable)


def _set_labels(path: str, labels: Dict[str, int], model_name: Optional[str],
                base_path: Optional[str], allow_unavailable: bool):
    config = read_config(path)
    model = find_model(config, path, model_name)
    if not allow_unavailable:
        folder = base_path or model.base_path
        on_disk = sorted(versions_on_disk(folder))
        served = served_versions(model, on_disk)
        listing = (f"versions on disk in {folder}: {_listing(on_disk)}, served: "
                   f"{_listing(served)}{_missing(folder)}. --allow_unavailable skips this "
                   "check (TF Serving refuses to start, or to reload its config, with a "
                   "label on a version it has not loaded)")
        for label, version in labels.items():
            if version not in served:
                why = "is not among the versions its version policy serves" \
                    if version in on_disk else "is not a complete SavedModel folder"
                raise LabelError(
                    f"{path}: model {model.name}: cannot point label {label!r} at version "
                    f"{version}: it {why}; {listing}")
        stale = {k: v for k, v in model.version_labels.items()
                 if k not in labels and v not in served}
        if stale:  # the new labels would never take effect beside them
            label, version = sorted(stale.items())[0]
            raise LabelError(
                f"{path}: model {model.name}: label {label!r} points at version {version}, "
                f"which is not served: move it too (set {label}=VERSION) or unset it; "
                f"{listing}")
    for label, version in labels.items():
        model.version_labels[label] = version
    write_config(path, config)
    return model


def unset_labels(path: str, names: Iterable[str], model_name: Optional[str] = None):
    """Removes the labels ``names`` and rewrites ``path``; returns the ``ModelConfig``."""
    with one_edit_at_a_time(path):
        return _unset_labels(path, names, model_name)


def _unset_labels(path: str, names: Iterable[str], model_name: Optional[str]):
    config = read_config(path)
    model = find_model(config, path, model_name)
    names = list(names)
    if not names:
        raise LabelError("no label given: e.g. unset canary")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise LabelError(f"label {twice[0]!r} given twice")
    missing = [n for n in names if n not in model.version_labels]
    if missing:
        raise LabelError(f"{path}: model {model.name} has no label "
                         f"{', '.join(map(repr, missing))} (labels: {_labels(model) or 'none'})")
    for name in names:
        del model.version_labels[name]
    write_config(path, config)
    return model


def write_config(path: str, config) -> None:
    """Replaces ``path`` atomically, keeping its leading comment lines and its mode; a
    symbolic link's target is replaced, the link kept."""
    path = os.path.realpath(path)
    with open(path, encoding="utf-8") as f:
        header = []
        for line in f:
            if not line.startswith("#"):
                break
            header.append(line)
    text = "".join(header) + text_format.MessageToString(config)
    folder = os.path.dirname(os.path.abspath(path))
    fd, temp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.",
                                suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temp, os.stat(path).st_mode & 0o7777)
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.remove(temp)
        raise


def describe(path: str, model_name: Optional[str] = None,
             base_path: Optional[str] = None) -> str:
    """Labels and versions on disk of one model, for ``bert-pipeline labels show``."""
    model = find_model(read_config(path), path, model_name)
    folder = base_path or model.base_path
    on_disk = sorted(versions_on_disk(folder))
    served = served_versions(model, on_disk)
    return (f"model {model.name} ({folder})\n"
            f"  versions on disk: {_listing(on_disk)}{_missing(folder)}\n"
            f"  served by its version policy: {_listing(served)}\n"
            f"  labels: {_labels(model, served if tf.io.gfile.isdir(folder) else None) or 'none'}")


def command(path: str, action: str, items: List[str], model_name: Optional[str] = None,
            base_path: Optional[str] = None, allow_unavailable: bool = False) -> str:
    """``bert-pipeline labels``: ``set NAME=VERSION...``, ``unset NAME...`` or ``show``."""
    if action == "set":
        set_labels(path, parse_assignments(items), model_name, base_path, allow_unavailable)
    elif action == "unset":
        unset_labels(path, items, model_name)
    elif items:
        raise LabelError(f"show takes no arguments, got {' '.join(items)}")
    return describe(path, model_name, base_path)


def _listing(versions: List[int]) -> str:
    return " ".join(map(str, versions)) or "none"


def _labels(model, served: Optional[List[int]] = None) -> str:
    """``stable=1 canary=2``; with ``served``, a label on another version is marked."""
    return " ".join(f"{k}={v}" + (" (not served: TF Serving refuses this config)"
                                  if served is not None and v not in served else "")
                    for k, v in sorted(model.version_labels.items()))
