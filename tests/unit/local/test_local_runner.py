"""The local runner (local/local_runner.py): it resolves paths against the working
directory, storage settings drive every S3 client while local state stays local, a report
that cannot be written is named, and the run lock as `history` sees it."""
import os

import pytest

from local import history, local_runner
from local.local_runner import local_pipeline
from pipeline.config import load_config
from tests.support.object_storage import ENDPOINT_VARIABLES
from tests.support.pipelines import _by_id, _everything
from tests.support.schedules import _config


def test_storage_settings_drive_every_s3_client_and_keep_local_state_local(
        tmp_path, monkeypatch):
    from apache_beam.options.pipeline_options import PipelineOptions, S3Options

    from local.local_runner import local_pipeline

    monkeypatch.chdir(tmp_path)
    for name in ENDPOINT_VARIABLES + ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(name, "")  # restored after the test, whatever the runner sets
    config = load_config(None, {
        "data.input_dir": "s3://b/data", "output.root": "s3://b/out",
        "output.serving_dir": "s3://b/serving", "storage.s3_endpoint": "http://127.0.0.1:9",
        "storage.s3_region": "eu-west-1", "storage.local_dir": "state",
        "beam_args": "--direct_num_workers=1 --s3_region_name=us-east-2"})
    pipeline = local_pipeline(config)
    assert os.environ["S3_ENDPOINT"] == os.environ["AWS_ENDPOINT_URL_S3"] == \
        "http://127.0.0.1:9"
    assert os.environ["AWS_REGION"] == os.environ["AWS_DEFAULT_REGION"] == "eu-west-1"
    s3_options = PipelineOptions(pipeline.beam_pipeline_args).view_as(S3Options)
    assert s3_options.s3_endpoint_url == "http://127.0.0.1:9"
    assert s3_options.s3_region_name == "us-east-2"  # an explicit beam_args option wins
    assert pipeline.pipeline_info.pipeline_root == "s3://b/out/bert-text-classifier"
    components = {c.id: c for c in pipeline.components}
    assert components["TextExampleGen"].exec_properties["input_base"] == "s3://b/data"
    assert "s3://b/serving/bert_classifier" in str(
        components["Pusher"].exec_properties["push_destination"])
    assert pipeline.metadata_connection_config.sqlite.filename_uri == \
        str(tmp_path / "state" / "metadata.sqlite")
    assert os.listdir(tmp_path) == ["state"]  # no local "s3:" folder


def test_a_report_that_cannot_be_written_is_named_in_the_summary(tmp_path):
    from local import local_runner
    from local.summary import ComponentRun, RunSummary
    from pipeline.config import load_config

    config = load_config(None, {"output.root": str(tmp_path)})
    (tmp_path / "reports").write_text("a file where the reports folder should be")
    result = RunSummary(pipeline="p", run_id="2026-01-01T00:00:00.1",
                        components=[ComponentRun("TextExampleGen", "failed", 1.0)],
                        error="ValueError: bad data")
    local_runner.write_report(result, config)  # does not raise
    assert result.report_path is None and "NotADirectoryError" in result.report_error
    assert result.format().splitlines()[-1].startswith("Report: not written: NotADirectoryError")
    assert result.exit_code == 1


def test_local_runner_resolves_against_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config(None, {
        "name": "local-p", "data.input_dir": "data", "data.schema_path": "my/schema.pbtxt",
        "output.root": "out", "output.serving_dir": "served", "output.model_name": "clf",
        "data.span_pattern": "span-{SPAN}",
        "kubeflow.pipeline_root": "gs://k/root", "kubeflow.serving_dir": "gs://k/serving",
        "kubeflow.beam_args": "--runner=DataflowRunner --project=p"})
    pipeline = local_pipeline(config)
    components = _by_id(pipeline)
    assert pipeline.pipeline_info.pipeline_root == str(tmp_path / "out" / "local-p")
    assert components["TextExampleGen"].exec_properties["input_base"] == str(tmp_path / "data")
    assert components["DriftCheck"].exec_properties["input_base"] == str(tmp_path / "data")
    assert components["ImportSchemaGen"].exec_properties["schema_file"] == \
        str(tmp_path / "my" / "schema.pbtxt")
    assert str(tmp_path / "served" / "clf") in str(
        components["Pusher"].exec_properties["push_destination"])
    assert pipeline.beam_pipeline_args == config.beam_args  # Beam's DirectRunner here
    assert pipeline.metadata_connection_config.sqlite.filename_uri == \
        str(tmp_path / "out" / "metadata.sqlite")
    assert "ServingCheck" in components and "InfraValidator" not in components
    assert components["Trainer"].platform_config is None
    assert "gs://k" not in _everything(pipeline) and "Dataflow" not in _everything(pipeline)


def test_history_looking_at_the_lock_does_not_refuse_a_run(tmp_path):
    """``history`` (local_runner.run_active) holds the run lock shared for an instant; a run
    starting then waits for it instead of failing with "another run is active". A lock
    held by a run still refuses (the wait is bounded)."""
    import fcntl
    import threading
    config = _config(tmp_path)
    with local_runner.run_lock(config):
        assert local_runner.run_active(config)
    assert not local_runner.run_active(config)
    with open(tmp_path / "out" / local_runner.LOCK_FILE, encoding="utf-8") as probe:
        fcntl.flock(probe, fcntl.LOCK_SH)  # as run_active holds it while it looks
        threading.Timer(0.2, fcntl.flock, (probe, fcntl.LOCK_UN)).start()
        with local_runner.run_lock(config):
            assert local_runner.run_active(config)
        fcntl.flock(probe, fcntl.LOCK_SH)  # never released while the run tries
        with pytest.raises(local_runner.RunInProgress):
            with local_runner.run_lock(config):
                pass


def test_a_run_is_recorded_before_its_report_and_the_report_path_is_absolute(
        tmp_path, monkeypatch):
    """The history records how a run ended before the report (slow: it scores the model)
    is written: Ctrl-C or SIGTERM there left a pushed run recorded as interrupted, and
    the scheduler trained the span again. The report's path is stored absolute."""
    import types

    import tfx.orchestration.local.local_dag_runner as local_dag_runner

    from local import report, summary

    monkeypatch.chdir(tmp_path)
    config = load_config(None, {"output.root": "out"})
    monkeypatch.setattr(local_runner.preflight, "check", lambda c: None)
    monkeypatch.setattr(local_runner, "local_pipeline",
                        lambda c: types.SimpleNamespace(beam_pipeline_args=[]))
    monkeypatch.setattr(local_dag_runner.LocalDagRunner, "run", lambda self, p: None)
    monkeypatch.setattr(summary, "collect", lambda p, started, error=None: summary.RunSummary(
        pipeline="p", run_id="r1", blessed=True, pushed_version="7", pushed_path="/s/7"))

    def interrupted(result, config):
        raise KeyboardInterrupt  # as SIGINT while the report scores the model

    monkeypatch.setattr(report, "write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        local_runner.run(config)
    [entry] = history.read(config.history_path, unfinished=True, run_active=False)
    assert (entry["status"], entry["pushed_version"], entry["exit_code"]) == \
        ("finished", "7", 0), entry
    monkeypatch.setattr(report, "write", lambda result, config: "out/reports/r1/index.html")
    local_runner.run(config)
    assert history.read(config.history_path)[-1]["report"] == \
        str(tmp_path / "out" / "reports" / "r1" / "index.html")
