"""Feedback loop: the server records classified texts, accepts corrected labels, and the
scheduler turns them into the next span (real server process, real sockets); retention
on a running server; what the server logs."""
import json
import os
import time

import pytest
import requests

from components.text_example_gen.parsing import ReaderConfig, read_file
from local.feedback_span import export_span
from local.scheduler import Scheduler
from pipeline.config import load_config
from serving.client import GrpcClient, RestClient, ServingClientError, Target
from serving.feedback import CORRECTIONS, PREDICTIONS, read_jsonl
from serving.process import ServerProcess
from tests.support.feedback_models import (DAY, _mode, _prediction, _write_rows, export_redacting,
                                          feedback_data)
from tests.support.serving_models import export_text_length

TRICKY = 'a "quoted"\ttab and\na newline, long enough'
PERSONAL = "mail li.wei@example.cn or call +86 139 1234 5678"


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
            pairs = feedback_data(tmp_path / "pairs", text_column="q", text_pair_column="a")
            assert export_span(str(feedback), pairs) == str(tmp_path / "pairs" / "span-1")
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
            # This server's own endpoint reads JSON strictly (TF Serving's paths ignore
            # what follows the body's value): a second object is not silently dropped.
            joined = json.dumps({"corrections": [{"id": ids[2], "label": "long"}]}) * 2
            refused = requests.post(f"{server.rest_url}/v1/feedback", data=joined, headers={
                "Authorization": "Bearer s3cret"})
            assert refused.status_code == 400 and "Extra data" in refused.json()["error"]
            assert requests.get(f"{server.rest_url}/v1/feedback", headers={
            "Authorization": "Bearer s3cret"}).status_code == 400

    config = load_config(None, {"data.input_dir": str(data), "data.span_pattern": "span-{SPAN}",
                                "output.root": str(tmp_path / "out"),
                                "schedule.feedback_dir": str(feedback),
                                "output.model_name": "clf",
                                "schedule.feedback_min_rows": 2})
    scheduler = Scheduler(config)
    assert scheduler.due() == "new span 1"  # nothing ran yet
    folder = scheduler.collect_feedback()
    assert folder == str(data / "span-2")
    records = read_file(str(data / "span-2" / "feedback.tsv"), ReaderConfig("sentence", "label"))
    # As redacted: quotes and the line break kept, the tab one space (as the model reads it)
    assert sorted((r.label, r.text) for r in records) == [
        ("long", "hi"), ("short", TRICKY.replace("\t", " "))]
    assert scheduler.due() == "new span 2"
    assert scheduler.collect_feedback() is None  # nothing is exported twice
    assert export_span(str(feedback), feedback_data(data, text_column="sentence")) is None


def test_feedback_is_off_unless_asked(tmp_path):
    base = tmp_path / "clf"
    export_text_length(str(base))
    with ServerProcess(["--model_name", "clf", "--model_base_path", str(base)]) as server:
        with RestClient(server.rest_url, Target("clf")) as rest:
            assert rest.predict_texts(["hi"])[0].id is None
            with pytest.raises(ServingClientError, match="feedback recording is off"):
                rest.correct([{"id": "x", "label": "y"}])


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


def test_a_model_trained_without_redaction_records_nothing(tmp_path):
    """privacy.redact none: the model's redact_text returns the text as it came, so
    recording it stored raw personal data, against the promise that it never is."""
    from models.redaction import Redactor
    from tests.support.feedback_models import RedactingTextLength

    module = RedactingTextLength()
    module.redactor = Redactor("none")
    base = tmp_path / "models" / "clf"
    export_redacting(str(base), module)
    (base / "1" / "assets.extra").mkdir()
    (base / "1" / "assets.extra" / "model_info.json").write_text(json.dumps(
        {"input": {"privacy": {"redact": "none"}}}))
    with ServerProcess(["--model_name", "clf", "--model_base_path", str(base),
                        "--feedback_dir", str(tmp_path / "feedback")]) as server:
        with RestClient(server.rest_url, Target("clf")) as rest:
            for _ in range(2):
                [prediction] = rest.predict_texts([PERSONAL])
                assert prediction.id is None and prediction.label == "long"
        log = server.log()
    assert not os.path.exists(tmp_path / "feedback" / PREDICTIONS)
    assert log.count("feedback not recorded for model 'clf' version 1: it was trained with "
                     "privacy.redact none") == 1


