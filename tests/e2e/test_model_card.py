"""The model card in the model a tiny end-to-end run pushes, with the progress lines that
run prints."""
import glob
import json
import os
import re
import subprocess
import sys

import pytest

from components import eval_results
from components.model_card import card
from tests.support.paths import REPO
from tests.support.pipeline_runs import cli_args, sample_rows, tiny_overrides


@pytest.mark.serving  # the serving check loads the model with its card in the model server
def test_pushed_model_carries_its_card_and_the_run_prints_progress(tmp_path, tiny_checkpoint):
    data = tmp_path / "data"
    data.mkdir()
    (data / "reviews.tsv").write_text("sentence\tlabel\n" + "".join(
        f"{text}\t{label}\n" for text, label in sample_rows(240)), encoding="utf-8")
    overrides = tiny_overrides(tmp_path, tiny_checkpoint, str(data), **{
        "model.progress_every_steps": 2, "model_card.owners": "ml-team@example.com",
        "model_card.intended_use": "Sorting film reviews in tests."})
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # a shell's
    run = subprocess.run([sys.executable, "-m", "cli.main", *cli_args(overrides)], cwd=REPO,
                         env=env, capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]

    # Progress on stderr: each component's start and end, the Trainer every 2 steps;
    # nothing else there, and the summary on stdout as before.
    progress_line = re.compile(r"\[ *\d+\.\ds\] \S+ (started|complete in \d+\.\ds)|"
                               r"  Trainer (step \d+/\d+ \(\d+%\), .* examples/s, loss .*, "
                               r"about .* left|epoch \d+/\d+ done, .*)")
    lines = run.stderr.splitlines()
    extra = [line for line in lines if not progress_line.fullmatch(line)]
    assert not extra, "\n".join(extra)
    started = [line.split("] ")[1] for line in lines if line.endswith(" started")]
    assert started[:2] == ["ImportSchemaGen started", "TextExampleGen started"]
    assert started[-4:] == ["Evaluator started", "ModelCard started",
                            "ServingCheck started", "Pusher started"]
    assert len([line for line in lines if " complete in " in line]) == len(started)
    steps = [int(m.group(1)) for m in re.finditer(r"Trainer step (\d+)/", run.stderr)]
    assert steps and steps == list(range(2, steps[-1] + 1, 2)) + (
        [] if steps[-1] % 2 == 0 else [steps[-1]])
    assert not progress_line.search(run.stdout) and "  ModelCard " in run.stdout
    assert "Serving check: PASSED" in run.stdout
    run_id = re.search(r"^Pipeline '.*' run (\S+)", run.stdout, re.M).group(1)
    version = re.search(r"^Pushed: version (\d+)", run.stdout, re.M).group(1)

    # The pushed model carries the card, naming this run's metrics as TFMA wrote them.
    pushed = tmp_path / "serving_model" / "bert_classifier" / version
    text = (pushed / card.CARD_FILE).read_text(encoding="utf-8")
    labels = (pushed / "assets.extra" / "labels.txt").read_text(encoding="utf-8").split()
    [evaluation_uri] = glob.glob(str(tmp_path / "pipeline_output" / "*" / "Evaluator" /
                                     "evaluation" / "*"))
    [stats_file] = glob.glob(str(tmp_path / "pipeline_output" / "*" / "Trainer" /
                                 "model_run" / "*" / "train_stats.json"))
    with open(stats_file, encoding="utf-8") as f:
        training = json.load(f)
    evaluation = eval_results.read(evaluation_uri, labels)
    overall = evaluation.metrics[""]
    assert {"sparse_categorical_accuracy", "macro_f1", "example_count"} <= set(overall)
    for name, value in overall.items():
        shown = f"{value:.0f}" if name.endswith("count") else f"{value:.4f}"
        assert f"| {name} | {shown} | - |" in text, name
    for class_id, figures in evaluation.per_class.items():
        assert (f"| {labels[class_id]} | {figures['precision']:.4f} | "
                f"{figures['recall']:.4f} | "
                f"{figures['f1']:.4f} | {figures['support']:.0f} |") in text
    for slice_name in evaluation.metrics:  # "text_length_bucket=<=16": its '<' escaped
        assert not slice_name or f"| {card._cell(slice_name)} |" in text
    assert f"- Run: {run_id}" in text and f"- Base checkpoint: {tiny_checkpoint}" in text
    assert "Decision: **BLESSED**" in text and "| eval.min_accuracy |" in text
    assert "## Intended use\n\nSorting film reviews in tests." in text
    assert "## Owners\n\nml-team@example.com" in text
    assert f"Training started {training['started_from']}." in text
    assert f"| training examples | {training['train_examples']} |" in text
    assert "| max_seq_length | 64 |" in text and "| progress_every_steps | 2 |" in text
    assert "Scripts (letters of " in text and "LATIN 100.0%" in text
    assert str(data) in text
    # The Trainer's own model is left as it was: no card there.
    assert not glob.glob(str(tmp_path / "pipeline_output" / "*" / "Trainer" / "model" / "*" /
                             "Format-Serving" / card.CARD_FILE))
