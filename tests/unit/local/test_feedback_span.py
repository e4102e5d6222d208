"""Feedback exported as a span (local/feedback_span.py): an export to a full disk leaves
no span, and its retry exports each row once (a REAL full disk: a small tmpfs; ``mount``
needs root)."""
import os

import pytest

from local.feedback_span import export_span
from serving.feedback import EXPORTED, FeedbackLog
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
        export_span(str(feedback), str(data), "span-{SPAN}", "text", "label")
    assert os.listdir(data) == []  # no span, no staging folder
    assert not os.path.exists(feedback / EXPORTED)  # nothing marked exported

    os.remove(filler)
    assert export_span(str(feedback), str(data), "span-{SPAN}", "text", "label")
    assert export_span(str(feedback), str(data), "span-{SPAN}", "text", "label") is None
    assert sorted((data / "span-1" / "feedback.tsv").read_text().splitlines()) == [
        "text\tlabel", "text 0\tlong", "text 1\tlong", "text 2\tlong"]
