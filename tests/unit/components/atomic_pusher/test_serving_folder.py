"""The serving folder check (components/atomic_pusher/serving_folder.py): half-copied
versions and leftovers are named."""
import os

from components.atomic_pusher.publish import STAGING_PREFIX
from components.atomic_pusher.serving_folder import inspect
from tests.support.push_models import export


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


def test_names_model_servers_do_not_read_as_versions_and_a_running_push(tmp_path, model):
    """A folder named '²' (str.isdigit, not int) ended a pushed run as an error, with no
    summary, history or report; a running push's copy on this machine was called a
    leftover to remove."""
    import socket

    base = tmp_path / "bert_classifier"
    export(str(base / "5"))
    (base / "²").mkdir()
    (base / "٣").mkdir()  # an Arabic-Indic 3: no model server loads it
    running = f"{STAGING_PREFIX}9-{socket.gethostname()}-{os.getpid()}"
    (base / running).mkdir()
    state = inspect(str(base))
    assert (state.versions, state.incomplete, state.other, state.pushing) == (
        ["5"], [], ["²", "٣"], [running])
    assert f"{running}: a push running on this machine" in state.describe()
