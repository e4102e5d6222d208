"""The pipeline image (kubeflow/Dockerfile), checked against the project without Docker:
every package, the checkpoint and the pins. Built and run: tests/image/test_image.py."""
from tests.support.kubeflow_specs import _config
from tests.support.paths import REPO


def test_pipeline_image_holds_every_package_the_checkpoint_and_the_pins():
    """No Docker here to build kubeflow/Dockerfile: check it against the project instead,
    so a new package, a changed pin or checkpoint cannot be left out of the image."""
    import os
    import re

    dockerfile = open(os.path.join(REPO, "kubeflow", "Dockerfile"), encoding="utf-8").read()
    copied = set(re.findall(r"^COPY (\S+) \1$", dockerfile, re.M))
    setup_py = open(os.path.join(REPO, "setup.py"), encoding="utf-8").read()
    packages = set(re.findall(r'"(\w+)"', re.search(r"find_packages\(include=\[(.*?)\]",
                                                     setup_py, re.S).group(1)))
    assert packages <= copied, f"not in the image: {packages - copied}"
    assert "schema" in copied  # data.schema_path resolves inside the image
    # the checkpoint package is a pin of requirements.txt, installed with its hash
    # (every flag of that install: tests/image/test_image.py)
    assert re.search(r"--require-hashes [-\w ]*-r requirements\.txt", dockerfile)
    # Beam's boot stays the entrypoint (the image is also the Beam worker image)
    assert not re.search(r"^ENTRYPOINT", dockerfile, re.M)
    with open(os.path.join(REPO, "requirements.txt"), encoding="utf-8") as f:
        beam = re.search(r"^apache-beam==([^\s\\]+)", f.read(), re.M).group(1)  # hashed
    assert f"ARG BASE_IMAGE=docker.io/apache/beam_python3.10_sdk:{beam}" in dockerfile
    assert _config().kubeflow.project_dir == "/pipeline"  # WORKDIR of the image
    assert "WORKDIR /pipeline" in dockerfile
