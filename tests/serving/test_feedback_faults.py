"""Feedback can never hurt serving: a full feedback disk, a torn file, a retried or wrong
correction. Real server processes, real sockets, and a REAL full disk: a small tmpfs
mounted as ``--feedback_dir`` and filled (``mount`` needs root; CI runs the tests as
root, and a test that cannot mount fails, it is not skipped)."""
import json
import os
import re
import time

import requests
import tensorflow as tf

from local.feedback_span import export_span
from serving.client import GrpcClient, RestClient, Target
from serving.feedback import CORRECTIONS, MAX_CORRECTIONS, PREDICTIONS
from serving.metrics import read_monitoring_config
from serving.process import ServerProcess
from tests.support.feedback_disks import _whole_lines, fill
from tests.support.feedback_models import RedactingTextLength, export_redacting, feedback_data
from tests.support.paths import REPO

MONITORING = os.path.join(REPO, "serving", "deploy", "monitoring.config")
LONG = "a long text that fills more than a page of the disk " * 100  # 5,200 characters


def _server(tmp_path, feedback, module=None) -> ServerProcess:
    """The model server on a redacting test model (``module``: its redaction) exported
    under ``tmp_path``, recording feedback in ``feedback``."""
    base = tmp_path / "models" / "clf"
    export_redacting(str(base), module)
    return ServerProcess(["--model_name", "clf", "--model_base_path", str(base),
                          "--feedback_dir", str(feedback),
                          "--monitoring_config_file", MONITORING])


