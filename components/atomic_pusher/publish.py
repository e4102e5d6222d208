"""Puts a SavedModel in a serving folder as a new version, whole or not at all.

Tested through the Pusher's executor:
tests/unit/components/atomic_pusher/test_executor.py.

A model server loads every all-digit folder under its base path (TF Serving's
file-system source parses each name with ``safe_strto64``; the local server takes
digit names with a ``saved_model.pb``). So a version is written under
``.partial-<version>-<host>-<pid>`` (a name neither loads), every file is checked against the
source (size and CRC-32, read back from the destination), ``saved_model.pb`` must parse
as a SavedModel, and only then is the folder renamed to ``<version>`` in one step.

On object storage (``gs://``, ``s3://``) there is no rename: the version is uploaded and
verified under the ``.partial-*`` prefix, then copied object by object inside the store
(a server-side copy: seconds, whatever the upload took) to ``<version>``, with
``saved_model.pb`` last, and the staging prefix removed. TF Serving aspires a numbered
prefix as soon as it lists it and gives a failed load up after ``--max_num_load_retries``
(5, a minute apart) for good: written in place, an upload of more than about five minutes
was never loaded until a restart. The local server takes a version only once its
``saved_model.pb`` is there.

Before the rename (or the copy to ``<version>``) the staged tree is listed and compared
with the model's, every path and size: a file that went missing after it was verified
(someone removing what looked like a leftover) fails the push.

On object storage a push also stops before the copy to ``<version>`` while another
push's staging copy of the same version is there (``_other_pushes``): nothing of two
pushes is ever mixed in one version, and a failing one never removes the other's.

On any failure the partial copy is removed and ``PushError`` names the cause, the file
and the cleanup. A push killed outright leaves its ``.partial-*`` copy (never loaded);
the next push on the same machine removes it. On object storage it leaves a ``.partial-*``
prefix, or, killed during the final copy, a numbered version without ``saved_model.pb``:
the next push removes either once it is an hour old (``remove_stale_copies``).
"""
from __future__ import annotations

import os
import socket
import time
import zlib
from typing import Optional

import tensorflow as tf
from absl import logging
from tensorflow.core.protobuf import saved_model_pb2

from serving.filesystems import sync
from serving.model_store import version_number
from serving.process import alive

SAVED_MODEL = "saved_model.pb"
STAGING_PREFIX = ".partial-"  # not a number: no model server loads it
OBJECT_STORES = ("gs://", "s3://")  # rename copies every object there
CHUNK = 8 << 20
# A push writes every object of a version well within this; on object storage a version
# without saved_model.pb none of whose objects is younger is left by a killed push.
STALE_PUSH_S = 3600.0


class PushError(RuntimeError):
    """A version could not be pushed; nothing of it is left in the serving folder."""


def is_object_storage(path: str) -> bool:
    return path.startswith(OBJECT_STORES)


def staging_name(version: str) -> str:
    """``.partial-<version>-<host>-<pid>``: whose it is, to clean up after a killed push."""
    return f"{STAGING_PREFIX}{version}-{socket.gethostname()}-{os.getpid()}"


def staged_version(entry: str) -> Optional[int]:
    """The version a ``.partial-<version>-…`` staging copy is of, else None."""
    if not entry.startswith(STAGING_PREFIX):
        return None
    return version_number(entry[len(STAGING_PREFIX):].partition("-")[0])


def _pid_here(entry: str) -> Optional[int]:
    """The pid of a ``.partial-<version>-<host>-<pid>`` name of this host, else None."""
    if not entry.startswith(STAGING_PREFIX):
        return None
    host, _, pid = entry[len(STAGING_PREFIX):].partition("-")[2].rpartition("-")
    return int(pid) if host == socket.gethostname() and pid.isdigit() else None


def pushing_here(entry: str) -> bool:
    """``entry`` is the staging copy of a push running on this machine."""
    pid = _pid_here(entry)
    return pid is not None and alive(pid)


def remove_stale_copies(base_directory: str, stale_after_s: float = STALE_PUSH_S) -> list:
    """Removes what pushes killed outright (``kill -9``, a power loss, an evicted pod) left
    in ``base_directory``; returns the names removed.

    On a file system: ``.partial-*`` folders of this host whose process is gone; others'
    (another pod's, a running push's) are left alone. On object storage the version was
    written in place: an all-digit prefix without ``saved_model.pb`` (TF Serving aspires
    it, fails to load it, and after a restart serves nothing) whose newest object is older
    than ``stale_after_s``; a younger one may be a push still writing."""
    if not tf.io.gfile.isdir(base_directory):
        return []
    if is_object_storage(base_directory):
        return _remove_stale_versions(base_directory, stale_after_s)
    removed = []
    for entry in tf.io.gfile.listdir(base_directory):
        entry = entry.rstrip("/")
        pid = _pid_here(entry)
        if pid is not None and not alive(pid):
            tf.io.gfile.rmtree(os.path.join(base_directory, entry))
            removed.append(entry)
    return removed


