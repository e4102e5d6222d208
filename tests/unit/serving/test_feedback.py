"""The feedback store (serving/feedback.py): retention limits, file modes, torn lines, and
corrections (idempotent per id, several labels only for a multi-label model, exported
around a prediction that is gone). The server recording feedback:
tests/serving/test_feedback.py."""
import json
import os

import pytest

from local.feedback_span import export_span
from serving.feedback import CORRECTIONS, PREDICTIONS, FeedbackError, FeedbackLog, read_jsonl
from tests.support.feedback_disks import _whole_lines, fill
from tests.support.feedback_models import DAY, _mode, _prediction, _write_rows, feedback_data

T0 = 1_700_000_000.0


def test_rows_older_than_the_limit_are_gone_after_start_and_after_a_write(tmp_path):
    folder = tmp_path / "feedback"
    _write_rows(folder, PREDICTIONS, [_prediction(i, T0 - 40 * DAY) for i in range(3)]
                + [_prediction(i, T0 - 5 * DAY) for i in range(3, 5)])
    _write_rows(folder, CORRECTIONS, [{"id": "id0", "label": "long", "time": T0 - 39 * DAY},
                                      {"id": "id3", "label": "long", "time": T0 - 4 * DAY}])
    now = [T0]
    log = FeedbackLog(str(folder), max_age_days=30, clock=lambda: now[0])

    # At start: the 40-day-old rows and their correction are gone; files are private.
    assert [r["id"] for r in read_jsonl(str(folder / PREDICTIONS))] == ["id3", "id4"]
    assert [c["id"] for c in read_jsonl(str(folder / CORRECTIONS))] == ["id3"]
    assert _mode(folder / PREDICTIONS) == _mode(folder / CORRECTIONS) == 0o600
    with pytest.raises(FeedbackError, match="unknown prediction id 'id0'"):
        log.correct([{"id": "id0", "label": "long"}])

    # A write that passes no limit only appends (same file, no rewrite).
    inode = os.stat(folder / PREDICTIONS).st_ino
    [fresh] = log.record("clf", 1, ["new text"], [[("short", 0.2), ("long", 0.8)]])
    assert os.stat(folder / PREDICTIONS).st_ino == inode
    assert len(read_jsonl(str(folder / PREDICTIONS))) == 3

    # 26 days on, the 5-day-old rows are 31 days old: the next write removes them.
    now[0] = T0 + 26 * DAY
    log.correct([{"id": fresh, "label": "long"}])
    assert [r["id"] for r in read_jsonl(str(folder / PREDICTIONS))] == [fresh]
    assert [c["id"] for c in read_jsonl(str(folder / CORRECTIONS))] == [fresh]
    assert _mode(folder / PREDICTIONS) == 0o600
    assert sorted(os.listdir(folder)) == sorted([PREDICTIONS, CORRECTIONS])  # no leftovers

    # After a restart at the same time, the same rows.
    FeedbackLog(str(folder), max_age_days=30, clock=lambda: now[0])
    assert [r["id"] for r in read_jsonl(str(folder / PREDICTIONS))] == [fresh]


def test_row_limit_keeps_the_newest_rows(tmp_path):
    log = FeedbackLog(str(tmp_path / "feedback"), max_rows=20)
    ids = [log.record("clf", 1, [f"t{i}"], [[("short", 1.0)]])[0] for i in range(20)]
    assert len(read_jsonl(str(tmp_path / "feedback" / PREDICTIONS))) == 20
    ids += log.record("clf", 1, ["t20", "t21"], [[("short", 1.0)], [("long", 1.0)]])
    kept = [r["id"] for r in read_jsonl(str(tmp_path / "feedback" / PREDICTIONS))]
    assert kept == ids[-18:]  # 10% below the limit, so not every write rewrites the file
    with pytest.raises(FeedbackError, match="unknown prediction id"):
        log.correct([{"id": ids[0], "label": "long"}])
    assert log.correct([{"id": ids[-1], "label": "short"}]) == 1


