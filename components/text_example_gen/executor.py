"""Beam executor of TextExampleGen: files -> tf.Examples with ``text`` and ``label``
(texts redacted first with the ``privacy`` settings; counts on the output artifact)."""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import apache_beam as beam
import tensorflow as tf
from google.protobuf import json_format, struct_pb2
from tfx.components.example_gen import base_example_gen_executor
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils
from tfx.types import standard_component_specs

from components.text_example_gen import parsing, redact, split
from components.text_example_gen.files import data_files, list_spans, matches, training_window
from serving.contract import LABEL_FEATURE, TEXT_FEATURE, TEXT_PAIR_FEATURE


READER_KEY = "reader"  # the reader settings, as ReaderConfig.to_json() writes them
WINDOW_KEY = "window"
PRIVACY_KEY = "privacy"
EXCERPT_KEY = "excerpt_patterns"  # custom patterns an error's quote of a row replaces
SPLIT_KEY = "split"  # how one input split is cut into train/eval: stratified or hash
SPLIT_METHODS = ("stratified", "hash")


def reader_config_to_proto(config: parsing.ReaderConfig, window: Optional[dict] = None,
                           privacy: Optional[dict] = None,
                           split_method: str = "hash",
                           excerpt_patterns: Sequence = ()) -> example_gen_pb2.CustomConfig:
    """TextExampleGen's custom config: the reader settings (``config.to_json()``, the
    format every component that reads data files takes them in), the span window
    ({"spans", "span_pattern", "patterns"}), the redaction settings ({"redact",
    "custom_patterns"}), the split method and the (name, pattern) pairs an error's quote
    of a row replaces (``parsing.read_records``'s ``custom_patterns``)."""
    if split_method not in SPLIT_METHODS:
        raise ValueError(f"data.split must be one of {', '.join(SPLIT_METHODS)}, not "
                         f"'{split_method}'")
    struct = struct_pb2.Struct()
    struct.update({READER_KEY: config.to_json(), SPLIT_KEY: split_method})
    if window:
        struct.update({WINDOW_KEY: window})
    if privacy:
        struct.update({PRIVACY_KEY: privacy})
    if excerpt_patterns:
        struct.update({EXCERPT_KEY: [list(pair) for pair in excerpt_patterns]})
    custom = example_gen_pb2.CustomConfig()
    custom.custom_config.Pack(struct)
    return custom


def _custom_config(exec_properties: Dict[str, Any]) -> dict:
    raw = exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY)
    if not raw:
        return {}
    custom = example_gen_pb2.CustomConfig()
    json_format.Parse(raw, custom)
    struct = struct_pb2.Struct()
    custom.custom_config.Unpack(struct)
    return json.loads(json_format.MessageToJson(struct))


def reader_config_from_exec_properties(exec_properties: Dict[str, Any]) -> parsing.ReaderConfig:
    """The reader settings ``reader_config_to_proto`` packed (none: the defaults).

    Raises:
      ValueError: the settings are separate keys, as specs compiled before the one wire
        format hold them; reading them as defaults would misread the files silently.
    """
    custom = _custom_config(exec_properties)
    stale = sorted(set(custom) & {f.name for f in dataclasses.fields(parsing.ReaderConfig)})
    if READER_KEY not in custom and stale:
        raise ValueError(f"TextExampleGen's custom_config holds reader settings as separate "
                         f"keys ({', '.join(stale)}): the pipeline spec was compiled by an "
                         f"older version of this project; compile it again (bert-pipeline "
                         f"kubeflow compile) with the image that runs it")
    return parsing.ReaderConfig.from_json(custom.get(READER_KEY, "{}"))


def stratified_fraction(exec_properties: Dict[str, Any]) -> Optional[float]:
    """The eval fraction when one input split is cut by label (``split`` stratified,
    single-label data, train and eval output splits); None: TFX's hash split, or the
    input's own splits."""
    if _custom_config(exec_properties).get(SPLIT_KEY, "hash") != "stratified" or \
            reader_config_from_exec_properties(exec_properties).multi_label:
        return None
    output_config = example_gen_pb2.Output()
    json_format.Parse(exec_properties.get(standard_component_specs.OUTPUT_CONFIG_KEY) or "{}",
                      output_config)
    buckets = {s.name: s.hash_buckets for s in output_config.split_config.splits}
    if sorted(buckets) != sorted(split.SPLITS):
        return None
    return buckets["eval"] / (buckets["train"] + buckets["eval"])


