"""Which folders are spans and which files are data, as TextExampleGen reads them.

Tested by its users' unit tests: tests/unit/components/drift_check/test_component.py.

TFX-free (tf.io.gfile: local paths, and URIs once their file system is registered), so
the run's settings checks (local/preflight.py), the scheduler, DriftCheck and the
feedback export use the same rules without importing TFX or Beam.
"""
from __future__ import annotations

import fnmatch
import os
import re
from typing import List, Optional, Tuple

import tensorflow as tf

SPAN = "{SPAN}"


def list_spans(input_base: str, span_pattern: str) -> List[Tuple[int, str]]:
    """(span number, folder name) of every folder in ``input_base`` matching the pattern,
    oldest first."""
    prefix, _, suffix = span_pattern.partition(SPAN)
    matcher = re.compile(re.escape(prefix) + r"(\d+)" + re.escape(suffix) + "$")
    found = []
    for entry in tf.io.gfile.listdir(input_base) if tf.io.gfile.exists(input_base) else []:
        match = matcher.match(entry.rstrip("/"))
        if match:
            found.append((int(match.group(1)), entry.rstrip("/")))
    return sorted(found)


def span_folder_problem(input_base: str, span_pattern: str, file_pattern: str
                        ) -> Optional[str]:
    """Why TFX's ExampleGen would refuse the span folders, which it finds by glob
    (``{SPAN}`` as ``*``) then reads each number from: a folder the glob takes whose
    number is not all digits (``span-2.bak``, ``span-3 (copy)``) with data files in it
    ("Cannot find span number"), or two folders of one number (``span-2``, ``span-02``:
    TFX takes one by listing order, the window and the checks another)."""
    prefix, _, suffix = span_pattern.partition(SPAN)
    spans = list_spans(input_base, span_pattern)
    numbered = {folder for _, folder in spans}
    stray = [entry.rstrip("/") for entry in tf.io.gfile.listdir(input_base)
             if fnmatch.fnmatchcase(entry.rstrip("/"), f"{prefix}*{suffix}")
             and entry.rstrip("/") not in numbered
             and data_files(os.path.join(input_base, entry.rstrip("/"), file_pattern))]
    if stray:
        return (f"data.span_pattern: {', '.join(sorted(stray)[:5])} in {input_base} "
                f"{'look' if len(stray) > 1 else 'looks'} like a span folder to TFX (named "
                f"like {span_pattern}) but {'have' if len(stray) > 1 else 'has'} no span "
                f"number: TextExampleGen would fail; move or rename "
                f"{'them' if len(stray) > 1 else 'it'}")
    numbers = [number for number, _ in spans]
    twice = sorted({n for n in numbers if numbers.count(n) > 1})
    if twice:
        folders = [folder for number, folder in spans if number == twice[0]]
        return (f"data.span_pattern: {' and '.join(folders)} in {input_base} are both span "
                f"{twice[0]}: keep one")
    return None


def span_patterns(input_base: str, span_pattern: str, patterns: List[str],
                  spans: int) -> List[str]:
    """``patterns`` (holding ``span_pattern``) in the newest ``spans`` span folders, oldest
    first."""
    found = [folder for _, folder in list_spans(input_base, span_pattern)]
    return [pattern.replace(span_pattern, folder)
            for folder in (found[-spans:] if spans > 0 else []) for pattern in patterns]


def training_window(spans: List[Tuple[int, str]], newest: int,
                    window_spans: int) -> List[Tuple[int, str]]:
    """The (number, folder) of the spans that train with span ``newest`` under
    ``data.window_spans``: the ``window_spans - 1`` before it, oldest first."""
    older = [span for span in spans if span[0] < newest]
    return older[-(window_spans - 1):] if window_spans > 1 else []


def data_files(pattern: str) -> List[str]:
    """The files matching a glob (a local path or a URI), sorted: no folders, and no hidden
    files (``.DS_Store``, editors' lock files) unless the pattern's name starts with '.'."""
    return matches(pattern)[0]


def matches(pattern: str) -> Tuple[List[str], List[str]]:
    """``(data_files(pattern), the folders it matches)``, from one listing; hidden ones
    left out of both unless the pattern's name starts with '.'."""
    hidden_ok = os.path.basename(pattern).startswith(".")
    files, folders = [], []
    for path in sorted(tf.io.gfile.glob(pattern)):
        if hidden_ok or not os.path.basename(path.rstrip("/")).startswith("."):
            (folders if tf.io.gfile.isdir(path) else files).append(path)
    return files, folders
