"""Feedback loop: the server records classified texts, accepts corrected labels, and the
scheduler turns them into the next span (real server process, real sockets); retention
limits and file modes of the feedback folder; what the server logs."""
import json
import os
import stat
import time

import pytest
import requests
import tensorflow as tf

from components.text_example_gen.parsing import ReaderConfig, read_file
from local.scheduler import Scheduler
from pipeline.config import load_config
from serving.client import GrpcClient, RestClient, ServingClientError, Target
from local.feedback_span import export_span
from serving.feedback import CORRECTIONS, PREDICTIONS, FeedbackError, FeedbackLog, read_jsonl
from serving.process import ServerProcess
from models.export import set_method_name
from models.redaction import Redactor
from tests.support.serving_models import CLASSIFY, TextLength, export_text_length

TRICKY = 'a "quoted"\ttab and\na newline, long enough'
PERSONAL = "mail li.wei@example.cn or call +86 139 1234 5678"


class RedactingTextLength(TextLength):
    """TextLength with the ``redact_text`` signature this project's models export."""

    def __init__(self):
        super().__init__()
        self.redactor = Redactor("all")

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def redact_text(self, text):
        return {"text": self.redactor(text)[0]}


def export_redacting(base_path, module: RedactingTextLength = None) -> None:
    module, path = module or RedactingTextLength(), os.path.join(base_path, "1")
    tf.saved_model.save(module, path, signatures={
        "classify": module.classify.get_concrete_function(),
        "redact_text": module.redact_text.get_concrete_function()})
    set_method_name(path, "classify", CLASSIFY)


@pytest.mark.serving
def test_predictions_are_recorded_redacted_and_corrections_become_the_next_span(tmp_path):
    base, feedback = tmp_path / "models" / "clf", tmp_path / "feedback"
    export_redacting(str(base))
    data = tmp_path / "data"
    (data / "span-1").mkdir(parents=True)
    (tmp_path / "token").write_text("s3cret\n")
    with ServerProcess(["--model_name", "clf", "--model_base_path", str(base),
                        "--feedback_dir", str(feedback), "--auth_token_file",
                        str(tmp_path / "token")], token="s3cret") as server:
        target = Target("clf")
        with RestClient(server.rest_url, target, token="s3cret") as rest, \
                GrpcClient(server.grpc_address, target, token="s3cret") as by_grpc:
            by_rest = rest.predict_texts(["hi", TRICKY])
            by_rpc = by_grpc.predict_texts(["hello there, a longer one"])
            assert [p.label for p in by_rest + by_rpc] == ["short", "long", "long"]
            ids = [p.id for p in by_rest + by_rpc]
            assert all(ids) and len(set(ids)) == 3
            [paired] = rest.predict_texts([PERSONAL], pairs=[f"yes: {PERSONAL}"])
            assert requests.post(f"{server.rest_url}/v1/feedback", json={"corrections": [
                {"id": paired.id, "label": "long"}]}).status_code == 401  # token needed
            assert rest.correct([{"id": paired.id, "label": "short"}]) == 1
            stored = {r["id"]: r for r in read_jsonl(str(feedback / PREDICTIONS))}
            assert stored[paired.id]["text"] == "mail [unused1] or call [unused3]"
            assert stored[paired.id]["text_pair"] == "yes: mail [unused1] or call [unused3]"
            assert "text_pair" not in stored[ids[0]]
            assert export_span(str(feedback), str(tmp_path / "pairs"), "span-{SPAN}", "q",
                               "label", text_pair_column="a") == str(tmp_path / "pairs" / "span-1")
            assert (tmp_path / "pairs" / "span-1" / "feedback.tsv").read_text() == (
                "q\ta\tlabel\nmail [unused1] or call [unused3]\t"
                "yes: mail [unused1] or call [unused3]\tshort\n")
            assert rest.correct([{"id": ids[0], "label": "long"},
                                 {"id": ids[1], "label": "short"}]) == 2
            # One token file: its token corrects too, attributed to the token's place.
            assert {c["caller"] for c in read_jsonl(str(feedback / CORRECTIONS))} == {
                "--auth_token_file line 1"}
            with pytest.raises(ServingClientError, match="HTTP 400.*unknown prediction id"):
                rest.correct([{"id": "nope", "label": "x"}])
            with pytest.raises(ServingClientError, match="non-empty 'label'"):
                rest.correct([{"id": ids[2], "label": " "}])
            assert requests.get(f"{server.rest_url}/v1/feedback", headers={
            "Authorization": "Bearer s3cret"}).status_code == 400

    config = load_config(None, {"data.input_dir": str(data), "data.span_pattern": "span-{SPAN}",
                                "output.root": str(tmp_path / "out"),
                                "schedule.feedback_dir": str(feedback),
                                "schedule.feedback_min_rows": 2})
    scheduler = Scheduler(config)
    assert scheduler.due() == "new span 1"  # nothing ran yet
    folder = scheduler.collect_feedback()
    assert folder == str(data / "span-2")
    records = read_file(str(data / "span-2" / "feedback.tsv"), ReaderConfig("sentence", "label"))
    assert sorted((r.label, r.text) for r in records) == [("long", "hi"), ("short", TRICKY)]
    assert scheduler.due() == "new span 2"
    assert scheduler.collect_feedback() is None  # nothing is exported twice
    assert export_span(str(feedback), str(data), "span-{SPAN}", "sentence", "label") is None


