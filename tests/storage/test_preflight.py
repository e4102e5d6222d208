"""Who resolves what: ``create_pipeline`` takes resolved values as given; the local and
Kubeflow runners resolve paths, storage, Beam args, metadata and the serving check; the
run summary reports on the pipeline the runner hands it (no pipeline run here)."""
import os
import time

import pytest

from kubeflow.kubeflow_runner import kubeflow_pipeline
from local import summary
from local.local_runner import local_pipeline
from pipeline.config import load_config
from pipeline.pipeline import create_pipeline

NOWHERE = "/nowhere"  # platform settings create_pipeline must not read


def _by_id(pipeline) -> dict:
    return {c.id: c for c in pipeline.components}


def _everything(pipeline) -> str:
    """Every value the pipeline carries, as text."""
    return " ".join([pipeline.pipeline_info.pipeline_root, *pipeline.beam_pipeline_args,
                     *(str(c.exec_properties) for c in pipeline.components)])


def test_create_pipeline_uses_the_resolved_values_it_is_given():
    config = load_config(None, {
        "data.input_dir": f"{NOWHERE}/data", "data.schema_path": "schema/schema.pbtxt",
        "output.root": f"{NOWHERE}/out", "output.serving_dir": f"{NOWHERE}/serving",
        "beam_args": f"--temp_location={NOWHERE}", "kubeflow.project_dir": NOWHERE,
        "kubeflow.pipeline_root": f"gs:/{NOWHERE}", "kubeflow.beam_args": "--runner=flink",
        "kubeflow.trainer_accelerator": "TPU_V3"})
    pipeline = create_pipeline(
        config, pipeline_name="given-name", pipeline_root="gs://given/root",
        data_root="gs://given/data", schema_file="",
        serving_model_dir="gs://given/serving/clf",
        beam_pipeline_args=["--direct_num_workers=2"])
    components = _by_id(pipeline)
    assert pipeline.pipeline_info.pipeline_name == "given-name"
    assert pipeline.pipeline_info.pipeline_root == "gs://given/root"
    assert pipeline.beam_pipeline_args == ["--direct_num_workers=2"]
    assert components["TextExampleGen"].exec_properties["input_base"] == "gs://given/data"
    assert "SchemaGen" in components and "ImportSchemaGen" not in components  # "" infers
    pushed = components["Pusher"].exec_properties["push_destination"]
    assert "gs://given/serving/clf" in str(pushed)
    assert "ServingCheck" in components and "InfraValidator" not in components
    assert components["Trainer"].platform_config is None
    assert NOWHERE not in _everything(pipeline)


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


def test_kubeflow_runner_resolves_storage_image_paths_and_platform():
    config = load_config(None, {
        "data.input_dir": "/mnt/data", "output.root": "local_out",
        "kubeflow.pipeline_root": "s3://b/root", "kubeflow.serving_dir": "/mnt/serving",
        "kubeflow.project_dir": "/app", "kubeflow.trainer_memory": "512M"})
    pipeline = kubeflow_pipeline(config)
    components = _by_id(pipeline)
    assert pipeline.pipeline_info.pipeline_root == "s3://b/root/bert-text-classifier"
    assert components["TextExampleGen"].exec_properties["input_base"] == "/mnt/data"
    assert components["ImportSchemaGen"].exec_properties["schema_file"] == \
        "/app/schema/schema.pbtxt"  # inside the image
    assert "/mnt/serving/bert_classifier" in str(
        components["Pusher"].exec_properties["push_destination"])
    # no kubeflow.beam_args: the top-level ones (DirectRunner in each pod), as they are
    assert pipeline.beam_pipeline_args == config.beam_args
    assert pipeline.metadata_connection_config is None  # KFP's own
    assert "InfraValidator" in components and "ServingCheck" not in components
    assert components["Trainer"].platform_config.memory_limit == pytest.approx(0.512)
    assert "local_out" not in _everything(pipeline)


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


def test_the_pipeline_passes_the_configured_drift_limits():
    config = load_config(None, {"data.span_pattern": "span-{SPAN}",
                                "data.max_label_l_infinity": "0.1",
                                "data.max_length_js_divergence": "0.2"})
    drift = _by_id(local_pipeline(config)).get("DriftCheck").exec_properties
    assert (drift["max_label_l_infinity"], drift["max_length_js_divergence"],
            drift["max_unknown_share_increase"]) == (0.1, 0.2, 0.02)


