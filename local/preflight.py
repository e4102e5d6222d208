"""What a run reads, checked before any component runs: ``model.checkpoint``,
``data.input_dir`` (and that its file pattern, inside the newest span, matches data
files), ``data.schema_path`` and ``trainer.workers`` on a machine with GPUs. Each
problem names the setting to change. Also ``output.root`` where the input is read, a
``TF_CONFIG`` left in the environment, and a bfloat16 serving check on a CPU without it.

Tested through the command: tests/unit/cli/test_main.py; on object storage:
tests/storage/test_preflight.py.

Only the configuration and the file system (tf.io.gfile: local paths and URIs): no
TFX import, so a mistake is refused in seconds (local/local_runner.py runs this under the run
lock, before it imports TFX). The file rules are TextExampleGen's own
(components/text_example_gen/files.py: spans, data files, hidden files skipped).
"""
from __future__ import annotations

import os
from typing import Optional

from components.text_example_gen.files import (SPAN, data_files, list_spans, span_folder_problem,
                                               training_window)
from components.text_example_gen.parsing import InputDataError, detect_format
from pipeline.config import PipelineConfig, is_uri, pattern_chars_problem, resolve_path

class SettingsError(ValueError):
    """Settings that would make the run fail: one line per problem."""


def check(config: PipelineConfig) -> None:
    """Raises SettingsError naming every wrong setting (nothing has run yet)."""
    overlap = output_problem(config)  # then the input's listing would name the run's files
    problems = [p for p in (checkpoint_problem(config.model.checkpoint,
                                               config.model.max_seq_length,
                                               config.data.reader_config().text_pair),
                            overlap, None if overlap else input_problem(config),
                            schema_problem(config.data.schema_path),
                            local_gpus_problem(config.trainer.workers),
                            environment_problem(),
                            serving_precision_problem(config.output.serving_mixed_precision))
                if p]
    if problems:
        raise SettingsError("\n  ".join(["nothing was run:"] + problems))


def checkpoint_problem(checkpoint: str, max_seq_length: Optional[int] = None,
                       text_pair: bool = False):
    """Why ``model.checkpoint`` cannot be loaded (as models/checkpoint.py resolves it: a
    folder, the installed default package or a model in the local Hugging Face cache), or
    cannot take ``max_seq_length`` word pieces or sentence pairs (``text_pair``)."""
    from models import checkpoint as checkpoint_lib
    from models.hparams import DEFAULT_CHECKPOINT

    looks_like_path = (os.path.isabs(checkpoint) or checkpoint.startswith((".", "~")) or
                       checkpoint.count("/") > 1 or os.path.exists(checkpoint))
    if looks_like_path and not os.path.isdir(checkpoint):
        return (f"model.checkpoint: folder {resolve_path(checkpoint)} does not exist; set it "
                f"to a checkpoint folder (config.json, vocab.txt and weights), a model in "
                f"the local Hugging Face cache, or {DEFAULT_CHECKPOINT} (the default)")
    try:
        folder = checkpoint_lib.resolve_checkpoint_dir(checkpoint)
    except checkpoint_lib.CheckpointError as error:
        return f"model.checkpoint: {str(error).split(' (downloads are disabled)')[0]}"
    weights = (checkpoint_lib.TF_WEIGHTS, checkpoint_lib.SAFETENSORS_WEIGHTS,
               checkpoint_lib.PYTORCH_WEIGHTS)
    missing = [name for name in ("config.json", checkpoint_lib.VOCAB_FILE)
               if not os.path.isfile(os.path.join(folder, name))]
    if not any(os.path.isfile(os.path.join(folder, name)) for name in weights):
        missing.append(" or ".join(weights))
    if missing:
        return (f"model.checkpoint: {folder} is not a BERT checkpoint folder: no "
                f"{', no '.join(missing)}")
    try:
        if max_seq_length is not None:
            checkpoint_lib.check_max_seq_length(folder, max_seq_length)
        if text_pair:
            checkpoint_lib.check_token_types(folder)
    except (ValueError, OSError) as error:
        return str(error)
    return None


def _gfile(path: str):
    import tensorflow as tf
    if is_uri(path):
        from serving import filesystems
        filesystems.register()  # s3:// and others from tensorflow-io
    return tf.io.gfile


def newest_span_folder(input_dir: str, span_pattern: str):
    """The folder TextExampleGen ingests with spans: the highest {SPAN} number."""
    spans = list_spans(input_dir, span_pattern)
    return spans[-1][1] if spans else None


