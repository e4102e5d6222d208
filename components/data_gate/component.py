"""DataGate component.

Tested end to end: tests/e2e/test_bad_input.py.

ExampleValidator only records anomalies; this gate turns them into a failed
run, with one line per anomaly naming the split and feature. It also checks
what a schema cannot express: the training split has at least two classes, no two
labels are one number written two ways ('1' in one file, '1.0' in another), every
evaluation label was seen in training, and the evaluation split is not empty and
holds every class of the training split (else the gate could not judge the model);
those messages name the likely cause (identical rows stay together in the hash
split) and the settings that fix it.
"""

import json
import os
from typing import Optional

from tensorflow_metadata.proto.v0 import anomalies_pb2, statistics_pb2
from tfx.dsl.component.experimental.annotations import InputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import io_utils

from components.text_example_gen.parsing import integer_label
from models.redaction import text_redactor
from serving.contract import ANOMALIES_FILE, LABEL_FEATURE, STATISTICS_FILE, TEXT_FEATURE


class DataValidationError(RuntimeError):
    """The data failed validation; the message lists every problem."""


def anomaly_entries(anomalies: anomalies_pb2.Anomalies, shown) -> list:
    """(feature, or None for the dataset, short description, description) of every anomaly
    in one split's ``anomalies``, the descriptions through ``shown`` (redaction): TFDV's
    name values, raw texts where the statistics hold them (privacy.at_ingestion false)."""
    found = sorted(anomalies.anomaly_info.items())
    if anomalies.HasField("dataset_anomaly_info"):
        found.append((None, anomalies.dataset_anomaly_info))
    descriptions = shown([info.description for _, info in found])
    return [(feature, info.short_description, description)
            for (feature, info), description in zip(found, descriptions)]


def _anomaly_lines(split: str, anomalies: anomalies_pb2.Anomalies, shown) -> list[str]:
    """One line per anomaly (``anomaly_entries``)."""
    lines = []
    for feature, short, description in anomaly_entries(anomalies, shown):
        where = "dataset" if feature is None else f"feature '{feature}'"
        lines.append(f"split '{split}', {where}: {short}: {description}")
    return lines


FIX_SPLIT = ("add rows (distinct ones), raise data.eval_fraction, or give an eval set "
             "of your own (data.presplit: train/ and eval/ folders)")


def _feature(stats: statistics_pb2.DatasetFeatureStatisticsList, name: str):
    for dataset in stats.datasets:
        for feature in dataset.features:
            if feature.path.step[-1:] == [name] or feature.name == name:
                return feature
    return None


def _label_counts(stats: statistics_pb2.DatasetFeatureStatisticsList,
                  label_feature: str) -> dict[str, int]:
    feature = _feature(stats, label_feature)
    if feature is None:
        return {}
    return {b.label: int(b.sample_count) for b in feature.string_stats.rank_histogram.buckets}


def _label_values(stats: statistics_pb2.DatasetFeatureStatisticsList,
                  label_feature: str) -> set[str]:
    return set(_label_counts(stats, label_feature))


def _rows(stats: statistics_pb2.DatasetFeatureStatisticsList) -> int:
    return sum(dataset.num_examples for dataset in stats.datasets)


def _split_problems(stats_by_split: dict, label_feature: str, text_feature: str,
                    train_split: str, eval_split: str, window_spans: int = 1) -> list[str]:
    """The eval split is empty, or lacks classes the train split has."""
    if eval_split not in stats_by_split or train_split not in stats_by_split:
        return []
    train = stats_by_split[train_split]
    if _rows(stats_by_split[eval_split]) == 0:
        text = _feature(train, text_feature)
        distinct = f", only {text.string_stats.unique} distinct texts" if text else ""
        return [f"split '{eval_split}' is empty: all {_rows(train)} rows went to "
                f"'{train_split}'{distinct}. The split keeps identical rows on one "
                f"side, so duplicates collapse into a few draws; {FIX_SPLIT}"]
    train_counts = _label_counts(train, label_feature)
    missing = sorted(set(train_counts) - _label_values(stats_by_split[eval_split],
                                                       label_feature))
    if not missing:
        return []
    counts = ", ".join(f"{label}: {train_counts[label]}" for label in missing)
    window = (f" With data.window_spans {window_spans}, '{train_split}' also holds the "
              f"older spans whole, and eval comes from the newest span only: a class only "
              f"older spans have (a retired label) is in no eval split; let its spans leave "
              f"the window, or train with data.window_spans 1." if window_spans > 1 else "")
    return [f"split '{eval_split}' has no rows of class(es) {missing} that split "
            f"'{train_split}' has (rows there: {counts}), so the gate cannot judge the "
            f"model on them. The split keeps identical rows together: a class with "
            f"few (or few distinct) rows can land wholly in '{train_split}'; {FIX_SPLIT}"
            f"{window}"]


