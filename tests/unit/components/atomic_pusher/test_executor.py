"""The push: a new version appears whole or not at all, and the run says what the serving
folder really holds.

Full disks are real: a small tmpfs mounted as the push destination (``mount -t tmpfs``
needs root; CI runs as root). The executor under test is the one the pipeline's
``Pusher`` node runs, called with real artifacts on a real SavedModel.
"""
import contextlib
import hashlib
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from tfx.types import standard_artifacts

from components.atomic_pusher.publish import STAGING_PREFIX
from components.atomic_pusher.serving_folder import inspect
from local.report.collect import Report
from local.report.page import render
from local.summary import RunSummary
from pipeline.config import load_config
from tests.e2e.test_object_storage import s3  # noqa: F401 (moto's S3 server, a fixture)

VARIABLE_FLOATS = 128 * 1024  # 512 KiB of variables
GRAPH_FLOATS = 384 * 1024  # a constant in the graph: saved_model.pb is 3 MiB


class Scaled(tf.Module):
    """y = x * w + c[0]: 0.5 MiB of variables, a 3 MiB saved_model.pb."""

    def __init__(self, seed: int):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.w = tf.Variable(rng.random(VARIABLE_FLOATS, dtype=np.float32))
        self.c = rng.random(GRAPH_FLOATS, dtype=np.float32)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def serve(self, x):
        return {"y": x * self.w[0] + tf.constant(self.c)[0]}


def export(folder, seed: int = 0) -> str:
    module = Scaled(seed)
    tf.saved_model.save(module, str(folder),
                        signatures={"serving_default": module.serve.get_concrete_function()})
    return str(folder)


def tree(folder) -> dict:
    """{relative path: SHA-256} of every file under ``folder``."""
    found = {}
    for parent, _, names in os.walk(folder):
        for name in names:
            with open(os.path.join(parent, name), "rb") as f:
                found[os.path.relpath(os.path.join(parent, name), folder)] = \
                    hashlib.sha256(f.read()).hexdigest()
    return found


@contextlib.contextmanager
def tmpfs(folder, size: str):
    """A tmpfs of ``size`` mounted on ``folder`` (root only, as in CI)."""
    os.makedirs(folder, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                   check=True)
    try:
        yield str(folder)
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def pipeline_pusher(tmp_path, serving_dir: str):
    """The pipeline's Pusher node and a fresh instance of its executor."""
    from local.local_runner import local_pipeline

    config = load_config(None, {"data.schema_path": "", "output.root": str(tmp_path / "out"),
                                "output.serving_dir": serving_dir})
    [node] = [c for c in local_pipeline(config).components if c.id == "Pusher"]
    return node, node.executor_spec.executor_class()


def artifacts(tmp_path, model_dir: str, blessed: int = 1):
    """Inputs (blessed or not) around the SavedModel ``model_dir``, an empty PushedModel."""
    model = standard_artifacts.Model()
    model.uri = os.path.dirname(model_dir)  # the SavedModel is <uri>/Format-Serving
    blessing = standard_artifacts.ModelBlessing()
    blessing.set_int_custom_property("blessed", blessed)
    infra = standard_artifacts.InfraBlessing()
    infra.set_int_custom_property("blessed", 1)
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(tmp_path / "pushed_model")
    return {"model": [model], "model_blessing": [blessing], "infra_blessing": [infra]}, \
        {"pushed_model": [pushed]}


def push(tmp_path, serving_dir: str, model_dir: str, blessed: int = 1):
    """Runs the pipeline's Pusher executor; returns (PushedModel artifact, error)."""
    node, executor = pipeline_pusher(tmp_path, serving_dir)
    inputs, outputs = artifacts(tmp_path, model_dir, blessed)
    properties = dict(node.exec_properties)  # as the orchestrator passes them: JSON
    try:
        executor.Do(inputs, outputs, properties)
    except Exception as error:  # noqa: BLE001 - returned for the test to check
        return outputs["pushed_model"][0], error
    return outputs["pushed_model"][0], None


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A new model, as the ModelCard's artifact holds it (``<uri>/Format-Serving``)."""
    return export(tmp_path_factory.mktemp("model") / "Format-Serving", seed=1)


def test_a_push_to_a_full_disk_leaves_nothing_and_the_served_version_as_it_was(
        tmp_path, model):
    with tmpfs(tmp_path / "disk", "5m") as disk:
        base = os.path.join(disk, "bert_classifier")
        os.makedirs(base)
        # the served version: 3.5 MiB of 5 (exported elsewhere: export needs room to spare)
        subprocess.run(["cp", "-r", export(tmp_path / "served", seed=0),
                        os.path.join(base, "1")], check=True)
        before, free = tree(base), os.statvfs(disk).f_bavail

        pushed, error = push(tmp_path, os.path.join(disk), model)

        assert error is not None, "the push did not fail on a full disk"
        message = str(error)
        assert "No space left on device" in message and base in message, message
        assert "partial copy" in message and "was removed" in message, message
        assert sorted(os.listdir(base)) == ["1"]  # no half-copied version, no leftover
        assert tree(base) == before
        assert os.statvfs(disk).f_bavail == free  # the disk is not left full
        assert pushed.get_int_custom_property("pushed") == 0
        state = inspect(base)
        assert state.versions == ["1"] and state.clean
        summary = RunSummary("p", error=message, serving_folder=state.describe())
        said = f"Nothing was pushed. Serving folder {base}: version 1; nothing else"
        assert said in summary.format()
        assert said in render(Report(summary, "now"))  # the run report's page