def test_new_feedback_files_are_private_and_bad_limits_are_refused(tmp_path):
    folder = tmp_path / "new" / "feedback"
    log = FeedbackLog(str(folder))
    [prediction] = log.record("clf", 1, ["x"], [[("short", 1.0), ("long", 0.0)]])
    log.correct([{"id": prediction, "label": "long"}])
    assert _mode(folder) == 0o700
    assert _mode(folder / PREDICTIONS) == _mode(folder / CORRECTIONS) == 0o600
    with pytest.raises(ValueError, match="--feedback_max_age_days must be >= 0"):
        FeedbackLog(str(folder), max_age_days=-1)
    with pytest.raises(ValueError, match="--feedback_max_rows must be >= 0"):
        FeedbackLog(str(folder), max_rows=-5)


def _line(record: dict) -> str:
    return json.dumps(record) + "\n"


def test_a_line_torn_by_an_older_server_is_removed_and_the_record_after_it_kept(
        tmp_path, caplog):
    """An older server appended the next record onto a torn one (``{..."te{"id": ...}``):
    export reads around it; the start keeps the whole record and removes the torn part,
    naming the file, the line and the bytes (and a rewrite's leftover file)."""
    folder = tmp_path / "feedback"
    torn = _line(_prediction(1, T0))[:60]
    _write_rows(folder, CORRECTIONS, [{"id": "id2", "label": "long", "time": T0}])
    (folder / PREDICTIONS).write_text(_line(_prediction(0, T0)) + torn
                                      + _line(_prediction(2, T0)) + _line(_prediction(3, T0)))
    assert export_span(str(folder), feedback_data(tmp_path / "data", text_column="text"))
    assert (tmp_path / "data" / "span-1" / "feedback.tsv").read_text() == (
        "text\tlabel\ntext 2\tlong\n")

    leftover = folder / f".{PREDICTIONS}.0f1e"  # as a crash during a retention rewrite
    leftover.write_text(_line(_prediction(0, T0))[:30])

    log = FeedbackLog(str(folder))
    assert (f"feedback: {folder / PREDICTIONS} line 2: torn record, {len(torn)} bytes "
            "removed") in caplog.text
    assert f"feedback: removed {leftover}, left by an interrupted rewrite" in caplog.text
    assert not leftover.exists()
    assert (folder / PREDICTIONS).read_text() == "".join(
        _line(_prediction(i, T0)) for i in (0, 2, 3))
    assert log.correct([{"id": "id2", "label": "short"}]) == 1  # recorded before labels
    # were stored: checked once this server records a prediction of that version
    log.record("clf", 1, ["new"], [[("short", 0.9), ("long", 0.1)]])
    with pytest.raises(FeedbackError, match="label 'medium' is not one of model 'clf' "
                                            "version 1's labels: 'short', 'long'"):
        log.correct([{"id": "id3", "label": "medium"}])


def test_corrections_are_idempotent_per_id_and_the_last_label_wins(tmp_path):
    folder = tmp_path / "feedback"
    log = FeedbackLog(str(folder))
    a, b = log.record("clf", 1, ["a", "b"], [[("short", 0.9), ("long", 0.1)]] * 2)
    assert log.correct([{"id": a, "label": "long"}, {"id": b, "label": "short"}]) == 2
    assert log.correct([{"id": a, "label": "long"}, {"id": b, "label": " short "}]) == 2
    assert [(c["id"], c["label"]) for c in read_jsonl(str(folder / CORRECTIONS))] == [
        (a, "long"), (b, "short")]  # the retry wrote nothing
    assert log.correct([{"id": a, "label": "short"}]) == 1  # a change is appended
    assert export_span(str(folder), feedback_data(tmp_path / "data", "s{SPAN}", text_column="text"))
    lines = (tmp_path / "data" / "s1" / "feedback.tsv").read_text().splitlines()
    assert lines[0] == "text\tlabel" and sorted(lines[1:]) == ["a\tshort", "b\tshort"]
    # ...and kept after a restart: the same label again still writes nothing
    FeedbackLog(str(folder)).correct([{"id": a, "label": "short"}])
    assert len(read_jsonl(str(folder / CORRECTIONS))) == 3
    with pytest.raises(FeedbackError, match=f"corrections\\[1\\]: prediction id '{a}' given "
                                            "twice with different labels"):
        log.correct([{"id": a, "label": "short"}, {"id": a, "label": "long"}])


