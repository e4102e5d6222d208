"""Feedback exported as a span (local/feedback_span.py): an export to a full disk leaves
no span, and its retry exports each row once (a REAL full disk: a small tmpfs; ``mount``
needs root), and one killed (kill -9) at the span's rename is finished or undone by the
next; the span reads back with the pipeline's own reader settings, rows that would not
are left out, and settings no span fits are refused when the config loads."""
import os
import signal
import subprocess
import sys

import pytest

from components.text_example_gen.parsing import read_file
from local import feedback_span
from local.feedback_span import export_span
from pipeline.config import load_config
from serving.feedback import CORRECTIONS, EXPORTED, PREDICTIONS, FeedbackLog
from tests.support.feedback_models import feedback_data
from tests.support.paths import REPO
from tests.support.feedback_disks import fill


def test_an_export_to_a_full_disk_leaves_no_span_and_its_retry_exports_each_row_once(
        small_disk):
    feedback, data = small_disk / "feedback", small_disk / "data"
    log = FeedbackLog(str(feedback))
    ids = log.record("clf", 1, [f"text {i}" for i in range(3)],
                     [[("short", 0.9), ("long", 0.1)]] * 3)
    log.correct([{"id": i, "label": "long"} for i in ids])
    data.mkdir()
    filler = fill(small_disk)
    with pytest.raises(OSError):
        export_span(str(feedback), feedback_data(data, text_column="text"))
    assert os.listdir(data) == []  # no span, no staging folder
    assert not os.path.exists(feedback / EXPORTED)  # nothing marked exported

    os.remove(filler)
    assert export_span(str(feedback), feedback_data(data, text_column="text"))
    assert export_span(str(feedback), feedback_data(data, text_column="text")) is None
    assert sorted((data / "span-1" / "feedback.tsv").read_text().splitlines()) == [
        "text\tlabel", "text 0\tlong", "text 1\tlong", "text 2\tlong"]


TRICKY = 'a "quoted"\ttab and\na newline, long enough'
FLAT = 'a "quoted" tab and a newline, long enough'  # as a file without quoting holds it


@pytest.mark.parametrize("settings, read", [
    ({}, {"text": TRICKY}),
    ({"file_format": "csv"}, {"text": TRICKY}),
    ({"file_pattern": "*.csv"}, {"text": TRICKY}),
    ({"file_pattern": "reviews-*.jsonl"}, {"text": TRICKY}),
    ({"file_format": "jsonl", "text_column": "title,body"}, {"title": TRICKY, "body": None}),
    ({"column_names": ["id", "label", "body"], "text_column": "body"}, {"body": TRICKY}),
    ({"text_column": "title,body"}, {"title": TRICKY, "body": ""}),
    ({"text_column": "2", "label_column": "0"}, {"2": TRICKY}),
    ({"quoting": "none"}, {"text": FLAT}),
    ({"file_format": "csv", "quoting": "none"}, None),  # a comma: left out
])
def test_a_feedback_span_reads_back_with_the_pipelines_own_reader_settings(
        tmp_path, settings, read):
    feedback, data = tmp_path / "feedback", tmp_path / "data"
    log = FeedbackLog(str(feedback))
    ids = log.record("clf", 1, [TRICKY, "plain"], [[("short", 0.9), ("long", 0.1)]] * 2)
    log.correct([{"id": i, "label": "long"} for i in ids])
    config = feedback_data(data, **{"text_column": "text", **settings})

    span = export_span(str(feedback), config)
    [name] = os.listdir(span)
    assert name == config.feedback_file()
    records = read_file(os.path.join(span, name), config.reader_config())
    texts = [] if read is None else [config.text_separator.join(
        v for v in read.values() if v)]
    assert sorted((r.text, r.label) for r in records) == sorted(
        [(t, "long") for t in texts + ["plain"]])


def test_data_settings_no_feedback_span_fits_are_refused_when_the_config_loads(tmp_path):
    def load(**data):
        return load_config(overrides={"schedule.feedback_dir": str(tmp_path),
                                      **{f"data.{k}": v for k, v in data.items()}})

    with pytest.raises(ValueError, match="set data.span_pattern"):
        load()
    with pytest.raises(ValueError, match="data.presplit reads train/ and eval/"):
        load(span_pattern="span-{SPAN}", presplit="true")
    # The export writes with os calls and an atomic rename: into a bucket it wrote a local
    # folder named s3:/..., and marked the rows exported
    with pytest.raises(ValueError, match="not into data.input_dir s3://bucket/reviews"):
        load(span_pattern="span-{SPAN}", input_dir="s3://bucket/reviews")
    with pytest.raises(ValueError, match=r"data.file_pattern '\*.txt'.*widen"):
        load(span_pattern="span-{SPAN}", file_pattern="*.txt")
    assert load(span_pattern="span-{SPAN}", file_pattern="*.txt",
                file_format="tsv").data.feedback_file() == "feedback.txt"
    with pytest.raises(ValueError, match=r"TensorFlow's glob reads \[\^...\] as 'not'"):
        load(span_pattern="span-{SPAN}", file_pattern="[^a]*.csv")
    for pattern, name in (("reviews*", "reviewsfeedback.tsv"), ("[!f]*.tsv", "afeedback.tsv"),
                          ("part-[0-9]?.csv", "part-0x.csv")):
        assert load(span_pattern="span-{SPAN}", file_pattern=pattern).data.feedback_file() \
            == name


