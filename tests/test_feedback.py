"""Feedback loop: the server records classified texts, accepts corrected labels, and the
scheduler turns them into the next span (real server process, real sockets)."""
import pytest
import requests

from components.text_example_gen.parsing import ReaderConfig, read_file
from local.scheduler import Scheduler
from pipeline.config import load_config
from serving.client import GrpcClient, RestClient, ServingClientError, Target
from local.feedback_span import export_span
from serving.process import ServerProcess
from tests.serving_models import export_text_length

pytestmark = pytest.mark.serving

TRICKY = 'a "quoted"\ttab and\na newline, long enough'


def test_predictions_are_recorded_and_corrections_become_the_next_span(tmp_path):
    base, feedback = tmp_path / "models" / "clf", tmp_path / "feedback"
    export_text_length(str(base))
    data = tmp_path / "data"
    (data / "span-1").mkdir(parents=True)
    with ServerProcess(["--model_name", "clf", "--model_base_path", str(base),
                        "--feedback_dir", str(feedback)]) as server:
        target = Target("clf")
        with RestClient(server.rest_url, target) as rest, \
                GrpcClient(server.grpc_address, target) as by_grpc:
            by_rest = rest.predict_texts(["hi", TRICKY])
            by_rpc = by_grpc.predict_texts(["hello there, a longer one"])
            assert [p.label for p in by_rest + by_rpc] == ["short", "long", "long"]
            ids = [p.id for p in by_rest + by_rpc]
            assert all(ids) and len(set(ids)) == 3
            assert rest.correct([{"id": ids[0], "label": "long"},
                                 {"id": ids[1], "label": "short"}]) == 2
            with pytest.raises(ServingClientError, match="HTTP 400.*unknown prediction id"):
                rest.correct([{"id": "nope", "label": "x"}])
            with pytest.raises(ServingClientError, match="non-empty 'label'"):
                rest.correct([{"id": ids[2], "label": " "}])
            assert requests.get(f"{server.rest_url}/v1/feedback").status_code == 400

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


def test_feedback_is_off_unless_asked(tmp_path):
    base = tmp_path / "clf"
    export_text_length(str(base))
    with ServerProcess(["--model_name", "clf", "--model_base_path", str(base)]) as server:
        with RestClient(server.rest_url, Target("clf")) as rest:
            assert rest.predict_texts(["hi"])[0].id is None
            with pytest.raises(ServingClientError, match="feedback recording is off"):
                rest.correct([{"id": "x", "label": "y"}])