def test_server_logs_neither_query_strings_nor_request_bodies(tmp_path):
    base = tmp_path / "models" / "clf"
    export_text_length(str(base))
    with ServerProcess(["--model_name", "clf", "--model_base_path", str(base),
                        "--feedback_dir", str(tmp_path / "feedback")]) as server:
        url = f"{server.rest_url}/v1/models/clf"
        # As TF Serving: a query is part of the model name (404), and makes a POST
        # malformed (400); either way it stays out of the log.
        assert requests.get(url, params={"email": "query.person@example.com"}
                            ).status_code == 404
        body = {"signature_name": "classify",
                "examples": [{"text": "write to body.person@example.org please"}]}
        assert requests.post(f"{url}:classify?token=s3cret", json=body).status_code == 400
        assert requests.post(f"{url}:classify", json=body).ok
        assert requests.post(f"{url}:classify", data=b"{not json body.person@example.org",
                             ).status_code == 400
        deadline = time.monotonic() + 30
        while server.log().count("POST /v1/models/clf:classify") < 3:
            assert time.monotonic() < deadline, server.log()[-3000:]
            time.sleep(0.1)  # polling the child's log, not timing the test
        log = server.log()
    assert "GET /v1/models/clf (127.0.0.1)" in log  # its query left out
    # A model without a redact_text signature: nothing recorded, and said once.
    assert not os.path.exists(tmp_path / "feedback" / PREDICTIONS)
    assert log.count("feedback not recorded for model 'clf' version 1: it has no "
                     "'redact_text' signature") == 1
    for secret in ("query.person", "example.com", "body.person", "example.org", "s3cret"):
        assert secret not in log, secret


def test_the_ids_of_a_large_batch_reach_any_client(tmp_path):
    """The ids went as one comma-separated list: 33 bytes a text, past gRPC's 8 KiB
    metadata limit (any gRPC client, TF Serving's own included, failed Classify from
    about 250 texts on, after the server had recorded them) and http.client's 64 KiB
    header line (REST from about 2,000). They go as one range now, the same size at any
    batch size."""
    import grpc
    from tensorflow_serving.apis import classification_pb2, prediction_service_pb2_grpc

    from serving.client import make_example
    from serving.feedback import ID_METADATA

    base = tmp_path / "clf"
    export_redacting(str(base))
    texts = [f"text number {i}" for i in range(2500)]
    with ServerProcess(["--model_name", "clf", "--model_base_path", str(base),
                        "--feedback_dir", str(tmp_path / "feedback")]) as server:
        request = classification_pb2.ClassificationRequest()
        request.model_spec.name, request.model_spec.signature_name = "clf", "classify"
        request.input.example_list.examples.extend(make_example({"text": t})
                                                   for t in texts[:600])
        with grpc.insecure_channel(server.grpc_address) as channel:  # gRPC's defaults
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            response, call = stub.Classify.with_call(request, timeout=60)
            assert len(response.result.classifications) == 600
            assert len(dict(call.trailing_metadata())[ID_METADATA]) < 100
        target = Target("clf")
        with RestClient(server.rest_url, target, timeout=60, retries=0) as rest, \
                GrpcClient(server.grpc_address, target, timeout=60, retries=0) as by_grpc:
            ids = [p.id for p in rest.predict_texts(texts)]
            ids += [p.id for p in by_grpc.predict_texts(texts[:600])]
            assert len(set(ids)) == 3100 and None not in ids
            assert rest.correct([{"id": ids[2499], "label": "short"},
                                 {"id": ids[-1], "label": "long"}]) == 2
        stored = {r["id"]: r["text"] for r in read_jsonl(str(tmp_path / "feedback" /
                                                             PREDICTIONS))}
        assert stored[ids[2499]] == texts[2499] and stored[ids[-1]] == texts[599]


def test_sentence_pairs_are_recorded_under_server_side_batching(tmp_path):
    """Texts and pairs went to redact_text as one call of twice the request's rows: with
    max_batch_size 32 (the shipped file) a request of 17-32 pairs was answered but its
    feedback refused (INVALID_ARGUMENT, "Task size 40 is larger than ..."), silently."""
    base = tmp_path / "clf"
    export_redacting(str(base))
    batching = tmp_path / "batching.txt"
    batching.write_text("max_batch_size { value: 32 } num_batch_threads { value: 1 }")
    texts = [f"question {i} for li.wei@example.cn" for i in range(20)]
    with ServerProcess(["--model_name", "clf", "--model_base_path", str(base),
                        "--feedback_dir", str(tmp_path / "feedback"), "--enable_batching",
                        "--batching_parameters_file", str(batching)]) as server:
        with RestClient(server.rest_url, Target("clf"), retries=0) as rest:
            answers = rest.predict_texts(texts, pairs=[f"answer {i}" for i in range(20)])
    assert None not in [a.id for a in answers]
    stored = {r["id"]: r for r in read_jsonl(str(tmp_path / "feedback" / PREDICTIONS))}
    assert stored[answers[19].id]["text"] == "question 19 for [unused1]"
    assert stored[answers[19].id]["text_pair"] == "answer 19"