@pytest.mark.serving
def test_feedback_is_off_unless_asked(tmp_path):
    base = tmp_path / "clf"
    export_text_length(str(base))
    with ServerProcess(["--model_name", "clf", "--model_base_path", str(base)]) as server:
        with RestClient(server.rest_url, Target("clf")) as rest:
            assert rest.predict_texts(["hi"])[0].id is None
            with pytest.raises(ServingClientError, match="feedback recording is off"):
                rest.correct([{"id": "x", "label": "y"}])


DAY = 86400.0
T0 = 1_700_000_000.0


def _write_rows(folder, name, rows):
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / name, "w", encoding="utf-8") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))
    os.chmod(folder / name, 0o644)  # as an older server left it


def _prediction(i, when):
    return {"id": f"id{i}", "time": when, "model": "clf", "version": 1,
            "text": f"text {i}", "label": "short", "score": 0.9}


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


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


@pytest.mark.serving
def test_server_enforces_retention_at_start_and_on_writes(tmp_path):
    base, folder = tmp_path / "models" / "clf", tmp_path / "feedback"
    export_redacting(str(base))
    now = time.time()
    _write_rows(folder, PREDICTIONS, [_prediction(0, now - 31 * DAY),
                                      _prediction(1, now - 20 * DAY),
                                      _prediction(2, now - DAY)])
    with ServerProcess(["--model_name", "clf", "--model_base_path", str(base),
                        "--feedback_dir", str(folder), "--feedback_max_age_days", "30",
                        "--feedback_max_rows", "3"]) as server:
        assert [r["id"] for r in read_jsonl(str(folder / PREDICTIONS))] == ["id1", "id2"]
        assert _mode(folder / PREDICTIONS) == 0o600
        with RestClient(server.rest_url, Target("clf")) as rest:
            new = [p.id for p in rest.predict_texts(["one", "two"])]
            # Four rows passed the limit of 3: the oldest went.
            assert [r["id"] for r in read_jsonl(str(folder / PREDICTIONS))] == ["id2", *new]
            # Loopback without tokens: the caller is anonymous.
            assert rest.correct([{"id": new[0], "label": "long"}]) == 1
        assert [c["caller"] for c in read_jsonl(str(folder / CORRECTIONS))] == ["anonymous"]


