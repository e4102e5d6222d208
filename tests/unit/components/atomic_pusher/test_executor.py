"""The push: a new version appears whole or not at all, and the run says what the serving
folder really holds.

Full disks are real: a small tmpfs mounted as the push destination (``mount -t tmpfs``
needs root; CI runs as root). The executor under test is the one the pipeline's
``Pusher`` node runs, called with real artifacts on a real SavedModel."""
import os
import subprocess
import sys
import time

from tfx.types import standard_artifacts

from components.atomic_pusher.publish import SAVED_MODEL, STAGING_PREFIX
from components.atomic_pusher.serving_folder import inspect
from local.report.collect import Report
from local.report.page import render
from local.summary import RunSummary
from pipeline.config import load_config
from tests.support.push_models import export, tmpfs, tree


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


def test_a_push_goes_above_the_newest_version_even_with_the_clock_behind(tmp_path, model):
    """A version from a clock that ran ahead (or placed by hand): the new model was pushed
    below it, so TF Serving went on serving the old one while the run said pushed. Two
    pushes in one second skipped the second, and marked it pushed at the first's folder."""
    base = tmp_path / "serving" / "bert_classifier"
    ahead = int(time.time()) + 10**6
    os.makedirs(base / str(ahead))
    pushed, error = push(tmp_path, str(tmp_path / "serving"), model)
    assert error is None, error
    assert pushed.get_string_custom_property("pushed_version") == str(ahead + 1)
    assert tree(base / str(ahead + 1)) == tree(model)
    again, error = push(tmp_path / "again", str(tmp_path / "serving"), model)
    assert error is None, error
    assert again.get_string_custom_property("pushed_version") == str(ahead + 2)
    # a staging copy of the next number (a push under way elsewhere, or a killed one's):
    # its number is taken too, or this push would stop on it (on a bucket) or race it
    os.makedirs(base / f"{STAGING_PREFIX}{ahead + 3}-otherhost-4242")
    third, error = push(tmp_path / "third", str(tmp_path / "serving"), model)
    assert error is None, error
    assert third.get_string_custom_property("pushed_version") == str(ahead + 4)


def test_a_file_removed_from_the_staged_copy_fails_the_push(tmp_path, model, monkeypatch):
    """Each file was checked right after its copy, never the whole tree before the rename:
    a file removed meanwhile (an operator following 'a leftover of an interrupted push?
    remove it' on a running push's copy) published a version without its variables, and
    the run said pushed."""
    from components.atomic_pusher import publish

    copy = publish._copy_verified

    def copy_then_lose_the_index(source, target, relative):
        copy(source, target, relative)
        if relative == SAVED_MODEL:  # the last file: every other one was verified
            os.remove(os.path.join(target, "variables", "variables.index"))

    monkeypatch.setattr(publish, "_copy_verified", copy_then_lose_the_index)
    base = tmp_path / "serving" / "bert_classifier"
    pushed, error = push(tmp_path, str(tmp_path / "serving"), model)
    assert isinstance(error, publish.PushError), error
    assert "variables/variables.index (missing, expected" in str(error)
    assert "the partial copy" in str(error) and "was removed" in str(error)
    assert not base.exists() or os.listdir(base) == []
    assert pushed.get_int_custom_property("pushed") != 1


def test_a_bucket_push_that_cannot_remove_its_staging_copy_stays_pushed(
        tmp_path, model, monkeypatch, caplog):
    """Once saved_model.pb is in the version, the push has happened: a staging copy that
    could not be deleted afterwards (a pusher role without delete, a blip) removed the
    published version too and failed the run. A local folder stands in for the bucket's
    flow (publish.is_object_storage), its delete of the staging copy refused."""
    import tensorflow as tf

    from components.atomic_pusher import publish

    monkeypatch.setattr(publish, "is_object_storage", lambda path: True)
    # the CLI, run in-process by earlier tests, leaves absl's logger at ERROR
    caplog.set_level("WARNING", logger="absl")
    rmtree = tf.io.gfile.rmtree

    def no_delete(path):
        if STAGING_PREFIX in path:
            raise tf.errors.PermissionDeniedError(None, None, "AccessDenied: DeleteObject")
        rmtree(path)

    monkeypatch.setattr(tf.io.gfile, "rmtree", no_delete)
    copy = tf.io.gfile.copy

    def copy_as_a_bucket(source, target, overwrite=False):  # no folders in a bucket
        os.makedirs(os.path.dirname(target), exist_ok=True)
        copy(source, target, overwrite=overwrite)

    monkeypatch.setattr(tf.io.gfile, "copy", copy_as_a_bucket)
    base = tmp_path / "serving" / "bert_classifier"
    final = publish.push_version(model, str(base), "100")
    assert final == str(base / "100") and tree(base / "100") == tree(model)
    assert "the staging copy of pushed version 100 was not removed" in caplog.text
