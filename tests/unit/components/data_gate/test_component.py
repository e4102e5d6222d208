"""DataGate's checks on real statistics protos (end to end: tests/e2e/test_bad_input.py)."""
import pytest
from tensorflow_metadata.proto.v0 import anomalies_pb2, statistics_pb2

from components.data_gate.component import DataValidationError, check


def _stats(counts: dict) -> statistics_pb2.DatasetFeatureStatisticsList:
    """Statistics of one split whose label feature has these value counts."""
    stats = statistics_pb2.DatasetFeatureStatisticsList()
    dataset = stats.datasets.add(num_examples=sum(counts.values()))
    feature = dataset.features.add()
    feature.path.step.append("label")
    for label, count in counts.items():
        feature.string_stats.rank_histogram.buckets.add(label=label, sample_count=count)
    return stats


def test_one_number_written_two_ways_across_files_is_refused():
    """Each file had one way ('1' in the old export, '1.0' in pandas' new one): the reader
    could not see it, and an inferred schema took them as two classes."""
    stats = {"train": _stats({"0": 5, "1": 5, "0.0": 4, "1.0": 4, "x": 1}),
             "eval": _stats({"0": 1, "1": 1, "0.0": 1, "1.0": 1, "x": 1})}
    anomalies = {split: anomalies_pb2.Anomalies() for split in stats}
    with pytest.raises(DataValidationError) as error:
        check(anomalies, stats, "label")
    lines = str(error.value).splitlines()[1:]
    assert [line.strip() for line in lines] == [
        f"feature 'label': labels {same} are one number written 2 ways, so 2 classes "
        f"(files written differently: a float column written by pandas?); write each "
        f"label one way in every file" for same in (["0", "0.0"], ["1", "1.0"])]
    # one way each, and labels that only look alike ('01', '1.10'): passes
    labels = {"0": 5, "1": 5, "01": 2, "1.1": 2, "1.10": 2}
    check(anomalies, {"train": _stats(labels), "eval": _stats(labels)}, "label")


def test_eval_metric_auc_needs_exactly_two_classes():
    """The AUC the gate reads is class 1 against the rest: with three classes it blessed on
    one class's AUC, and the card showed '-' for the metric that blessed it."""
    three = {"neg": 5, "neutral": 5, "pos": 5}
    stats = {"train": _stats(three), "eval": _stats(three)}
    anomalies = {split: anomalies_pb2.Anomalies() for split in stats}
    with pytest.raises(DataValidationError, match=r"eval.metric auc gates the AUC of class 1 "
                                                  r"against the rest, .* split 'train' has 3: "
                                                  r"set eval.metric to macro_f1"):
        check(anomalies, stats, "label", two_classes_for="eval.metric auc")
    check(anomalies, stats, "label")  # other metrics take three classes
    two = {"neg": 5, "pos": 5}
    check(anomalies, {"train": _stats(two), "eval": _stats(two)}, "label",
          two_classes_for="eval.metric auc")


def test_anomaly_descriptions_are_redacted_in_the_error():
    """With privacy.at_ingestion false and an inferred schema, TFDV's description listed
    raw texts missing from the schema; the error goes to stdout, the history and the
    report. Redacted of the built-in types and the run's custom patterns."""
    two = {"neg": 5, "pos": 5}
    stats = {"train": _stats(two), "eval": _stats(two)}
    anomalies = {split: anomalies_pb2.Anomalies() for split in stats}
    info = anomalies["eval"].anomaly_info["text"]
    info.short_description = "Unexpected string values"
    info.description = ("Examples contain values missing from the schema: mail "
                        "john.doe@example.com about TCK-123456 (~50%).")
    with pytest.raises(DataValidationError) as error:
        check(anomalies, stats, "label",
              privacy={"custom_patterns": [["ticket", "TCK-[0-9]{6}"]]})
    message = str(error.value)
    assert "split 'eval', feature 'text': Unexpected string values: Examples contain " \
           "values missing from the schema: mail " in message
    assert "john.doe@example.com" not in message and "TCK-123456" not in message


def test_a_class_only_older_spans_have_names_the_window():
    """With data.window_spans > 1, train holds older spans whole and eval the newest span's
    share: a retired label refused every run with advice (raise data.eval_fraction) no
    setting of the split could follow."""
    stats = {"train": _stats({"pos": 40, "neg": 40, "legacy": 50}),
             "eval": _stats({"pos": 4, "neg": 4})}
    anomalies = {split: anomalies_pb2.Anomalies() for split in stats}
    with pytest.raises(DataValidationError, match=r"no rows of class\(es\) \['legacy'\].*"
                                                  r"With data.window_spans 3, 'train' also "
                                                  r"holds the older spans whole"):
        check(anomalies, stats, "label", window_spans=3)
    with pytest.raises(DataValidationError) as one_span:
        check(anomalies, stats, "label")
    assert "window_spans" not in str(one_span.value)


def test_more_classes_than_the_statistics_list_is_said_as_such():
    """TFDV lists the 1,000 most common values: with 1,500 classes the gate named classes
    'missing from eval' that eval had."""
    labels = {f"c{i}": 2 for i in range(1000)}
    stats = {"train": _stats(labels), "eval": _stats(labels)}
    for split in stats.values():
        split.datasets[0].features[0].string_stats.unique = 1500
    anomalies = {split: anomalies_pb2.Anomalies() for split in stats}
    with pytest.raises(DataValidationError, match=r"split 'eval', feature 'label': 1500 "
                                                  r"classes, more than the 1000 the statistics"):
        check(anomalies, stats, "label")