def excerpt_patterns_from_exec_properties(exec_properties: Dict[str, Any]) -> list:
    """The (name, pattern) pairs an error's quote of a row replaces; a spec compiled
    before they were its own key has them only in the redaction settings, if at all."""
    custom = _custom_config(exec_properties)
    if EXCERPT_KEY in custom:
        return custom[EXCERPT_KEY]
    return (custom.get(PRIVACY_KEY) or {}).get("custom_patterns", [])


def privacy_from_exec_properties(exec_properties: Dict[str, Any]) -> Optional[dict]:
    """The redaction settings, or None when texts are written as read."""
    privacy = _custom_config(exec_properties).get(PRIVACY_KEY)
    return privacy if redact.enabled(privacy) else None


WINDOW_READ = "window_spans_read"  # examples' custom property: the older spans read (JSON)


def older_spans(exec_properties: Dict[str, Any]) -> List[Tuple[int, str]]:
    """(number, folder) of the spans before the newest one inside the training window."""
    window = _custom_config(exec_properties).get(WINDOW_KEY)
    if not window:
        return []
    return training_window(list_spans(exec_properties[standard_component_specs.INPUT_BASE_KEY],
                                      window["span_pattern"]),
                           int(exec_properties["span"]), int(window["spans"]))


def older_span_patterns(exec_properties: Dict[str, Any]) -> List[str]:
    """File patterns of the spans before the newest one inside the training window."""
    window = _custom_config(exec_properties).get(WINDOW_KEY)
    return [pattern.replace(window["span_pattern"], folder)
            for _, folder in older_spans(exec_properties) for pattern in window["patterns"]]


def input_files(input_base: str, pattern: str, presplit: bool = False) -> List[str]:
    """``data_files`` of ``pattern`` in ``input_base``; InputDataError naming the setting
    to change when there are none."""
    full = os.path.join(input_base, pattern)
    files, folders = matches(full)
    skipped = [folder for folder in folders if data_files(os.path.join(folder, "*"))]
    if skipped:
        logging.warning(
            "%d folder(s) match %s and hold files, which are NOT read (%s): %s%s",
            len(skipped), full, "data.presplit reads the files in train/ and eval/, not "
            "their subfolders" if presplit else "data.file_pattern reads the files it "
            "matches, not folders", ", ".join(skipped[:5]) + (", ..." if len(skipped) > 5
                                                              else ""),
            "" if presplit else "; to read them, set data.file_pattern to a glob of their "
            "files (e.g. '*/*.csv')")
    if files:
        return files
    if not fileio.exists(input_base):
        raise parsing.InputDataError(
            f"input folder {input_base} does not exist; set data.input_dir to the folder "
            f"that holds the data files")
    hint = ("data.presplit reads the data files in the train/ and eval/ folders of "
            "data.input_dir" if presplit else
            "set data.file_pattern to a glob of the data files in data.input_dir (default: *)")
    raise parsing.InputDataError(f"no input files match {full} (hidden files are skipped); "
                                 f"{hint}")


def _presplit(exec_properties: Dict[str, Any]) -> bool:
    """Whether the input config names several splits (train/ and eval/ folders)."""
    raw = exec_properties.get(standard_component_specs.INPUT_CONFIG_KEY)
    return bool(raw) and len(json.loads(raw).get("splits", [])) > 1


def _to_example(record: parsing.Record) -> tf.train.Example:
    """``text``, ``text_pair`` (sentence pairs only) and ``label`` (one value per label)."""
    def feature(*values: str) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[v.encode("utf-8") for v in values]))
    example = {TEXT_FEATURE: feature(record.text), LABEL_FEATURE: feature(*record.labels)}
    if record.text_pair is not None:
        example[TEXT_PAIR_FEATURE] = feature(record.text_pair)
    return tf.train.Example(features=tf.train.Features(feature=example))