def _numbers_written_twice(stats_by_split: dict, label_feature: str) -> list[str]:
    """Labels of every split that spell one number two ways: two classes for one. Each
    file is checked as it is read; this catches files that differ ('1' and '1.0')."""
    spellings: dict = {}
    for label in sorted(set().union(*(_label_values(stats, label_feature)
                                      for stats in stats_by_split.values()))):
        number = integer_label(label)
        if number is not None:
            spellings.setdefault(number, []).append(label)
    return [f"feature '{label_feature}': labels {same} are one number written "
            f"{len(same)} ways, so {len(same)} classes (files written differently: a "
            f"float column written by pandas?); write each label one way in every file"
            for same in spellings.values() if len(same) > 1]


def check(anomalies_by_split: dict[str, anomalies_pb2.Anomalies],
          stats_by_split: dict[str, statistics_pb2.DatasetFeatureStatisticsList],
          label_feature: str, train_split: str = "train", eval_split: str = "eval",
          text_feature: str = TEXT_FEATURE, two_classes_for: str = "",
          privacy: Optional[dict] = None, window_spans: int = 1) -> None:
    """Raises DataValidationError listing every anomaly and label problem;
    ``two_classes_for`` names a setting that needs exactly two classes (eval.metric auc);
    ``privacy`` (the run's settings) adds custom patterns to what anomaly descriptions
    are redacted of; ``window_spans`` (data.window_spans) explains a class only older
    spans of the training window have."""
    shown = text_redactor(privacy)
    problems = [line for split in sorted(anomalies_by_split)
                for line in _anomaly_lines(split, anomalies_by_split[split], shown)]
    for split in sorted(stats_by_split):  # TFDV lists the 1,000 most common values only
        feature = _feature(stats_by_split[split], label_feature)
        listed = len(feature.string_stats.rank_histogram.buckets) if feature else 0
        if feature is not None and feature.string_stats.unique > listed:
            problems.append(f"split '{split}', feature '{label_feature}': "
                            f"{feature.string_stats.unique} classes, more than the {listed} "
                            f"the statistics list: the gate cannot compare the splits' "
                            f"classes (at most {listed} classes are supported)")
    if any("the statistics list" in problem for problem in problems):  # nothing below holds
        raise DataValidationError("data validation failed:\n  " + "\n  ".join(problems))
    problems += _split_problems(stats_by_split, label_feature, text_feature, train_split,
                                eval_split, window_spans)
    train_labels = _label_values(stats_by_split[train_split], label_feature)
    if len(train_labels) < 2:
        problems.append(f"split '{train_split}', feature '{label_feature}': only "
                        f"{len(train_labels)} class(es) {sorted(train_labels)}; a "
                        f"classifier needs at least 2")
    elif two_classes_for and len(train_labels) != 2:
        problems.append(f"{two_classes_for} gates the AUC of class 1 against the rest, "
                        f"which means something for two classes only; split "
                        f"'{train_split}' has {len(train_labels)}: set eval.metric to "
                        f"macro_f1, accuracy or min_class_recall")
    problems += _numbers_written_twice(stats_by_split, label_feature)
    for split, stats in sorted(stats_by_split.items()):
        unseen = _label_values(stats, label_feature) - train_labels
        if split != train_split and unseen:
            problems.append(f"split '{split}', feature '{label_feature}': labels "
                            f"{sorted(unseen)} never occur in split '{train_split}'")
    if problems:
        raise DataValidationError(
            "data validation failed:\n  " + "\n  ".join(problems))


def _load_splits(artifact, file_name: str, proto_cls) -> dict:
    return {split: proto_cls.FromString(io_utils.read_bytes_file(
                os.path.join(artifact_utils.get_split_uri([artifact], split), file_name)))
            for split in artifact_utils.decode_split_names(artifact.split_names)}


@component
def DataGate(statistics: InputArtifact[standard_artifacts.ExampleStatistics],
             anomalies: InputArtifact[standard_artifacts.ExampleAnomalies],
             label_feature: Parameter[str] = LABEL_FEATURE,
             text_feature: Parameter[str] = TEXT_FEATURE,
             two_classes_for: Parameter[str] = "",
             privacy: Parameter[str] = "", window_spans: Parameter[int] = 1) -> None:
    """Fails the run if ExampleValidator found anomalies, the labels are unusable, the
    eval split cannot judge the model, or ``two_classes_for`` (a setting) needs two
    classes and the data has another number. ``privacy``: the run's privacy settings as
    JSON (custom patterns redacted from anomaly descriptions)."""
    check(_load_splits(anomalies, ANOMALIES_FILE, anomalies_pb2.Anomalies),
          _load_splits(statistics, STATISTICS_FILE,
                       statistics_pb2.DatasetFeatureStatisticsList),
          label_feature, text_feature=text_feature, two_classes_for=two_classes_for,
          privacy=json.loads(privacy) if privacy else None, window_spans=window_spans)