@pytest.mark.storage
def test_the_settings_checks_read_a_bucket(tmp_path):
    """The checks before any component run on s3:// as TextExampleGen would (moto's S3
    server; tf.io.gfile on s3:// runs in a child process, see test_object_storage)."""
    import json
    import subprocess
    import sys

    from tests.support.paths import REPO
    from tests.e2e.test_object_storage import S3Server
    server = S3Server(str(tmp_path / "moto.log"))
    try:
        bucket = server.bucket("checks")
        server.put(bucket, "data/span-3/part.tsv", "sentence\tlabel\ngood\t1\n")
        server.put(bucket, "schema.pbtxt", "")
        probe = (
            "import json, sys\n"
            "from local import local_runner, preflight\n"
            "from pipeline.config import load_config\n"
            "from serving.filesystems import exit_process\n"
            "found = []\n"
            "for settings in json.loads(sys.argv[1]):\n"
            "    config = load_config(None, settings)\n"
            "    local_runner.use_storage(config)\n"
            "    found.append([preflight.input_problem(config),\n"
            "                  preflight.schema_problem(config.data.schema_path)])\n"
            "print(json.dumps(found), flush=True)\n"
            "exit_process(0)\n")
        common = {"storage.s3_endpoint": server.endpoint, "storage.local_dir": str(tmp_path)}
        cases = [dict(common, **{"data.input_dir": "s3://checks/data",
                                 "data.span_pattern": "span-{SPAN}",
                                 "data.schema_path": "s3://checks/schema.pbtxt"}),
                 dict(common, **{"data.input_dir": "s3://checks/nothing",
                                 "data.schema_path": "s3://checks/none.pbtxt"}),
                 dict(common, **{"data.input_dir": "s3://checks/data",
                                 "data.span_pattern": "day-{SPAN}"})]
        done = subprocess.run([sys.executable, "-c", probe, json.dumps(cases)], cwd=REPO,
                              env=server.env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        ok, missing, no_span = json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        server.close()
    assert ok == [None, None]
    assert missing[0].startswith("data.input_dir: folder s3://checks/nothing does not exist")
    assert missing[1].startswith("data.schema_path: s3://checks/none.pbtxt does not exist;")
    assert no_span[0].startswith("data.span_pattern: no folder named like day-{SPAN}")


def test_history_shows_runs_that_never_ended_and_the_next_run_closes_them(tmp_path):
    from local import history
    path = str(tmp_path / "history.jsonl")
    old = {"started": "2026-11-24T03:00:00+00:00", "seconds": 60.0, "reason": "cron",
           "run_id": "r0", "span": None, "exit_code": 0, "accuracy": 0.9,
           "eval_examples": 10, "baseline_accuracy": None, "blessed": True,
           "pushed_version": "1", "started_from": None, "drift": None, "error": None,
           "report": None}  # a record written before runs had a run_key
    history.append(path, old)
    killed = history.start(path, time.time(), "new span 2")
    assert history.read(path) == [old]  # the scheduler sees finished runs only
    assert history.read(path, unfinished=True)[-1]["status"] == "running"
    shown = history.read(path, unfinished=True, run_active=False)[-1]
    assert shown["status"] == "interrupted" and shown["exit_code"] == 1
    assert f"pid {os.getpid()}" in shown["error"]
    # the next run (it holds the lock) records the killed one as interrupted
    nxt = history.start(path, time.time(), "manual")
    history.append(path, history.failed(path, nxt, "ValueError: bad"))
    entries = history.read(path, unfinished=True, run_active=False)
    assert [(e.get("run_key"), e.get("status", "finished")) for e in entries] == [
        (None, "finished"), (killed, "interrupted"), (nxt, "finished")]
    assert entries[2]["error"] == "ValueError: bad"
    table = history.format_table(entries)
    assert "interrupted" in table and "killed or interrupted" in table
    assert len(history.read(path)) == 2  # old and the failed one; not the interrupted


def test_a_torn_history_line_is_skipped_and_later_runs_record_whole_lines(tmp_path):
    """A run killed while appending leaves a line cut short without its newline: later
    runs, ``history`` and the scheduler skip it (it stopped every run with a
    JSONDecodeError) and the next record starts a line of its own."""
    from local import history
    path = str(tmp_path / "history.jsonl")
    first = history.start(path, time.time(), "manual")
    history.append(path, history.failed(path, first, "ValueError: bad"))
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"run_key": "2026-12-05T01:00:00+00:00-7-ab", "status": "runn')
    second = history.start(path, time.time(), "cron")
    history.append(path, history.failed(path, second, "ValueError: worse"))
    assert [(e["run_key"], e["error"]) for e in history.read(path)] == [
        (first, "ValueError: bad"), (second, "ValueError: worse")]