def _read_examples(path: str, config: parsing.ReaderConfig, excerpt_patterns: list):
    """The file's examples, as its records are read (a worker holds a record, not the
    file); the file's bad rows fail the run after its last good row."""
    count = 0
    for record in parsing.iter_file(path, config, beam.io.filesystems.FileSystems.open,
                                    excerpt_patterns):
        count += 1
        yield _to_example(record)
    logging.info("%s: %d records", path, count)


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(tf.train.Example)
def _TextToExample(pipeline: beam.Pipeline, exec_properties: Dict[str, Any],
                   split_pattern: str) -> beam.PCollection:
    """One split: every file matching ``split_pattern`` under ``input_base``."""
    config = reader_config_from_exec_properties(exec_properties)
    files = input_files(exec_properties[standard_component_specs.INPUT_BASE_KEY],
                        split_pattern, _presplit(exec_properties))
    for path in files:  # fail fast, before Beam starts, on unknown extensions
        parsing.detect_format(path, config.file_format)
    return (pipeline
            | "ListFiles" >> beam.Create(files)
            | "ParseFiles" >> beam.FlatMap(_read_examples, config,
                                           excerpt_patterns_from_exec_properties(exec_properties))
            | "Redistribute" >> beam.Reshuffle())


class Executor(base_example_gen_executor.BaseExampleGenExecutor):
    """The newest span splits as configured; older spans in the window all train; texts
    are redacted before they are written."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        return _TextToExample

    def GenerateExamplesByBeam(self, pipeline, exec_properties):
        fraction = stratified_fraction(exec_properties)
        if fraction is None:
            splits = super().GenerateExamplesByBeam(pipeline, exec_properties)
        else:
            splits = self._stratified(pipeline, exec_properties, fraction)
        older = [pipeline | f"OlderSpan[{i}]" >> _TextToExample(exec_properties, pattern)
                 for i, pattern in enumerate(older_span_patterns(exec_properties))]
        if older:
            logging.info("training window: %d older file patterns", len(older))
            splits["train"] = [splits["train"], *older] | "Window" >> beam.Flatten()
        privacy = privacy_from_exec_properties(exec_properties)
        if privacy:
            splits = {name: examples | f"Redact[{name}]" >> redact.RedactTexts(privacy, name)
                      for name, examples in splits.items()}
        if {"train", "eval"} <= set(splits):
            splits = splits | "NoEvalTextInTrain" >> split.DropEvalTextsFromTrain()
        return splits

    @staticmethod
    def _stratified(pipeline, exec_properties, fraction: float) -> dict:
        """The one input split read, then cut by label (split.StratifiedSplit)."""
        input_config = example_gen_pb2.Input()
        json_format.Parse(exec_properties[standard_component_specs.INPUT_CONFIG_KEY],
                          input_config)
        logging.info("stratified split: %.0f%% of each class to eval", 100 * fraction)
        return dict(pipeline
                    | "InputToRecord" >> _TextToExample(exec_properties,
                                                        input_config.splits[0].pattern)
                    | "SplitData" >> split.StratifiedSplit(fraction))

    def _make_beam_pipeline(self):
        self._pipeline = super()._make_beam_pipeline()  # its result has the counters
        return self._pipeline

    def Do(self, input_dict, output_dict, exec_properties):
        super().Do(input_dict, output_dict, exec_properties)
        examples = output_dict[standard_component_specs.EXAMPLES_KEY][0]
        dropped = split.train_rows_in_eval(self._pipeline.result)
        if dropped:
            logging.warning("%d train rows dropped: their text is also in the eval split "
                            "(case and spaces aside, after redaction)", dropped)
        examples.set_int_custom_property(split.TRAIN_ROWS_IN_EVAL, dropped)
        if _custom_config(exec_properties).get(WINDOW_KEY):  # DriftCheck compares it with
            examples.set_string_custom_property(  # the window's folders (a cached run's)
                WINDOW_READ, json.dumps([n for n, _ in older_spans(exec_properties)]))
        privacy = privacy_from_exec_properties(exec_properties)
        if privacy:
            found = redact.counts(self._pipeline.result, privacy,
                                  artifact_utils.decode_split_names(examples.split_names))
            logging.info("redacted at ingestion: %s", found)
            examples.set_string_custom_property(redact.PROPERTY, redact.to_property(found))
