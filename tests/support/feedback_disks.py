"""A full feedback disk: filling it, and the whole lines of a feedback file."""
import errno
import json
import os

import pytest


def fill(disk) -> str:
    """Writes a filler file until the disk is full; returns its path (delete it to free)."""
    path = os.path.join(disk, "filler")
    with open(path, "wb", buffering=0) as f:
        with pytest.raises(OSError) as full:
            while True:
                f.write(b"\0" * 65536)
    assert full.value.errno == errno.ENOSPC
    return path


def _whole_lines(path) -> list:
    """Every line of ``path`` parsed; fails on a torn (unterminated or broken) line."""
    with open(path, "rb") as f:
        data = f.read()
    assert not data or data.endswith(b"\n"), f"torn tail in {path}: {data[-80:]!r}"
    return [json.loads(line) for line in data.decode("utf-8").splitlines()]