def _remove_stale_versions(base_directory: str, stale_after_s: float) -> list:
    """The object-storage half of ``remove_stale_copies``: a ``.partial-*`` prefix (any
    host's: pushes run in pods) or a numbered one without ``saved_model.pb`` whose newest
    object is older than ``stale_after_s``. Best effort (another push may remove the same
    version, the pusher's role may not delete): what fails is logged and left. A version
    with a ``saved_model.pbtxt`` (TF Serving loads that too) or with no object yet (a push
    that has just begun) is no leftover."""
    removed, cutoff_ns = [], (time.time() - stale_after_s) * 1e9
    for entry in tf.io.gfile.listdir(base_directory):
        entry = entry.rstrip("/")
        folder = os.path.join(base_directory, entry)
        try:
            if not entry.startswith(STAGING_PREFIX) and (version_number(entry) is None or any(
                    tf.io.gfile.exists(os.path.join(folder, name))
                    for name in (SAVED_MODEL, SAVED_MODEL + "txt"))):
                continue
            written = [tf.io.gfile.stat(os.path.join(parent, name)).mtime_nsec
                       for parent, _, names in tf.io.gfile.walk(folder) for name in names]
            if written and max(written) < cutoff_ns:
                tf.io.gfile.rmtree(folder)
                removed.append(entry)
        except tf.errors.OpError as error:
            logging.warning("%s: not removed (%s)", folder, error.message)
    return removed


def _other_pushes(base_directory: str, version: str, staging: str) -> list:
    """The staging copies of ``version`` in ``base_directory`` other than ``staging``.

    An object store has no rename that refuses an existing name, nor (through tf.io.gfile)
    a write that does: two pushes of one version (two pipelines in the same second) could
    both find ``<version>`` absent, copy into it together and leave it mixed, or the one
    that failed would remove what the other published. Each push, once its own staging
    copy is whole, lists the others' first and then checks ``<version>``, so at most one
    goes on: the later of the two sees the earlier's copy (there until its version is in
    place) or, listing after it was removed, ``<version>`` itself; the earlier may see
    neither, or the later's, and then both stop; so what a failing push then finds in
    ``<version>`` is its own, and it removes it."""
    wanted, mine = version_number(version), os.path.basename(staging)
    return sorted(name for name in (e.rstrip("/") for e in tf.io.gfile.listdir(base_directory))
                  if name != mine and staged_version(name) == wanted)


def _tree(folder: str) -> tuple:
    """(folders, files) under ``folder``, as paths relative to it; ``saved_model.pb`` is
    the last file."""
    folders, files = [], []
    for parent, _, names in tf.io.gfile.walk(folder):
        relative = os.path.relpath(parent, folder) if parent.rstrip("/") != folder.rstrip(
            "/") else ""
        folders.append(relative)
        files += [os.path.join(relative, name) for name in names]
    return folders, sorted(files, key=lambda path: (path == SAVED_MODEL, path))


def _digest(path: str) -> tuple:
    """(size, CRC-32) of a file, read through ``tf.io.gfile``."""
    crc, size = 0, 0
    with tf.io.gfile.GFile(path, "rb") as f:
        while chunk := f.read(CHUNK):
            crc = zlib.crc32(chunk, crc)
            size += len(chunk)
    return size, crc


def _copy(source: str, target: str) -> tuple:
    """Copies one file; returns the source's (size, CRC-32) as read while copying."""
    crc, size = 0, 0
    with tf.io.gfile.GFile(source, "rb") as reader, tf.io.gfile.GFile(target, "wb") as writer:
        while chunk := reader.read(CHUNK):
            writer.write(chunk)
            crc = zlib.crc32(chunk, crc)
            size += len(chunk)
    if not is_object_storage(target):
        sync(target)
    return size, crc


def _copy_verified(source: str, target: str, relative: str) -> None:
    """Copies ``relative`` from ``source`` to ``target`` and reads the copy back."""
    to = os.path.join(target, relative)
    tf.io.gfile.makedirs(os.path.dirname(to))
    expected = _copy(os.path.join(source, relative), to)
    found = _digest(to)
    if found != expected:
        raise PushError(f"{to}: the copy differs from the model ({found[0]} bytes, "
                        f"CRC-32 {found[1]:08x}; expected {expected[0]} bytes, CRC-32 "
                        f"{expected[1]:08x})")
    if relative == SAVED_MODEL:
        check_saved_model(to)


