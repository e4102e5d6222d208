"""Feedback loop, really run: a feedback span is gated like any other span."""
import os

from components.text_example_gen.parsing import ReaderConfig, read_file
from local.scheduler import Scheduler
from pipeline.config import load_config
from serving.feedback import FeedbackLog


def test_a_feedback_span_is_gated_like_any_other_span(tmp_path, tiny_checkpoint):
    """Corrections the scheduler exports become an ordinary span: ExampleGen, the data gate
    and DriftCheck judge it as any other. Corrections nine in ten positive, after a span
    half positive, stop the run before training; nothing is pushed."""
    from local import history
    from tests.support.pipeline_runs import sample_rows, tiny_overrides, write_labelled_tsv

    rows = sample_rows(600)
    data = tmp_path / "data"
    write_labelled_tsv(data / "span-1" / "reviews.tsv", rows[:200])
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