def test_rows_the_reader_would_not_read_back_are_left_out_and_stay_waiting(tmp_path, caplog):
    feedback, data = tmp_path / "feedback", tmp_path / "data"
    log = FeedbackLog(str(feedback))
    # quoted; empty; long (the reader reads fields of any length: it is exported)
    texts = ["a carriage\rreturn", " ", "x" * 200_000, "plain"]
    ids = log.record("clf", 1, texts, [[("short", 0.9), ("long", 0.1)]] * 4)
    log.correct([{"id": i, "label": "long"} for i in ids])
    config = feedback_data(data, text_column="text")

    span = export_span(str(feedback), config)
    records = read_file(os.path.join(span, "feedback.tsv"), config.reader_config())
    assert sorted(r.text for r in records) == ["a carriage\rreturn", "plain", "x" * 200_000]
    assert f"prediction ids {ids[1]}" in caplog.text
    assert " " + "x" * 20 not in caplog.text  # ids, never the texts
    assert export_span(str(feedback), config) is None  # still waiting, not exported
    assert (feedback / EXPORTED).read_text().split() == sorted([ids[0], ids[2], ids[3]])


KILLED_EXPORT = """
import os, signal, sys
import local.feedback_span as feedback_span
from tests.support.feedback_models import feedback_data
rename, remove, when = os.rename, os.remove, sys.argv[3]
def killed_at_the_span_rename(source, target):
    if os.path.basename(source).startswith(feedback_span.STAGING_PREFIX):
        if when == "failed":
            raise OSError("the rename failed")
        if when == "after":
            rename(source, target)
        os.kill(os.getpid(), signal.SIGKILL)
    rename(source, target)
def killed_after(clean_up):  # "failed": killed after the clean-up's first step
    def step(path, *args, **kwargs):
        clean_up(path, *args, **kwargs)
        if os.path.basename(path) == feedback_span.PENDING or os.path.basename(
                path).startswith(feedback_span.STAGING_PREFIX):
            os.kill(os.getpid(), signal.SIGKILL)
    return step
os.rename, os.remove = killed_at_the_span_rename, killed_after(remove)
feedback_span.shutil.rmtree = killed_after(feedback_span.shutil.rmtree)
feedback_span.export_span(sys.argv[1], feedback_data(sys.argv[2], text_column="text"))
"""


@pytest.mark.parametrize("killed", ["before", "after", "failed"])
def test_an_export_killed_at_the_span_rename_is_finished_or_undone_by_the_next(tmp_path,
                                                                              killed):
    """kill -9 just before or just after the span folder is renamed into place, or in the
    clean-up of a rename that failed: the next export removes the half-written span and
    exports its rows, or marks the rows of the span already in place; either way each
    correction lands in exactly one span."""
    feedback, data = tmp_path / "feedback", tmp_path / "data"
    log = FeedbackLog(str(feedback))
    ids = log.record("clf", 1, ["one text", "another"], [[("short", 0.9), ("long", 0.1)]] * 2)
    log.correct([{"id": i, "label": "long"} for i in ids])
    child = subprocess.run([sys.executable, "-c", KILLED_EXPORT, str(feedback), str(data),
                            killed], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    assert os.path.isdir(data / "span-1") == (killed == "after")
    assert not (feedback / EXPORTED).exists()  # killed before any id was marked

    span = export_span(str(feedback), feedback_data(data, text_column="text"))
    assert span == (None if killed == "after" else str(data / "span-1"))
    assert sorted(os.listdir(data)) == ["span-1"]  # nothing half-written left, no 2nd span
    assert sorted((feedback / EXPORTED).read_text().split()) == sorted(ids)
    assert sorted(os.listdir(feedback)) == sorted([CORRECTIONS, EXPORTED, PREDICTIONS,
                                                   feedback_span.LOCK])  # no pending record


def test_an_export_beside_another_exports_nothing_until_the_other_ends(tmp_path, caplog):
    feedback, data = tmp_path / "feedback", tmp_path / "data"
    log = FeedbackLog(str(feedback))
    [prediction] = log.record("clf", 1, ["a text"], [[("short", 0.9), ("long", 0.1)]])
    log.correct([{"id": prediction, "label": "long"}])
    config = feedback_data(data, text_column="text")
    with feedback_span._export_lock(str(feedback)) as held:  # another export under way
        assert held
        assert export_span(str(feedback), config) is None
    assert "another export is under way" in caplog.text and not data.exists()
    assert export_span(str(feedback), config) == str(data / "span-1")


def test_only_this_models_corrections_each_text_once_numbered_above_the_history(tmp_path,
                                                                                 caplog):
    """A server recording two models exported both into one span (the other model's
    labels became a class here); one text corrected twice went in twice, with both
    labels; and a span number reused after its folder was removed was never seen as new
    by the scheduler."""
    feedback, data = tmp_path / "feedback", tmp_path / "data"
    data.mkdir()
    log = FeedbackLog(str(feedback))
    mine = log.record("clf", 1, ["it was ok", "It was  OK ", "fine film"],
                      [[("short", 0.9), ("long", 0.1)]] * 3)
    other = log.record("router", 1, ["my invoice is wrong"], [[("refund", 0.9)]])
    log.correct([{"id": mine[0], "label": "long"}, {"id": mine[2], "label": "long"},
                 {"id": other[0], "label": "refund"}])
    log.correct([{"id": mine[1], "label": "short"}])  # the same text, later: it wins
    settings = feedback_data(data, text_column="text")
    assert export_span(str(feedback), settings, model="clf", after=4) == str(data / "span-5")
    assert "1 corrections of model(s) router wait" in caplog.text  # said, not silent
    assert sorted((data / "span-5" / "feedback.tsv").read_text().splitlines()) == [
        "It was  OK \tshort", "fine film\tlong", "text\tlabel"]
    assert export_span(str(feedback), settings, model="clf") is None  # all used
    assert export_span(str(feedback), settings, model="router") == str(data / "span-6")
    assert (data / "span-6" / "feedback.tsv").read_text().splitlines() == [
        "text\tlabel", "my invoice is wrong\trefund"]