def input_problem(config: PipelineConfig):
    """Why TextExampleGen would find no data under ``data.input_dir``."""
    data = config.data
    base = resolve_path(data.input_dir)
    if base != data.input_dir:  # the setting as given was checked with the settings
        problem = pattern_chars_problem("data.input_dir", base, bool(data.span_pattern))
        if problem:
            return f"{problem} ('{data.input_dir}' is resolved against the working directory)"
    gfile = _gfile(base)
    if not gfile.isdir(base):
        return (f"data.input_dir: folder {base} does not exist; set it to the folder that "
                f"holds the data files")
    folder = base
    if data.span_pattern:
        problem = span_folder_problem(base, data.span_pattern,
                                      "train/*" if data.presplit else data.file_pattern)
        if problem:
            return problem
        span = newest_span_folder(base, data.span_pattern)
        if span is None:
            return (f"data.span_pattern: no folder named like {data.span_pattern} in "
                    f"{base} (set data.span_pattern to the span folders' name with {SPAN} "
                    f"for the number, or leave it empty to read every file)")
        folder = os.path.join(base, span)
    patterns = ({"data.presplit (train/*)": "train/*", "data.presplit (eval/*)": "eval/*"}
                if data.presplit else {"data.file_pattern": data.file_pattern})
    spans = list_spans(base, data.span_pattern) if data.span_pattern else []
    older = [f for _, f in training_window(spans, spans[-1][0], data.window_spans)] \
        if spans else []  # the window's older spans: they train too
    for setting, pattern in patterns.items():
        files = data_files(os.path.join(folder, pattern))
        for path in files + [p for f in older for p in data_files(os.path.join(base, f,
                                                                                pattern))]:
            try:  # a _SUCCESS marker, a README.md: ExampleGen would fail on it
                detect_format(path, data.file_format)
            except InputDataError as error:
                return f"{setting}: {error}"
        if not files:
            if data.span_pattern and not any(not name.startswith(".")
                                             for name in gfile.listdir(folder)):
                return (f"data.span_pattern: the newest span folder {folder} is empty "
                        f"(hidden files are skipped): still being copied? Write a span "
                        f"under another name and rename it when it is whole, or remove it")
            return (f"{setting}: no data files match {os.path.join(folder, pattern)} "
                    f"(hidden files are skipped); set data.file_pattern to a glob of the data "
                    f"files in data.input_dir" if not data.presplit else
                    f"{setting}: no data files match {os.path.join(folder, pattern)}; "
                    f"data.presplit reads the train/ and eval/ folders of data.input_dir")
    return None


def output_problem(config: PipelineConfig):
    """Why ``output.root`` cannot be where it is: a folder ``data.input_dir``'s reading
    lists (the folder itself, a span folder, presplit's train/ or eval/), which would
    take the run's own files (history.jsonl, run.lock) for data. A subfolder the reader
    skips is fine."""
    root, data = resolve_path(config.output.root), resolve_path(config.data.input_dir)
    if is_uri(root) or is_uri(data):
        return None
    root, data = os.path.realpath(root), os.path.realpath(data)
    if not (root == data or root.startswith(data.rstrip(os.sep) + os.sep)):
        return None
    first = os.path.relpath(root, data).split(os.sep)[0]
    config_data = config.data
    spans = list_spans(data, config_data.span_pattern) if config_data.span_pattern else []
    read = (root == data or (config_data.presplit and first in ("train", "eval")) or
            first in {folder for _, folder in spans})
    if read:  # a folder the reader lists: its own history.jsonl, run.lock taken for data
        return (f"output.root {root} is where data.input_dir {data} is read: a run would "
                f"read its own files as data; put them apart")
    return None


def environment_problem():
    """A ``TF_CONFIG`` left in the environment: the in-process Trainer would join the
    cluster it describes (local runs start their own replicas, trainer.workers)."""
    if os.environ.get("TF_CONFIG"):
        return ("TF_CONFIG is set in the environment: the Trainer would try to join the "
                "cluster it names; unset it (a local run starts its own workers with "
                "trainer.workers)")
    return None


def serving_precision_problem(mode: str):
    """Why the serving check cannot load the candidate with ``--mixed_precision=mode`` on
    this machine (it runs here, after training)."""
    if not mode:
        return None
    from serving.precision import bfloat16_refusal_here

    why = bfloat16_refusal_here()
    return (f"output.serving_mixed_precision {mode}: {why}; leave it empty (float32) on "
            f"this machine" if why else None)


def local_gpus_problem(workers: int):
    """Why ``trainer.workers`` local replicas cannot share this machine's GPUs (said here,
    before ExampleGen and Transform run, not only when the Trainer starts)."""
    if workers <= 1:
        return None
    import tensorflow as tf

    from models.distribution import local_replicas_gpu_problem
    return local_replicas_gpu_problem(workers, len(tf.config.list_physical_devices("GPU")))


def schema_problem(schema_path: str):
    """Why ``data.schema_path`` cannot be imported, with how to infer or write one."""
    if not schema_path:
        return None  # inferred from the data
    path = resolve_path(schema_path)
    gfile = _gfile(path)
    if gfile.exists(path):
        return _schema_parse_problem(path, gfile)
    where = "" if os.path.isabs(schema_path) or is_uri(schema_path) else \
        " (relative to the working directory)"
    return (f"data.schema_path: {path} does not exist{where}; point it at your curated "
            f"schema, write one from your data with `bert-pipeline schema --out "
            f"schema.pbtxt` (then --data.schema_path schema.pbtxt), or infer one at every "
            f'run with --data.schema_path ""')


def _schema_parse_problem(path: str, gfile):
    """Why the file at ``path`` is not a TFMD Schema text proto (ImportSchemaGen's read)."""
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    try:
        with gfile.GFile(path, "r") as f:
            text_format.Parse(f.read(), schema_pb2.Schema())
    except (text_format.ParseError, UnicodeDecodeError) as error:
        return (f"data.schema_path: {path} is not a schema (a Schema text proto, as "
                f"`bert-pipeline schema` writes): {str(error).splitlines()[0]}")
    return None