def test_a_push_publishes_a_verified_copy_under_the_version_only(tmp_path, model):
    base = tmp_path / "serving" / "bert_classifier"
    pushed, error = push(tmp_path, str(tmp_path / "serving"), model)
    assert error is None, error
    [version] = os.listdir(base)
    assert version.isdigit() and tree(base / version) == tree(model)
    assert os.path.isdir(base / version / "assets")  # an empty folder of the model too
    assert pushed.get_int_custom_property("pushed") == 1
    assert pushed.get_string_custom_property("pushed_version") == version
    assert pushed.get_string_custom_property("pushed_destination") == str(base / version)
    assert tree(pushed.uri) == tree(model)  # TFX's archive copy in the artifact
    assert inspect(str(base)).describe() == f"{base}: version {version}; nothing else"


def test_a_model_the_gate_did_not_bless_is_not_pushed(tmp_path, model):
    pushed, error = push(tmp_path, str(tmp_path / "serving"), model, blessed=0)
    assert error is None and pushed.get_int_custom_property("pushed") == 0
    assert not (tmp_path / "serving").exists()


def test_a_model_whose_saved_model_does_not_parse_is_not_pushed(tmp_path, model):
    broken = tmp_path / "broken" / "Format-Serving"
    broken.parent.mkdir()
    subprocess.run(["cp", "-r", model, str(broken)], check=True)
    (broken / "saved_model.pb").write_bytes((broken / "saved_model.pb").read_bytes()[:4096])
    pushed, error = push(tmp_path, str(tmp_path / "serving"), str(broken))
    assert "saved_model.pb is not a SavedModel (4096 bytes)" in str(error), error
    assert os.listdir(tmp_path / "serving" / "bert_classifier") == []
    assert pushed.get_int_custom_property("pushed") == 0


def test_the_serving_folder_check_names_half_copied_versions_and_leftovers(tmp_path, model):
    base = tmp_path / "bert_classifier"
    export(str(base / "5"))
    (base / "6" / "variables").mkdir(parents=True)  # numbered, no saved_model.pb
    (base / "7").mkdir()
    (base / "7" / "saved_model.pb").write_bytes(
        open(os.path.join(model, "saved_model.pb"), "rb").read()[:188 * 1024])  # cut short
    (base / f"{STAGING_PREFIX}8-123").mkdir()
    state = inspect(str(base))
    assert (state.versions, state.incomplete, state.other) == (["5"], ["6", "7"],
                                                               [f"{STAGING_PREFIX}8-123"])
    text = state.describe()
    assert text.startswith(f"{base}: version 5; WARNING: 6, 7: numbered but no complete "
                           f"saved_model.pb"), text
    assert f"also {STAGING_PREFIX}8-123 (not loaded by model servers" in text
    assert inspect(str(tmp_path / "none")).describe().endswith("does not exist (no model "
                                                               "is served from it)")


PUSH_TO_BUCKET = """
import os, sys
from components.atomic_pusher.publish import push_version, PushError
from pipeline.config import StorageConfig
from serving.filesystems import exit_process, register
os.environ.update(StorageConfig(s3_endpoint=sys.argv[1]).environment())
register()
push_version(sys.argv[2], sys.argv[3], "17")
try:
    push_version(sys.argv[4], sys.argv[3], "18")
except PushError as error:
    print(error)
exit_process(0)
"""


