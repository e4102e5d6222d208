"""The single typed configuration of the pipeline.

Defaults < a YAML/JSON file (``--config``) < command-line overrides
(``--section.field value``). Relative paths are relative to the working directory.
"""
from __future__ import annotations

import dataclasses
import json
import os
import typing
from typing import Any, Mapping, Optional

from components.text_example_gen.parsing import ReaderConfig
from models.hparams import ModelHParams


def _field(default, help_text: str, **kwargs):
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default),
                                 metadata={"help": help_text}, **kwargs)
    return dataclasses.field(default=default, metadata={"help": help_text}, **kwargs)


@dataclasses.dataclass
class DataConfig:
    """Where the labelled text is and how to read it."""

    input_dir: str = _field("data/sample", "Folder with the labelled text files.")
    file_pattern: str = _field("*", "Glob of data files inside input_dir (single-split mode).")
    file_format: str = _field("auto", "auto (from the extension), csv, tsv or jsonl.")
    text_column: str = _field("sentence", "Column (or JSON key) holding the text.")
    label_column: str = _field("label", "Column (or JSON key) holding the label.")
    presplit: bool = _field(False, "Read input_dir/train/* and input_dir/eval/* "
                                   "instead of hash-splitting.")
    eval_fraction: float = _field(0.1, "Share of rows hashed into the eval split.")
    schema_path: str = _field("schema/schema.pbtxt", "Curated schema to validate "
                              "against; empty to infer one from the data.")

    def reader_config(self) -> ReaderConfig:
        return ReaderConfig(text_column=self.text_column, label_column=self.label_column,
                            file_format=self.file_format)


@dataclasses.dataclass
class EvalConfig:
    """The blessing gate."""

    min_accuracy: float = _field(0.80, "Accuracy the model must reach on the eval split.")
    max_accuracy_drop: float = _field(0.0, "How far below the last blessed model's "
                                           "accuracy a new model may be (0: no regression).")


@dataclasses.dataclass
class OutputConfig:
    """Where artifacts, metadata and served models go."""

    root: str = _field("pipeline_output", "Pipeline artifacts and the SQLite metadata.")
    serving_dir: str = _field("serving_model", "TF Serving base folder; models are pushed "
                                               "to <serving_dir>/<model_name>/<version>.")
    model_name: str = _field("bert_classifier", "Served model name.")
    serving_check_timeout: int = _field(300, "Seconds the serving check (load the candidate "
                                             "in the model server, answer its warmup "
                                             "requests over gRPC and REST) may take.")


@dataclasses.dataclass
class PipelineConfig:
    name: str = _field("bert-text-classifier", "Pipeline name (also the MLMD context).")
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelHParams = dataclasses.field(default_factory=ModelHParams)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    output: OutputConfig = dataclasses.field(default_factory=OutputConfig)
    beam_args: list = _field(["--direct_running_mode=in_memory", "--direct_num_workers=1"],
                             "Apache Beam pipeline options.")
    enable_cache: bool = _field(False, "Reuse outputs of unchanged components.")

    @property
    def pipeline_root(self) -> str:
        return os.path.join(self.output.root, self.name)

    @property
    def metadata_path(self) -> str:
        return os.path.join(self.output.root, "metadata.sqlite")

    @property
    def push_dir(self) -> str:
        return os.path.join(self.output.serving_dir, self.output.model_name)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


SECTIONS = {"data": DataConfig, "model": ModelHParams, "eval": EvalConfig,
            "output": OutputConfig}


def _convert(value: Any, kind: Any, key: str) -> Any:
    """A string (from the command line) or parsed value -> the field's type."""
    origin = typing.get_origin(kind)
    if origin is typing.Union:  # Optional[X]
        if value in (None, "", "none", "None"):
            return None
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    if not isinstance(value, str):
        return value
    if kind is bool:
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{key}: expected true/false, got '{value}'")
    if kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            raise ValueError(f"{key}: expected {kind.__name__}, got '{value}'") from None
    if kind in (list, typing.List[str]) or origin is list:
        return json.loads(value) if value.startswith("[") else value.split()
    return value


def field_types(cls) -> dict:
    return typing.get_type_hints(cls)


def load_config(path: Optional[str] = None,
                overrides: Optional[Mapping[str, Any]] = None) -> PipelineConfig:
    """Builds the config from defaults, an optional file and ``section.field`` overrides."""
    values: dict = {}
    if path:
        with open(path, encoding="utf-8") as f:
            if path.endswith(".json"):
                values = json.load(f)
            else:
                import yaml
                values = yaml.safe_load(f) or {}
    for key, value in (overrides or {}).items():
        section, _, name = key.rpartition(".")
        target = values.setdefault(section, {}) if section else values
        target[name] = value
    return from_dict(values)


def from_dict(values: Mapping[str, Any]) -> PipelineConfig:
    top_types = field_types(PipelineConfig)
    kwargs = {}
    for key, value in values.items():
        if key in SECTIONS:
            cls = SECTIONS[key]
            types = field_types(cls)
            unknown = sorted(set(value) - set(types))
            if unknown:
                raise ValueError(f"unknown settings in '{key}': {', '.join(unknown)}")
            kwargs[key] = cls(**{k: _convert(v, types[k], f"{key}.{k}")
                                 for k, v in value.items()})
        elif key in top_types:
            kwargs[key] = _convert(value, top_types[key], key)
        else:
            raise ValueError(f"unknown setting '{key}' (sections: {', '.join(SECTIONS)})")
    return PipelineConfig(**kwargs)