def check_saved_model(path: str) -> None:
    """``path`` (a ``saved_model.pb``) parses as a SavedModel with a MetaGraph."""
    with tf.io.gfile.GFile(path, "rb") as f:
        data = f.read()
    try:
        model = saved_model_pb2.SavedModel.FromString(data)
    except Exception as error:  # noqa: BLE001 - protobuf's DecodeError and kin
        raise PushError(f"{path} is not a SavedModel ({len(data)} bytes): {error}") from None
    if not model.meta_graphs:
        raise PushError(f"{path} is a SavedModel with no MetaGraph")


def _remove(path: str) -> str:
    """Removes a partial copy; returns what to add to the error if that failed too."""
    try:
        if tf.io.gfile.exists(path):
            tf.io.gfile.rmtree(path)
        return f"the partial copy {path} was removed"
    except Exception as error:  # noqa: BLE001 - reported with the push's own error
        return f"the partial copy {path} could NOT be removed ({error}); remove it"


def _sizes(folder: str, files: list) -> dict:
    """{relative path: size} of ``files`` under ``folder`` (-1: missing)."""
    sizes = {}
    for relative in files:
        path = os.path.join(folder, relative)
        sizes[relative] = tf.io.gfile.stat(path).length if tf.io.gfile.exists(path) else -1
    return sizes


def _check_whole(expected: dict, copy: str) -> None:
    """``copy`` holds every file of ``expected`` (the model's ``_sizes``) at its size, and
    nothing else."""
    found = _sizes(copy, list(expected))
    extra = sorted(set(_tree(copy)[1]) - set(expected))
    wrong = [f"{path} ({'missing' if found[path] < 0 else f'{found[path]} bytes'}, "
             f"expected {size} bytes)" for path, size in expected.items()
             if found[path] != size]
    if wrong or extra:
        raise PushError(f"{copy} is not the model it was copied from: "
                        + "; ".join(wrong + [f"{path} (not in the model)" for path in extra])
                        + " (something else wrote or removed files in it meanwhile)")


def push_version(model_dir: str, base_directory: str, version: str) -> str:
    """Publishes the SavedModel ``model_dir`` as ``<base_directory>/<version>``; returns
    that path. Raises PushError (the cause, the file, the cleanup) on any failure."""
    if not tf.io.gfile.exists(os.path.join(model_dir, SAVED_MODEL)):
        raise PushError(f"{model_dir} has no {SAVED_MODEL}: not a SavedModel, not pushed")
    final = os.path.join(base_directory, version)
    in_store = is_object_storage(base_directory)
    staging = os.path.join(base_directory, staging_name(version))
    if in_store and tf.io.gfile.exists(final):  # no rename to refuse it there: another
        raise PushError(f"pushing version {version} to {base_directory} failed: it "  # push
                        f"exists already (another push of the same version?); nothing "
                        f"was written")
    written = [staging]  # what a failure removes
    try:
        folders, files = _tree(model_dir)
        for relative in folders if not in_store else [""]:  # empty ones too (assets/)
            tf.io.gfile.makedirs(os.path.join(staging, relative))
        for relative in files:  # saved_model.pb last
            _copy_verified(model_dir, staging, relative)
        sizes = _sizes(model_dir, files)
        _check_whole(sizes, staging)
        if in_store:
            rivals = _other_pushes(base_directory, version, staging)  # before the check
            if rivals:
                raise PushError(f"another push of version {version} is under way "
                                f"({', '.join(rivals)}); the first to copy its version "
                                f"into place wins, so this one stops before writing it")
            if tf.io.gfile.exists(final):
                raise PushError(f"version {version} appeared meanwhile (another push of "
                                f"the same version?)")
            # no other push goes on now (_other_pushes): what a failure leaves in the
            # version's prefix is this push's, even a copy the store made but never
            # confirmed
            written.append(final)
            for relative in files:  # inside the store; saved_model.pb last
                tf.io.gfile.copy(os.path.join(staging, relative),
                                 os.path.join(final, relative), overwrite=False)
            _check_whole(sizes, final)
        else:
            sync(staging)
            tf.io.gfile.rename(staging, final, overwrite=False)
    except Exception as error:  # noqa: BLE001 - any failure: clean up, then say why
        cause = error.message if isinstance(error, tf.errors.OpError) else str(error)
        raise PushError(f"pushing version {version} to {base_directory} failed: "
                        f"{cause}; " + "; ".join(_remove(path) for path in written)) from None
    if in_store:  # published: the staging copy is a leftover now, removed if allowed
        try:
            tf.io.gfile.rmtree(staging)
        except Exception as error:  # noqa: BLE001 - a role that may not delete, a blip
            logging.warning("%s: the staging copy of pushed version %s was not removed (%s); "
                            "the next push removes it once it is an hour old", staging,
                            version, error)
    else:
        sync(base_directory)  # the rename itself, on the disk
    return final
