"""Shared fixtures: a tiny BERT checkpoint and isolated pipeline configs."""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.environ.get("SHARED_DATA", os.path.join(os.path.dirname(REPO), "shared", "data"))
SAMPLE = os.path.join(REPO, "data", "sample", "sst2_sample.tsv")
CURATED_SCHEMA = os.path.join(REPO, "schema", "schema.pbtxt")


@pytest.fixture(scope="session")
def half_base(tmp_path_factory):
    """A model base folder with version 1 of TF Serving's half_plus_two test model."""
    from tests.serving_models import export_half_plus_two
    base = str(tmp_path_factory.mktemp("models") / "half")
    os.makedirs(base)
    export_half_plus_two(base, 1)
    return base


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    from tests.tiny_bert import make_tiny_checkpoint
    return make_tiny_checkpoint(str(tmp_path_factory.mktemp("tiny_bert")))


def sample_rows(n: int, offset: int = 0) -> list:
    """(sentence, label) rows of the shipped SST-2 sample."""
    with open(SAMPLE, encoding="utf-8") as f:
        lines = f.read().splitlines()[1 + offset: 1 + offset + n]
    return [tuple(line.split("\t")) for line in lines]


def tiny_overrides(tmp_path, checkpoint: str, input_dir: str, **extra) -> dict:
    """Config overrides for a fast run with everything under ``tmp_path``."""
    values = {
        "data.input_dir": input_dir,
        "model.checkpoint": checkpoint,
        "model.epochs": 1,
        "model.batch_size": 16,
        "model.max_seq_length": 64,
        "eval.min_accuracy": 0.0,
        "output.root": str(tmp_path / "pipeline_output"),
        "output.serving_dir": str(tmp_path / "serving_model"),
    }
    values.update(extra)
    return values


def cli_args(overrides: dict) -> list:
    args = ["run"]
    for key, value in overrides.items():
        args += [f"--{key}", str(value)]
    return args
