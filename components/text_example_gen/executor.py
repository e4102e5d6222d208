"""Beam executor of TextExampleGen: files -> tf.Examples with ``text`` and ``label``."""
from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict

import apache_beam as beam
import tensorflow as tf
from google.protobuf import json_format, struct_pb2
from tfx.components.example_gen import base_example_gen_executor
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import standard_component_specs

from components.text_example_gen import parsing
from models import features

TEXT_FEATURE = features.TEXT
LABEL_FEATURE = features.LABEL


def reader_config_to_proto(config: parsing.ReaderConfig) -> example_gen_pb2.CustomConfig:
    struct = struct_pb2.Struct()
    struct.update({"text_column": config.text_column, "label_column": config.label_column,
                   "file_format": config.file_format})
    custom = example_gen_pb2.CustomConfig()
    custom.custom_config.Pack(struct)
    return custom


def reader_config_from_exec_properties(exec_properties: Dict[str, Any]) -> parsing.ReaderConfig:
    raw = exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY)
    if not raw:
        return parsing.ReaderConfig()
    custom = example_gen_pb2.CustomConfig()
    json_format.Parse(raw, custom)
    struct = struct_pb2.Struct()
    custom.custom_config.Unpack(struct)
    return parsing.ReaderConfig(**json.loads(json_format.MessageToJson(struct)))


def _to_example(record: parsing.Record) -> tf.train.Example:
    def feature(value: str) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode("utf-8")]))
    return tf.train.Example(features=tf.train.Features(feature={
        TEXT_FEATURE: feature(record.text), LABEL_FEATURE: feature(record.label)}))


def _read_examples(path: str, config: parsing.ReaderConfig):
    records = parsing.read_file(path, config, opener=beam.io.filesystems.FileSystems.open)
    logging.info("%s: %d records", path, len(records))
    return [_to_example(r) for r in records]


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(tf.train.Example)
def _TextToExample(pipeline: beam.Pipeline, exec_properties: Dict[str, Any],
                   split_pattern: str) -> beam.PCollection:
    """One split: every file matching ``split_pattern`` under ``input_base``."""
    config = reader_config_from_exec_properties(exec_properties)
    pattern = os.path.join(exec_properties[standard_component_specs.INPUT_BASE_KEY],
                           split_pattern)
    files = sorted(f for f in fileio.glob(pattern) if not fileio.isdir(f))
    if not files:
        raise parsing.InputDataError(f"no input files match {pattern}")
    for path in files:  # fail fast, before Beam starts, on unknown extensions
        parsing.detect_format(path, config.file_format)
    return (pipeline
            | "ListFiles" >> beam.Create(files)
            | "ParseFiles" >> beam.FlatMap(_read_examples, config)
            | "Redistribute" >> beam.Reshuffle())


class Executor(base_example_gen_executor.BaseExampleGenExecutor):
    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        return _TextToExample
