"""serving/deploy/kubernetes/pin-images.sh on real local images: every image pinned by the
registry's digest."""
import os
import re
import shutil
import subprocess

import pytest

from tests.support.deploy_files import IMAGE_LINE, KUBERNETES, _images, _pin
from tests.support.paths import REPO

PINNED = re.compile(r"^[^@\s]+:[^@\s:/]+@sha256:[0-9a-f]{64}$")


@pytest.fixture
def local_images(tmp_path):
    """Two real images in the local container storage (podman import of a one-file
    layer each), removed afterwards: {name:tag: digest podman recorded}."""
    # podman as the image tier gets it: installed when missing (engine.sh's need_tools),
    # as on a fresh machine where this test runs before any image is built.
    engine = os.path.join(REPO, "kubeflow", "image", "engine.sh")
    subprocess.run(["bash", "-c", f'. "{engine}" && need_tools podman runc'], check=True)
    images = {}
    for n in (1, 2):
        layer = tmp_path / f"layer{n}"
        layer.mkdir()
        (layer / "f").write_text(f"{n} {tmp_path}")  # a different digest each
        name = f"localhost/pin-test-{os.getpid()}-{n}:{n}.0"
        tar = subprocess.Popen(["tar", "-C", str(layer), "-cf", "-", "f"],
                               stdout=subprocess.PIPE)
        subprocess.run(["podman", "import", "-q", "-", name], stdin=tar.stdout,
                       check=True, capture_output=True)
        tar.wait()
        images[name] = subprocess.run(
            ["podman", "image", "inspect", "--format", "{{.Digest}}", name],
            check=True, capture_output=True, text=True).stdout.strip()
    yield images
    subprocess.run(["podman", "rmi", "-f", *images], capture_output=True)


def test_pin_script_pins_every_image_by_the_registrys_digest(tmp_path, local_images):
    """The script for real, with skopeo, on a copy of the manifests whose images are
    local ones (skopeo's containers-storage: transport; the registries cannot be
    reached here): every image ends NAME:TAG@DIGEST with the digest the storage holds,
    nothing else changes; an image that cannot be resolved stops it, naming the image,
    with no file changed."""
    shutil.copytree(KUBERNETES, tmp_path / "manifests")
    folder = tmp_path / "manifests"
    local = iter(sorted(local_images) * 10)
    wanted = {}
    for name in _images(folder):
        path = folder / name
        text = IMAGE_LINE.sub(lambda m: m.group(0).replace(m.group(1), next(local)),
                              path.read_text())
        path.write_text(text)
        wanted[name] = text
    files = sorted(str(folder / name) for name in wanted)
    pinned = _pin("--transport", "containers-storage:", *files)
    assert pinned.returncode == 0, pinned.stderr
    for name, images in _images(folder).items():
        for image in images:
            assert PINNED.match(image), image
            tagged, digest = image.split("@")
            assert local_images[tagged] == digest
        # Only the image lines changed: the rest of the file, comments included, is kept.
        assert IMAGE_LINE.sub("", (folder / name).read_text()) == \
            IMAGE_LINE.sub("", wanted[name])
    assert _pin("--check", *files).returncode == 0
    # Pinned images are kept; an image that is not there fails, and nothing is written.
    server = folder / "bert-pipeline-server.yaml"
    missing = "localhost/pin-test-missing:1"
    server.write_text(IMAGE_LINE.sub(lambda m: m.group(0).replace(m.group(1), missing),
                                     server.read_text()))
    before = {path: open(path).read() for path in files}
    refused = _pin("--transport", "containers-storage:", *files)
    assert refused.returncode == 1
    assert f"cannot resolve the digest of {missing} ({server}:" in refused.stderr
    assert "no file changed" in refused.stderr
    assert {path: open(path).read() for path in files} == before
    assert sorted(os.listdir(folder)) == sorted(os.listdir(KUBERNETES))  # no temp file