def _dropped(server) -> float:
    text = requests.get(server.rest_url + read_monitoring_config(MONITORING), timeout=10).text
    found = re.search(r'^feedback_records_dropped_total\{model_name="clf"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def _classify(server, texts):
    return requests.post(f"{server.rest_url}/v1/models/clf:classify", timeout=60, json={
        "signature_name": "classify", "examples": [{"text": t} for t in texts]})


def test_a_full_feedback_disk_answers_every_prediction_and_counts_what_it_drops(
        tmp_path, small_disk):
    feedback = small_disk / "feedback"
    with _server(tmp_path, feedback) as server:
        assert _classify(server, ["hi"]).ok
        stored = _whole_lines(feedback / PREDICTIONS)
        fill(small_disk)  # the file's last page still has room: the next write is cut short

        answer = _classify(server, [LONG, "hi"])
        assert answer.status_code == 200, answer.text
        assert [max(r, key=lambda c: c[1])[0] for r in answer.json()["results"]] == [
            "long", "short"]
        assert "X-Prediction-Ids" not in answer.headers  # nothing was recorded
        with GrpcClient(server.grpc_address, Target("clf")) as by_grpc:
            [by_rpc] = by_grpc.predict_texts([LONG])
        assert by_rpc.label == "long" and by_rpc.id is None
        assert _dropped(server) == 3
        assert _whole_lines(feedback / PREDICTIONS) == stored  # no torn line, nothing added
        assert server.log().count("feedback not recorded") == 1  # once per full-disk spell

        os.remove(small_disk / "filler")
        recorded = _classify(server, ["hello"])
        assert recorded.ok and recorded.headers["X-Prediction-Ids"]
        assert [r["text"] for r in _whole_lines(feedback / PREDICTIONS)] == ["hi", "hello"]
        assert "feedback recorded again after 3 dropped" in server.log()


def test_corrections_on_a_full_disk_write_nothing_and_their_retry_writes_each_once(
        tmp_path, small_disk):
    feedback = small_disk / "feedback"
    with _server(tmp_path, feedback) as server:
        with RestClient(server.rest_url, Target("clf")) as rest:
            ids = [p.id for p in rest.predict_texts([f"text number {i}" for i in range(200)])]
            assert rest.correct([{"id": ids[0], "label": "short"}]) == 1
        before = (feedback / CORRECTIONS).read_bytes()
        filler = fill(small_disk)
        body = {"corrections": [{"id": i, "label": "short"} for i in ids]}
        url = f"{server.rest_url}/v1/feedback"

        refused = requests.post(url, json=body, timeout=60)
        assert refused.status_code == 503, refused.text
        assert "nothing was written" in refused.json()["error"]
        assert (feedback / CORRECTIONS).read_bytes() == before  # not one row, not a part

        os.remove(filler)
        for _ in range(2):  # the retry, and a retry of the retry
            retried = requests.post(url, json=body, timeout=60)
            assert retried.status_code == 200, retried.text
            assert retried.json()["accepted"] == 200
        rows = _whole_lines(feedback / CORRECTIONS)
        assert sorted(r["id"] for r in rows) == sorted(ids)  # each once
        assert {r["label"] for r in rows} == {"short"}


def test_corrections_name_a_label_of_the_model_and_are_bounded(tmp_path):
    feedback = tmp_path / "feedback"
    with _server(tmp_path, feedback) as server:
        with RestClient(server.rest_url, Target("clf")) as rest:
            [first, second] = [p.id for p in rest.predict_texts(["one", "two"])]
        url = f"{server.rest_url}/v1/feedback"

        wrong = requests.post(url, timeout=30, json={"corrections": [
            {"id": first, "label": "short"}, {"id": second, "label": "positive"}]})
        assert wrong.status_code == 400
        assert wrong.json()["error"] == (
            "corrections[1]: label 'positive' is not one of model 'clf' version 1's "
            "labels: 'short', 'long'")
        assert not os.path.exists(feedback / CORRECTIONS)  # all or nothing

        many = requests.post(url, timeout=30, json={"corrections": [
            {"id": first, "label": "short"}] * (MAX_CORRECTIONS + 1)})
        assert many.status_code == 413
        assert many.json()["error"] == (f"{MAX_CORRECTIONS + 1} corrections in one request; "
                                        f"at most {MAX_CORRECTIONS}: send them in parts")
        huge = requests.post(url, timeout=30, data=json.dumps({"corrections": [
            {"id": first, "label": "x" * 2**21}]}))
        assert huge.status_code == 413
        assert "request body larger than" in huge.json()["error"]
        assert not os.path.exists(feedback / CORRECTIONS)


def _record(i: int, text: str = "") -> str:
    return json.dumps({"id": f"id{i}", "time": time.time(), "model": "clf", "version": 1,
                       "text": text or f"text {i}", "label": "short", "score": 0.9,
                       "labels": ["short", "long"]}) + "\n"


def test_a_torn_tail_is_cut_at_start_and_export_reads_around_it(tmp_path, small_disk):
    """The torn bytes are those a real short write leaves on a full disk (the kernel
    writes what fits, then ENOSPC), as a crash before the rollback would keep them."""
    feedback = small_disk / "feedback"
    feedback.mkdir()
    (feedback / PREDICTIONS).write_text(_record(0) + _record(1))
    (feedback / CORRECTIONS).write_text(json.dumps({"id": "id0", "label": "long",
                                                    "time": 2.0}) + "\n")
    whole = os.path.getsize(feedback / PREDICTIONS)
    filler = fill(small_disk)
    fd = os.open(feedback / PREDICTIONS, os.O_WRONLY | os.O_APPEND)
    try:
        torn = os.write(fd, _record(2, LONG).encode())
    finally:
        os.close(fd)
    assert 0 < torn < len(_record(2, LONG))  # cut short by the full disk
    os.remove(filler)

    # The scheduler's export reads around a torn tail (it may be a write in progress).
    span = export_span(str(feedback), feedback_data(tmp_path / "data", text_column="text"))
    assert (tmp_path / "data" / "span-1" / "feedback.tsv").read_text() == (
        "text\tlabel\ntext 0\tlong\n") and span
    assert os.path.getsize(feedback / PREDICTIONS) == whole + torn  # export writes nothing

    with _server(tmp_path, feedback) as server:
        assert (f"feedback: {feedback / PREDICTIONS} ended in a torn record: "
                f"{torn} bytes removed") in server.log()
        assert [r["id"] for r in _whole_lines(feedback / PREDICTIONS)] == ["id0", "id1"]
        with RestClient(server.rest_url, Target("clf")) as rest:
            [fresh] = rest.predict_texts(["after the repair"])
            assert rest.correct([{"id": "id1", "label": "long"},
                                 {"id": fresh.id, "label": "long"}]) == 2
    assert [r["text"] for r in _whole_lines(feedback / PREDICTIONS)] == [
        "text 0", "text 1", "after the repair"]


class FailingRedaction(RedactingTextLength):
    """Its ``redact_text`` fails at run time on a text with "boom" in it."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def redact_text(self, text):
        tf.debugging.Assert(tf.reduce_all(~tf.strings.regex_full_match(text, ".*boom.*")),
                            ["redaction failed"])
        return {"text": self.redactor(text)[0]}


def test_a_prediction_is_answered_when_recording_fails_for_any_reason(tmp_path):
    feedback = tmp_path / "feedback"
    with _server(tmp_path, feedback, FailingRedaction()) as server:
        answer = _classify(server, ["boom, said the secret text", "hi"])
        assert answer.status_code == 200, answer.text
        assert [max(r, key=lambda c: c[1])[0] for r in answer.json()["results"]] == [
            "long", "short"]
        assert "X-Prediction-Ids" not in answer.headers
        assert _dropped(server) == 2
        assert _classify(server, ["fine"]).headers["X-Prediction-Ids"]
        log = server.log()
    assert ("feedback not recorded for model 'clf' version 1: ServingError "
            "INVALID_ARGUMENT") in log
    assert "secret" not in log  # the error's message is not logged: it may quote text
