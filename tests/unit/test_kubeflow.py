"""This project's kubeflow package imports beside the Kubeflow SDKs (kubeflow.katib,
kubeflow.training)."""
import os
import subprocess
import sys

import kubeflow
from tests.support.paths import REPO


# -- Kubeflow's SDKs beside this project's kubeflow package ----------------------------
def test_kubeflow_sdks_import_beside_this_projects_kubeflow_package():
    """In this process (the repository first on sys.path) and in one where
    site-packages' kubeflow (the SDKs') is found first."""
    from kubeflow.katib import KatibClient
    from kubeflow.training import TrainingClient

    assert kubeflow.__file__ == os.path.join(REPO, "kubeflow", "__init__.py")
    assert TrainingClient.__module__ == "kubeflow.training.api.training_client"
    assert KatibClient.__module__ == "kubeflow.katib.api.katib_client"
    code = ("import kubeflow, kubeflow.beam_args, kubeflow.training, kubeflow.katib\n"
            "from kubeflow.training import TrainingClient\n"
            "from kubeflow.katib import KatibClient\n"
            "print(kubeflow.__file__); print(kubeflow.beam_args.__file__)")
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", code], cwd="/", env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    package, beam_args = result.stdout.split()
    assert "site-packages" in package  # the SDKs' kubeflow came first
    assert beam_args == os.path.join(REPO, "kubeflow", "beam_args.py")
