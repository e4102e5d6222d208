"""Rows of the shipped sample, the settings of a fast tiny-BERT pipeline run, and the CLI
run in-process."""
import contextlib
import io
import os

from tests.support.paths import SAMPLE


def sample_rows(n: int, offset: int = 0) -> list:
    """(sentence, label) rows of the shipped SST-2 sample."""
    with open(SAMPLE, encoding="utf-8") as f:
        lines = f.read().splitlines()[1 + offset: 1 + offset + n]
    return [tuple(line.split("\t")) for line in lines]


def labelled_tsv(rows) -> str:
    """(text, label) rows as the text of a TSV file with the sample's header."""
    return "sentence\tlabel\n" + "".join(f"{text}\t{label}\n" for text, label in rows)


def write_labelled_tsv(path, rows) -> str:
    """Writes ``labelled_tsv(rows)`` to ``path``, making its folders; returns the path."""
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(labelled_tsv(rows))
    return str(path)


def write_span(data_dir, number: int, rows) -> str:
    """Writes ``rows`` as span ``number`` (``span-{SPAN}``) of ``data_dir``."""
    return write_labelled_tsv(os.path.join(data_dir, f"span-{number}", "reviews.tsv"), rows)


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
