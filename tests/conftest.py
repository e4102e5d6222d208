"""Shared fixtures: a tiny BERT checkpoint and TF Serving's half_plus_two test model."""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402


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
