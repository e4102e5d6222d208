"""ModelCard executor: the candidate SavedModel copied with ``assets.extra/model_card.md``.

Everything on the card comes from the input artifacts and the component's settings
(no ML Metadata queries), read and written with ``tf.io.gfile``: local folders,
``gs://`` and ``s3://`` alike. The Trainer's artifact is left as it is.
"""
from __future__ import annotations

import datetime
import json
import os
import re
import unicodedata
from collections import Counter

import tensorflow as tf
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import path_utils

from components import eval_results
from components.model_card import card
from serving.contract import (ASSETS_EXTRA, INPUT_CONTRACT, MODEL_INFO_FILE, STATISTICS_FILE,
                              TRAIN_STATS_FILE)

SCRIPT_SAMPLE = 500  # training texts whose letters give the script shares
INPUT_ROLES = ("examples", "statistics", "model", "model_run", "evaluation", "model_blessing")


def copy_tree(source: str, target: str) -> None:
    """Copies the folder ``source`` to ``target`` (either a local path or a URI)."""
    for folder, _, files in tf.io.gfile.walk(source):
        relative = os.path.relpath(folder, source) if folder != source else ""
        tf.io.gfile.makedirs(os.path.join(target, relative))
        for name in files:
            tf.io.gfile.copy(os.path.join(folder, name), os.path.join(target, relative, name),
                             overwrite=True)


def _read_json(path: str) -> dict:
    if not tf.io.gfile.exists(path):
        return {}
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def split_statistics(statistics, label_feature: str) -> tuple[dict, dict]:
    """({split: rows}, {split: {label: rows}}) from StatisticsGen's output."""
    import tensorflow_data_validation as tfdv

    rows, classes = {}, {}
    for split in artifact_utils.decode_split_names(statistics.split_names):
        stats = tfdv.load_stats_binary(os.path.join(
            artifact_utils.get_split_uri([statistics], split), STATISTICS_FILE))
        dataset = stats.datasets[0]
        rows[split] = int(dataset.num_examples)
        label = next((f for f in dataset.features
                      if list(f.path.step) == [label_feature] or f.name == label_feature), None)
        if label is not None:
            classes[split] = {b.label: int(b.sample_count)
                              for b in label.string_stats.rank_histogram.buckets}
    return rows, classes


def script_shares(texts) -> dict:
    """{Unicode script (the first word of a letter's name): share of all letters}."""
    counts = Counter(unicodedata.name(ch, "UNKNOWN").split()[0]
                     for text in texts for ch in text if ch.isalpha())
    total = sum(counts.values())
    return {script: n / total for script, n in counts.items()} if total else {}


def sample_texts(examples, text_feature: str, limit: int = SCRIPT_SAMPLE) -> list:
    """Up to ``limit`` texts of the train split (ExampleGen's gzipped TFRecords)."""
    pattern = os.path.join(artifact_utils.get_split_uri([examples], "train"), "*")
    files = sorted(tf.io.gfile.glob(pattern))
    texts = []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP").take(limit):
        example = tf.train.Example.FromString(record.numpy())
        texts += [v.decode("utf-8", "replace")
                  for v in example.features.feature[text_feature].bytes_list.value]
    return texts


def sources(examples, input_base: str, file_patterns: list) -> list:
    """What ExampleGen read: the folder, its patterns, the span and the files' size."""
    lines = [f"{input_base} (files: {', '.join(file_patterns)})"]
    span = examples.get_int_custom_property("span") if examples.has_custom_property(
        "span") else None
    spans = span is not None and any("{SPAN}" in p for p in file_patterns)
    if spans:
        older = json.loads(examples.get_string_custom_property("window_spans_read")) \
            if examples.has_custom_property("window_spans_read") else None
        lines.append(f"span {span} (the newest; " + (
            f"older spans of the window: {', '.join(map(str, older)) or 'none'})"
            if older is not None else "older spans as data.window_spans says)"))
    fingerprint = examples.get_string_custom_property("input_fingerprint") \
        if examples.has_custom_property("input_fingerprint") else ""
    files = sum(int(n) for n in re.findall(r"num_files:(\d+)", fingerprint))
    size = sum(int(n) for n in re.findall(r"total_bytes:(\d+)", fingerprint))
    if files:  # TFX's fingerprint: the newest span's files only
        lines.append(f"{files} file(s), {size} bytes" + (" in the newest span" if spans
                                                         else ""))
    return lines


def _blessed(blessing):
    if not blessing.has_custom_property("blessed"):
        return None
    return blessing.get_int_custom_property("blessed") == 1


class Executor(base_executor.BaseExecutor):
    """Writes the candidate model plus its card to the output ``model_with_card``."""

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        inputs = {key: artifact_utils.get_single_instance(input_dict[key])
                  for key in INPUT_ROLES}
        output = artifact_utils.get_single_instance(output_dict["model_with_card"])
        facts = self.gather(inputs, output, exec_properties)
        copy_tree(inputs["model"].uri, output.uri)
        with tf.io.gfile.GFile(card.card_path(output.uri), "w") as f:
            f.write(card.markdown(facts))

    def gather(self, inputs: dict, output, exec_properties) -> card.CardFacts:
        """The card's facts from the input artifacts and the component's settings."""
        model_dir = path_utils.serving_model_path(inputs["model"].uri)
        info = _read_json(os.path.join(model_dir, ASSETS_EXTRA, MODEL_INFO_FILE))
        labels = info.get("labels", [])
        training = _read_json(os.path.join(inputs["model_run"].uri, TRAIN_STATS_FILE))
        rows, classes = split_statistics(inputs["statistics"],
                                         exec_properties["label_feature"])
        texts = sample_texts(inputs["examples"], exec_properties["text_feature"])
        data = card.DataFacts(
            sources=sources(inputs["examples"], exec_properties["input_base"],
                            json.loads(exec_properties["file_patterns"])),
            rows=rows, classes=classes, scripts=script_shares(texts),
            scripts_sample=len(texts), unknown_share=training.get("unknown_share"))
        evaluation = eval_results.read(inputs["evaluation"].uri, labels,
                                       exec_properties.get("gated_metric", ""))
        run_id = self._context.pipeline_run_id if self._context else None
        return card.CardFacts(
            model_name=exec_properties["model_name"],
            run_id=run_id or f"not known to this runner (output {output.uri})",
            created=datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"),
            labels=labels, data=data, training=training, evaluation=evaluation,
            gate=eval_results.gate_checks(inputs["evaluation"].uri, evaluation),
            blessed=_blessed(inputs["model_blessing"]),
            input_contract=info.get(INPUT_CONTRACT, {}),
            intended_use=exec_properties["intended_use"],
            limitations=exec_properties["limitations"], owners=exec_properties["owners"],
            lineage=[(role, a.id, a.uri) for role, a in inputs.items()]
            + [("model_with_card (this model)", output.id, output.uri)])