@pytest.mark.storage
def test_on_a_bucket_saved_model_pb_comes_last_and_a_bad_version_is_removed(
        s3, tmp_path, model):  # noqa: F811 (the fixture)
    bucket = s3.bucket("push")
    broken = tmp_path / "broken"
    subprocess.run(["cp", "-r", model, str(broken)], check=True)
    (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
    s3.start_recording()
    run = subprocess.run([sys.executable, "-c", PUSH_TO_BUCKET, s3.endpoint, model,
                          f"s3://{bucket}/serving/m", str(broken)], env=s3.env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-5000:]
    assert f"s3://{bucket}/serving/m/18/saved_model.pb is not a SavedModel" in run.stdout
    assert "was removed" in run.stdout
    keys = [k.split("/", 2)[2] for k in s3.keys(bucket, "serving/")]
    assert keys == sorted(f"17/{path}" for path in tree(model)), keys
    assert s3.read(bucket, "serving/m/17/saved_model.pb") == \
        open(os.path.join(model, "saved_model.pb"), "rb").read()
    # saved_model.pb is written only after every other file was written and read back
    requests_17 = [(method, path.split("?")[0]) for method, path in s3.recording()
                   if path.split("?")[0].startswith(f"{bucket}/serving/m/17/")]
    pb_writes = [i for i, (method, path) in enumerate(requests_17)
                 if path.endswith("/saved_model.pb") and method in ("PUT", "POST")]
    others = [i for i, (method, path) in enumerate(requests_17)
              if not path.endswith("/saved_model.pb")]
    assert pb_writes and others and max(others) < min(pb_writes), requests_17
    assert any(method == "GET" for method, path in requests_17
               if not path.endswith("/saved_model.pb")), requests_17  # read back


@pytest.mark.e2e  # a real pipeline run
@pytest.mark.serving  # its serving check starts the model server
def test_a_run_pushing_to_a_full_disk_fails_naming_it_and_says_what_is_served(
        tmp_path, tiny_checkpoint, capsys):
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    from cli.main import main
    from tests.support.paths import CURATED_SCHEMA
    from tests.support.pipeline_runs import cli_args, sample_rows, tiny_overrides
    from tests.support.serving_models import export_half_plus_two

    data = tmp_path / "data"
    data.mkdir()
    (data / "reviews.tsv").write_text("sentence\tlabel\n" + "".join(
        f"{text}\t{label}\n" for text, label in sample_rows(200)))
    # 3 MiB: the served version (kilobytes) fits, the tiny BERT (4 MiB of weights) does not
    with tmpfs(tmp_path / "disk", "3m") as disk:
        base = os.path.join(disk, "bert_classifier")
        export_half_plus_two(base, 1)
        before = tree(base)
        overrides = tiny_overrides(tmp_path, tiny_checkpoint, str(data), **{
            "data.schema_path": CURATED_SCHEMA, "output.serving_dir": disk})

        assert main(cli_args(overrides)) == 1
        out = capsys.readouterr().out
        assert "Gate: BLESSED" in out and "Serving check: PASSED" in out, out[-3000:]
        assert "FAILED: PushError: pushing version " in out and \
            f"to {base} failed: {base}/{STAGING_PREFIX}" in out, out[-3000:]
        assert "No space left on device; the partial copy " in out
        assert f"Nothing was pushed. Serving folder {base}: version 1; nothing else" in out
        assert sorted(os.listdir(base)) == ["1"] and tree(base) == before
        assert os.statvfs(disk).f_bavail > 0.9 * os.statvfs(disk).f_blocks

    config = load_config(None, overrides)
    store = metadata_store.MetadataStore(metadata_store_pb2.ConnectionConfig(
        sqlite=metadata_store_pb2.SqliteMetadataSourceConfig(
            filename_uri=config.metadata_path)))
    [pusher] = [e for e in store.get_executions()
                if "Pusher" in store.get_execution_types_by_id([e.type_id])[0].name]
    assert pusher.last_known_state == metadata_store_pb2.Execution.FAILED
    assert not [a for a in store.get_artifacts_by_type("PushedModel")
                if a.custom_properties["pushed"].int_value == 1]


PUSH_IN_A_CHILD = """
import sys
from components.atomic_pusher.publish import push_version
push_version(sys.argv[1], sys.argv[2], "2")
"""


def test_a_push_killed_midway_leaves_nothing_a_server_loads_and_the_next_push_cleans_up(
        tmp_path, model):
    """``kill -9`` of a real push blocked on reading the model (a FIFO in its place)."""
    stuck = tmp_path / "stuck" / "Format-Serving"
    stuck.parent.mkdir()
    subprocess.run(["cp", "-r", model, str(stuck)], check=True)
    data = stuck / "variables" / "variables.data-00000-of-00001"
    data.unlink()
    os.mkfifo(data)  # the copy blocks here until killed
    base = tmp_path / "serving" / "bert_classifier"
    export(str(base / "1"))
    before = tree(base)
    child = subprocess.Popen([sys.executable, "-c", PUSH_IN_A_CHILD, str(stuck), str(base)],
                             env=dict(os.environ, PYTHONPATH=os.getcwd()))
    try:
        deadline = time.monotonic() + 120
        partial = []
        while not partial:  # until the child has copied up to the FIFO
            assert child.poll() is None and time.monotonic() < deadline, child.returncode
            partial = [p for p in base.glob(f"{STAGING_PREFIX}2-*")
                       if (p / "fingerprint.pb").exists()]
            time.sleep(0.05)
    finally:
        child.kill()  # SIGKILL: no cleanup runs
        child.wait()
    [left] = [p.name for p in partial]
    state = inspect(str(base))
    assert (state.versions, state.incomplete, state.other) == (["1"], [], [left])
    assert f"also {left} (not loaded by model servers" in state.describe()

    pushed, error = push(tmp_path, str(tmp_path / "serving"), model)
    assert error is None, error
    [version] = [v for v in os.listdir(base) if v != "1"]
    assert version.isdigit() and tree(base / version) == tree(model)
    assert {f"1/{k}": v for k, v in tree(base / "1").items()} == before  # untouched
    assert inspect(str(base)).describe() == f"{base}: versions 1, {version}; nothing else"
