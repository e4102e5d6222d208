"""`bert-pipeline labels` (serving/labels.py): version labels set, moved and removed in a
model config, refused for a version TF Serving will not have loaded, bad input named, and
the file complete at every moment."""
import os
import shutil
import threading

import pytest

from cli.main import main
from serving.model_store import read_model_config
from tests.support.deploy_files import MODELS_CONFIG, _config

TWO_MODELS = """# Serving config.
# Second comment line.
model_config_list {
  config {
    name: "bert_classifier"
    base_path: "%s"
    model_platform: "tensorflow"
    model_version_policy { latest { num_versions: 2 } }
  }
  config {
    name: "other"
    base_path: "/models/other"
    model_version_policy { specific { versions: 7 } }
    version_labels { key: "stable" value: 7 }
  }
}
"""


@pytest.fixture
def labelled(tmp_path, saved_model):
    """A config with two models; bert_classifier has versions 100, 200, 300 on disk
    (the policy serves 200 and 300) and a half-copied 400 (no saved_model.pb)."""
    base = tmp_path / "models" / "bert_classifier"
    for version in (100, 200, 300):
        shutil.copytree(saved_model, base / str(version))
    shutil.copytree(os.path.join(saved_model, "variables"), base / "400" / "variables")
    folder = tmp_path / "config"
    folder.mkdir()
    config = folder / "models.config"
    config.write_text(TWO_MODELS % base)
    os.chmod(config, 0o644)
    return config


def _labels(config, model="bert_classifier"):
    models = {m.name: m for m in _config(config).model_config_list.config}
    return dict(models[model].version_labels)


def _labels_cli(config, *args):
    return main(["labels", "--config", str(config), "--model", "bert_classifier", *args])


def _assert_intact(config):
    """Only the config in its folder (no temp file), header and other model kept."""
    assert os.listdir(config.parent) == ["models.config"]
    text = config.read_text()
    assert text.startswith("# Serving config.\n# Second comment line.\nmodel_config_list")
    models = {m.name: m for m in _config(config).model_config_list.config}
    assert dict(models["other"].version_labels) == {"stable": 7}
    assert list(models["other"].model_version_policy.specific.versions) == [7]
    assert models["bert_classifier"].model_version_policy.latest.num_versions == 2
    read_model_config(str(config))  # and the local server accepts it
    assert os.stat(config).st_mode & 0o777 == 0o644


def test_labels_set_move_and_remove(labelled, capsys):
    assert _labels_cli(labelled, "set", "stable=200", "canary=300") == 0
    assert _labels(labelled) == {"stable": 200, "canary": 300}
    _assert_intact(labelled)
    assert _labels_cli(labelled, "set", "stable=300") == 0  # move
    assert _labels(labelled) == {"stable": 300, "canary": 300}
    assert _labels_cli(labelled, "unset", "canary") == 0
    assert _labels(labelled) == {"stable": 300}
    _assert_intact(labelled)
    capsys.readouterr()
    assert _labels_cli(labelled, "show") == 0
    shown = capsys.readouterr().out
    assert "versions on disk: 100 200 300\n" in shown
    assert "served by its version policy: 200 300\n" in shown
    assert "labels: stable=300" in shown
    # The config's only model is the default.
    assert main(["labels", "--config", str(labelled), "show"]) == 1
    assert "pick one with --model" in capsys.readouterr().err
    # A container path that is not here: the error says so.
    assert main(["labels", "--config", MODELS_CONFIG, "set", "stable=1"]) == 1
    assert "(/models/bert_classifier does not exist here: give --base_path)" in \
        capsys.readouterr().err


@pytest.mark.parametrize("version,reason", [
    (999, "it is not a complete SavedModel folder"),
    (400, "it is not a complete SavedModel folder"),  # being copied: no saved_model.pb yet
    (100, "is not among the versions its version policy serves"),  # not the newest two
])
def test_labels_refuse_a_version_tf_serving_will_not_have_loaded(labelled, capsys,
                                                                 version, reason):
    _labels_cli(labelled, "set", "stable=200")
    before = labelled.read_bytes()
    assert _labels_cli(labelled, "set", "canary=300", f"stable={version}") == 1
    error = capsys.readouterr().err
    assert f"model bert_classifier: cannot point label 'stable' at version {version}" \
        in error
    assert reason in error
    base = labelled.parent.parent / "models" / "bert_classifier"
    assert f"versions on disk in {base}: 100 200 300, served: 200 300." in error
    assert labelled.read_bytes() == before  # nothing written, not even canary
    _assert_intact(labelled)
    # Deliberately ahead of a push:
    assert _labels_cli(labelled, "--allow_unavailable", "set", f"stable={version}") == 0
    assert _labels(labelled) == {"stable": version}


