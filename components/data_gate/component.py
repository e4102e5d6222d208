"""DataGate component.

ExampleValidator only records anomalies; this gate turns them into a failed
run, with one line per anomaly naming the split and feature. It also checks
what a schema cannot express: the training split has at least two classes and
every evaluation label was seen in training.
"""

import os

from tensorflow_metadata.proto.v0 import anomalies_pb2, statistics_pb2
from tfx.dsl.component.experimental.annotations import InputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import io_utils

ANOMALIES_FILE = "SchemaDiff.pb"
STATS_FILE = "FeatureStats.pb"


class DataValidationError(RuntimeError):
    """The data failed validation; the message lists every problem."""


def _anomaly_lines(split: str, anomalies: anomalies_pb2.Anomalies) -> list[str]:
    lines = []
    for feature, info in sorted(anomalies.anomaly_info.items()):
        lines.append(f"split '{split}', feature '{feature}': {info.short_description}: "
                     f"{info.description}")
    if anomalies.HasField("dataset_anomaly_info"):
        info = anomalies.dataset_anomaly_info
        lines.append(f"split '{split}', dataset: {info.short_description}: {info.description}")
    return lines


def _label_values(stats: statistics_pb2.DatasetFeatureStatisticsList,
                  label_feature: str) -> set[str]:
    for dataset in stats.datasets:
        for feature in dataset.features:
            if feature.path.step[-1:] == [label_feature] or feature.name == label_feature:
                return {b.label for b in feature.string_stats.rank_histogram.buckets}
    return set()


def check(anomalies_by_split: dict[str, anomalies_pb2.Anomalies],
          stats_by_split: dict[str, statistics_pb2.DatasetFeatureStatisticsList],
          label_feature: str, train_split: str = "train") -> None:
    """Raises DataValidationError listing every anomaly and label problem."""
    problems = [line for split in sorted(anomalies_by_split)
                for line in _anomaly_lines(split, anomalies_by_split[split])]
    train_labels = _label_values(stats_by_split[train_split], label_feature)
    if len(train_labels) < 2:
        problems.append(f"split '{train_split}', feature '{label_feature}': only "
                        f"{len(train_labels)} class(es) {sorted(train_labels)}; a "
                        f"classifier needs at least 2")
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
             label_feature: Parameter[str] = "label") -> None:
    """Fails the run if ExampleValidator found anomalies or the labels are unusable."""
    check(_load_splits(anomalies, ANOMALIES_FILE, anomalies_pb2.Anomalies),
          _load_splits(statistics, STATS_FILE, statistics_pb2.DatasetFeatureStatisticsList),
          label_feature)
