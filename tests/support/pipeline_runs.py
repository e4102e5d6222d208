"""Rows of the shipped sample, the settings of a fast tiny-BERT pipeline run, and the CLI
run in-process."""
import contextlib
import io

from tests.support.paths import SAMPLE


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


def run_cli(argv: list) -> tuple:
    """``bert-pipeline`` in-process: (exit code, stdout)."""
    from cli.main import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    return code, out.getvalue()