def test_several_labels_only_for_a_multi_label_model(tmp_path, caplog):
    folder = tmp_path / "feedback"
    log = FeedbackLog(str(folder))
    rows = [[("billing", 0.9), ("refund", 0.7), ("other", 0.1)]]
    [tagged] = log.record("tags", 1, ["refund my bill"], rows, multi_label=True)
    [single] = log.record("clf", 1, ["x"], rows)
    assert log.correct([{"id": tagged, "label": ["refund", "billing"]}]) == 1
    with pytest.raises(FeedbackError, match=r"model 'clf' version 1 takes one label per "
                                            r"text, not \['billing', 'refund'\]"):
        log.correct([{"id": single, "label": ["billing", "refund"]}])
    with pytest.raises(FeedbackError, match="label 'Billing' is not one of model 'tags'"):
        log.correct([{"id": tagged, "label": ["Billing"]}])
    # several labels and no delimiter: left out (and still waiting), the setting named
    assert export_span(str(folder), feedback_data(tmp_path / "data", "s{SPAN}",
                                                  text_column="text")) is None
    assert f"several labels with data.label_delimiter empty): left out of the feedback " \
           f"span, still waiting; prediction ids {tagged}" in caplog.text
    assert export_span(str(folder), feedback_data(tmp_path / "data", "s{SPAN}", text_column="text",
                                                  label_delimiter="|"))
    assert (tmp_path / "data" / "s1" / "feedback.tsv").read_text() == (
        "text\tlabel\nrefund my bill\tbilling|refund\n")


def test_a_correction_whose_prediction_is_gone_does_not_block_the_export(tmp_path):
    """Retention removes old predictions but a correction of one may remain (or an older
    server took a label list for a single-label model): only the rows exported have
    their labels checked, so such a correction never stops every later export."""
    from serving.feedback import append
    folder = tmp_path / "feedback"
    log = FeedbackLog(str(folder))
    [kept] = log.record("clf", 1, ["a fine day"], [[("pos", 0.6), ("neg", 0.4)]])
    log.correct([{"id": kept, "label": "neg"}])
    append(str(folder / CORRECTIONS),
           b'{"id": "removed-by-retention", "label": ["pos", "neg"]}\n')
    assert export_span(str(folder), feedback_data(tmp_path / "data", "s{SPAN}", text_column="text"))
    assert (tmp_path / "data" / "s1" / "feedback.tsv").read_text() == (
        "text\tlabel\na fine day\tneg\n")


def test_retention_on_a_full_disk_keeps_the_rows_and_leaves_nothing_aside(small_disk,
                                                                         caplog):
    folder = small_disk / "feedback"
    log = FeedbackLog(str(folder), max_rows=10)
    ids = log.record("clf", 1, [f"text {i}" for i in range(10)],
                     [[("short", 0.9), ("long", 0.1)]] * 10)
    filler = fill(small_disk)
    FeedbackLog(str(folder), max_rows=5)  # starts; its rewrite to 5 rows fails
    assert f"retention rewrite of {folder} failed" in caplog.text
    assert sorted(os.listdir(folder)) == [PREDICTIONS]  # no staging file left
    assert [r["id"] for r in _whole_lines(folder / PREDICTIONS)] == ids
    os.remove(filler)
    FeedbackLog(str(folder), max_rows=5)
    assert [r["id"] for r in _whole_lines(folder / PREDICTIONS)] == ids[-5:]