@pytest.mark.serving
def test_server_logs_neither_query_strings_nor_request_bodies(tmp_path):
    base = tmp_path / "models" / "clf"
    export_text_length(str(base))
    with ServerProcess(["--model_name", "clf", "--model_base_path", str(base),
                        "--feedback_dir", str(tmp_path / "feedback")]) as server:
        url = f"{server.rest_url}/v1/models/clf"
        assert requests.get(url, params={"email": "query.person@example.com"}).ok
        body = {"signature_name": "classify",
                "examples": [{"text": "write to body.person@example.org please"}]}
        assert requests.post(f"{url}:classify?token=s3cret", json=body).ok
        assert requests.post(f"{url}:classify", data=b"{not json body.person@example.org",
                             ).status_code == 400
        deadline = time.monotonic() + 30
        while server.log().count("POST /v1/models/clf:classify") < 2:
            assert time.monotonic() < deadline, server.log()[-3000:]
            time.sleep(0.1)  # polling the child's log, not timing the test
        log = server.log()
    assert "GET /v1/models/clf (127.0.0.1)" in log
    # A model without a redact_text signature: nothing recorded, and said once.
    assert not os.path.exists(tmp_path / "feedback" / PREDICTIONS)
    assert log.count("feedback not recorded for model 'clf' version 1: it has no "
                     "'redact_text' signature") == 1
    for secret in ("query.person", "example.com", "body.person", "example.org", "s3cret"):
        assert secret not in log, secret


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
    assert export_span(str(folder), str(tmp_path / "data"), "span-{SPAN}", "text", "label")
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
    assert export_span(str(folder), str(tmp_path / "data"), "s{SPAN}", "text", "label")
    lines = (tmp_path / "data" / "s1" / "feedback.tsv").read_text().splitlines()
    assert lines[0] == "text\tlabel" and sorted(lines[1:]) == ["a\tshort", "b\tshort"]
    # ...and kept after a restart: the same label again still writes nothing
    FeedbackLog(str(folder)).correct([{"id": a, "label": "short"}])
    assert len(read_jsonl(str(folder / CORRECTIONS))) == 3
    with pytest.raises(FeedbackError, match=f"corrections\\[1\\]: prediction id '{a}' given "
                                            "twice with different labels"):
        log.correct([{"id": a, "label": "short"}, {"id": a, "label": "long"}])


def test_several_labels_only_for_a_multi_label_model(tmp_path):
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
    with pytest.raises(ValueError, match="several labels .* data.label_delimiter is empty"):
        export_span(str(folder), str(tmp_path / "data"), "s{SPAN}", "text", "label")
    assert export_span(str(folder), str(tmp_path / "data"), "s{SPAN}", "text", "label",
                       label_delimiter="|")
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
    assert export_span(str(folder), str(tmp_path / "data"), "s{SPAN}", "text", "label")
    assert (tmp_path / "data" / "s1" / "feedback.tsv").read_text() == (
        "text\tlabel\na fine day\tneg\n")


@pytest.mark.e2e
def test_a_feedback_span_is_gated_like_any_other_span(tmp_path, tiny_checkpoint):
    """Corrections the scheduler exports become an ordinary span: ExampleGen, the data gate
    and DriftCheck judge it as any other. Corrections nine in ten positive, after a span
    half positive, stop the run before training; nothing is pushed."""
    from local import history
    from tests.support.pipeline_runs import sample_rows, tiny_overrides

    rows = sample_rows(600)
    data = tmp_path / "data"
    (data / "span-1").mkdir(parents=True)
    (data / "span-1" / "reviews.tsv").write_text(
        "sentence\tlabel\n" + "".join(f"{t}\t{l}\n" for t, l in rows[:200]), encoding="utf-8")
    store = FeedbackLog(str(tmp_path / "feedback"))
    texts = [text for text, _ in rows[200:400]]
    ids = store.record("bert_classifier", 1, texts, [[("0", 0.5), ("1", 0.5)]] * len(texts))
    store.correct([{"id": i, "label": "1" if n % 10 else "0"} for n, i in enumerate(ids)])
    config = load_config(None, tiny_overrides(tmp_path, tiny_checkpoint, str(data), **{
        "data.span_pattern": "span-{SPAN}", "schedule.feedback_dir": str(tmp_path / "feedback"),
        "schedule.feedback_min_rows": 100}))

    tick = Scheduler(config).tick()

    assert (tick.action, tick.reason, tick.exit_code) == ("ran", "new span 2", 1)
    assert len(read_file(str(data / "span-2" / "feedback.tsv"),
                         ReaderConfig("sentence", "label"))) == 200
    [run] = history.read(config.history_path)
    assert run["span"] == 2 and run["pushed_version"] is None
    assert "data drift: span 2 vs span 1: label distribution (L-infinity distance)" in \
        run["error"]
    assert not os.path.exists(config.output.serving_dir)