def test_a_label_left_on_a_version_no_longer_served_is_named(labelled, capsys):
    """After a push the policy serves 300 and 400, and stable still names 200: TF
    Serving refuses a config with such a label, so setting canary alone would write a
    config whose labels never take effect. Refused, naming the stale label; show marks it."""
    _labels_cli(labelled, "set", "stable=200", "canary=300")
    base = labelled.parent.parent / "models" / "bert_classifier"
    shutil.copytree(base / "300", base / "500")  # pushed: the newest two are 300, 500
    capsys.readouterr()
    before = labelled.read_bytes()
    assert _labels_cli(labelled, "set", "canary=500") == 1
    error = capsys.readouterr().err
    assert "label 'stable' points at version 200, which is not served" in error
    assert labelled.read_bytes() == before
    assert _labels_cli(labelled, "show") == 0
    assert "stable=200 (not served: TF Serving refuses this config)" in \
        capsys.readouterr().out
    assert _labels_cli(labelled, "set", "canary=500", "stable=300") == 0
    assert _labels(labelled) == {"stable": 300, "canary": 500}


def test_labels_write_through_a_link_to_the_config(labelled):
    """A config reached through a symbolic link (a ConfigMap-style link farm): the
    link was replaced by a plain file and the server's file never changed."""
    link = labelled.parent / "link.config"
    link.symlink_to(labelled)
    assert _labels_cli(link, "set", "stable=200") == 0
    assert link.is_symlink() and _labels(labelled) == {"stable": 200}
    assert sorted(os.listdir(labelled.parent)) == ["link.config", "models.config"]


def test_labels_name_bad_input(labelled, capsys):
    for args, message in [
        (["set", "stable=200", "stable=300"], "label 'stable' given twice"),
        (["unset", "stable", "stable"], "label 'stable' given twice"),
        (["set", "stable:200"], "bad label assignment 'stable:200'"),
        (["set", "stable=abc"], "bad label assignment 'stable=abc'"),
        (["set"], "no label given"),
        (["unset", "canary"], "model bert_classifier has no label 'canary'"),
        (["show", "extra"], "show takes no arguments"),
    ]:
        assert _labels_cli(labelled, *args) == 1
        assert message in capsys.readouterr().err
    assert main(["labels", "--config", str(labelled), "--model", "nope", "show"]) == 1
    assert "has no model 'nope' (models: bert_classifier, other)" in capsys.readouterr().err
    broken = labelled.parent / "broken.config"
    broken.write_text("model_config_list { config { nme: 1 } }")
    assert main(["labels", "--config", str(broken), "show"]) == 1
    assert f"{broken}:" in capsys.readouterr().err


def test_labels_file_is_complete_at_every_moment(labelled):
    """A server polling the file while labels move never reads half a file."""
    reads, failures, done = [0], [], threading.Event()

    def reader():
        while not done.is_set():
            try:
                labels = _labels(labelled)
                assert labels.get("stable") in (None, 200, 300)
                reads[0] += 1
            except Exception as error:  # noqa: BLE001 - collected and asserted below
                failures.append(error)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(40):
            assert _labels_cli(labelled, "set", f"stable={200 + 100 * (i % 2)}") == 0
    finally:
        done.set()
        thread.join()
    assert failures == [] and reads[0] > 0
    _assert_intact(labelled)


def test_two_label_edits_at_once_both_take_effect(labelled, monkeypatch, capsys):
    """Two `labels set` at once each read the config, changed it and wrote it back: the
    later write dropped the other's label. An edit now waits for the one in progress
    (and says so), then reads the config that one wrote."""
    from serving import labels
    from tests.support.gate_model import _wait_for

    first_read, go = threading.Event(), threading.Event()
    read = labels.read_config

    def read_then_pause(path):
        config = read(path)
        if threading.current_thread().name == "first":
            first_read.set()
            go.wait(60)
        return config

    monkeypatch.setattr(labels, "read_config", read_then_pause)
    first = threading.Thread(target=labels.set_labels, name="first",
                             args=(str(labelled), {"canary": 300}, "bert_classifier"))
    second = threading.Thread(target=labels.set_labels, name="second",
                              args=(str(labelled), {"stable": 200}, "bert_classifier"))
    first.start()
    try:
        assert first_read.wait(60)
        second.start()
        said = []
        _wait_for(lambda: said.append(capsys.readouterr().err) or
                  "waiting for another edit of it" in "".join(said), 60,
                  "the second edit waiting")
    finally:
        go.set()
        first.join(60)
        if second.ident is not None:
            second.join(60)
    assert _labels(labelled) == {"canary": 300, "stable": 200}
    _assert_intact(labelled)


def test_version_0_is_a_version(labelled, capsys):
    """Folder 0 is a version for TF Serving and this server; `set stable=0` was refused
    as "bad label assignment" (0 read as no number)."""
    assert _labels_cli(labelled, "set", "stable=0") == 1
    assert "cannot point label 'stable' at version 0" in capsys.readouterr().err
    assert _labels_cli(labelled, "--allow_unavailable", "set", "stable=00") == 0
    assert _labels(labelled) == {"stable": 0}