@pytest.mark.parametrize("privacy,records", [
    ({"redact": "all", "custom_patterns": []}, True),
    ({"redact": "email,phone"}, True),
    ({"redact": ["email"]}, True),
    ({"redact": "none", "custom_patterns": [["ticket", "TCK-[0-9]+"]]}, True),
    ({"redact": "none"}, False),
    ({"redact": "None"}, False),  # the settings take any case and spacing
    ({"redact": " NONE "}, False),
    ({"redact": "none,"}, False),
    ({"redact": []}, False),
    ("none", True),  # not this pipeline's record: taken at its signature
])
def test_whether_a_version_redacts_is_read_as_the_pipeline_reads_its_settings(
        tmp_path, privacy, records):
    """A model trained with privacy.redact none records nothing; "None" was read as a
    type, so its raw texts were recorded."""
    from serving.service import _redacts
    (tmp_path / "assets.extra").mkdir()
    (tmp_path / "assets.extra" / "model_info.json").write_text(
        json.dumps({"input": {"privacy": privacy}}))
    assert _redacts(str(tmp_path)) is records


def test_a_feedback_folder_the_server_cannot_write_is_refused_at_start(tmp_path):
    """A root-owned volume (ReadWriteMany: the kubelet applies no fsGroup) and a server
    running as uid 1000: it started, predicted, and lost every record, with one warning
    and a metric. Now FeedbackLog refuses the folder at start, naming the flag and the
    user. Run as uid 1000 in a forked child, on a folder root owns (mode 0755), under
    one uid 1000 may enter (pytest's own base folder is private)."""
    import shutil
    import tempfile

    if os.geteuid() != 0:
        pytest.fail("this test runs a child as uid 1000 on a root-owned folder: run it as "
                    "root (as CI does)")
    base = tempfile.mkdtemp(prefix="feedback-volume-")
    try:
        os.chmod(base, 0o755)
        folder = os.path.join(base, "feedback")
        os.mkdir(folder, 0o755)
        message = _start_as_uid_1000(folder)
    finally:
        shutil.rmtree(base)
    assert f"--feedback_dir {folder}: cannot write there as uid 1000" in message, message
    assert "Permission denied" in message


def _start_as_uid_1000(folder: str) -> str:
    """FeedbackLog(folder) in a forked child running as uid/gid 1000: 'started' or the
    OSError's message."""
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the server's user, this process's code
        try:
            os.setgid(1000)
            os.setuid(1000)
            try:
                FeedbackLog(folder)
                message = "started"
            except OSError as error:
                message = str(error)
            os.write(write, message.encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        message = f.read().decode()
    os.waitpid(child, 0)
    return message


def test_prediction_ids_go_back_as_one_range_and_a_miscount_is_refused():
    from serving.client import ServingClientError, _predictions
    from serving.feedback import decode_ids, encode_ids

    ids = [f"{'ab' * 16}-{i}" for i in range(5000)]
    assert encode_ids(ids) == f"{'ab' * 16}-0..4999" and decode_ids(encode_ids(ids), 5000) == ids
    assert encode_ids(ids[1:]) == ",".join(ids[1:])  # not one request's: listed
    # up to 4 KiB a list, as clients before the ranges read them
    assert encode_ids(ids[:3]) == ",".join(ids[:3]) and decode_ids(",".join(ids[:3]), 3) == ids[:3]
    with pytest.raises(ValueError, match="3 texts sent, 1000000000000 prediction ids"):
        decode_ids(f"{'ab' * 16}-0..999999999999", 3)  # counted, never spelled out
    rows = [[("a", 0.9), ("b", 0.1)]] * 3
    assert [p.id for p in _predictions(["t1", "t2", "t3"], rows, "x,y,z")] == ["x", "y", "z"]
    # Fewer ids than texts (a proxy cutting the header): zip dropped the other answers.
    with pytest.raises(ServingClientError, match="3 texts sent, 1 prediction ids received"):
        _predictions(["t1", "t2", "t3"], rows, "x")
