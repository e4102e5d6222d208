"""Shared fixtures, and each test's tier marker set from its folder.

The tier of a test is its folder: tests/e2e, tests/serving, tests/image, tests/storage and
tests/browser set the marker of that name (pytest.ini describes them; `make test-fast`
leaves them out); tests/unit is the fast tier and has none. A test lives in the folder of
the tier it checks and carries the other tiers it needs as its only per-test tier
decorators, e.g. ``@pytest.mark.serving`` on an e2e test whose run starts the model
server, ``@pytest.mark.e2e`` on the browser test of a real run's report. No module sets
``pytestmark`` to a tier.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402

from tests.support.tiers import tier_of  # noqa: E402


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(items):
    for item in items:
        tier = tier_of(item.path)
        if tier:
            item.add_marker(tier)


@pytest.fixture(scope="session")
def half_base(tmp_path_factory):
    """A model base folder with version 1 of TF Serving's half_plus_two test model."""
    from tests.support.serving_models import export_half_plus_two
    base = str(tmp_path_factory.mktemp("models") / "half")
    os.makedirs(base)
    export_half_plus_two(base, 1)
    return base


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    from tests.support.tiny_bert import make_tiny_checkpoint
    return make_tiny_checkpoint(str(tmp_path_factory.mktemp("tiny_bert")))


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """One real SavedModel (half_plus_two), copied to every version folder a test needs."""
    from tests.support.serving_models import export_half_plus_two
    return export_half_plus_two(str(tmp_path_factory.mktemp("export")), 1)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A new model to push, as the ModelCard's artifact holds it (``<uri>/Format-Serving``)."""
    from tests.support.push_models import export
    return export(tmp_path_factory.mktemp("model") / "Format-Serving", seed=1)


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB tmpfs (real ENOSPC), unmounted afterwards."""
    import subprocess
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    assert mounted.returncode == 0, f"mounting a tmpfs needs root: {mounted.stderr}"
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """moto's S3 server (tests/support/object_storage.py)."""
    from tests.support.object_storage import S3Server
    server = S3Server(str(tmp_path_factory.mktemp("moto") / "moto.log"))
    yield server
    server.close()


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """A test CA, a server certificate for 127.0.0.1/localhost, client certificates."""
    from tests.support.certificates import make_pki
    return make_pki(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def kubernetes_api(monkeypatch, tmp_path):
    """The client's default configuration points at the local endpoint, as it would at
    the cluster's API from inside the step's pod (KFP_POD_NAME, KFP_NAMESPACE set)."""
    import threading
    from http.server import ThreadingHTTPServer

    from kubernetes import client as k8s
    from tfx.utils import kube_utils

    from tests.support.kubeflow_cluster import EXECUTOR_POD, NAMESPACE, _KubernetesApi
    _KubernetesApi.requests, _KubernetesApi.created = [], []
    _KubernetesApi.phase, _KubernetesApi.pod_ip = "Running", "10.0.0.9"
    _KubernetesApi.model_dir = str(tmp_path)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _KubernetesApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    configuration = k8s.Configuration()
    configuration.host = f"http://127.0.0.1:{server.server_address[1]}"
    previous = k8s.Configuration.get_default_copy()
    k8s.Configuration.set_default(configuration)
    # what load_incluster_config() records inside a pod
    monkeypatch.setattr(kube_utils._factory, "_config_loaded", True)
    monkeypatch.setattr(kube_utils._factory, "_inside_cluster", True)
    monkeypatch.setenv("KFP_POD_NAME", EXECUTOR_POD)
    monkeypatch.setenv("KFP_NAMESPACE", NAMESPACE)
    yield _KubernetesApi
    k8s.Configuration.set_default(previous)
    server.shutdown()


@pytest.fixture(scope="session")
def report_run(tmp_path_factory, tiny_checkpoint):
    """One successful tiny run, shared by the report's e2e and browser tests: (overrides,
    exit code, printed summary, report path)."""
    import re

    from tests.support.pipeline_runs import (cli_args, run_cli, sample_rows, tiny_overrides,
                                             write_labelled_tsv)
    tmp = tmp_path_factory.mktemp("report_run")
    data = tmp / "data"
    data.mkdir()
    write_labelled_tsv(data / "reviews.tsv", sample_rows(240))
    overrides = tiny_overrides(tmp, tiny_checkpoint, str(data), **{"data.schema_path": ""})
    code, out = run_cli(cli_args(overrides))
    found = re.search(r"^Report: (\S+index\.html)$", out, re.M)
    assert found, out[-3000:]
    return overrides, code, out, found.group(1)
