"""The model card: rendered from TFMA's real output (fast), and in the model a tiny
end-to-end run pushes, with the progress lines that run prints."""
import glob
import json
import os
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import tensorflow_model_analysis as tfma

from components import eval_results
from components.model_card import card, executor
from tests.support.paths import REPO
from tests.support.pipeline_runs import cli_args, sample_rows, tiny_overrides
from tests.e2e.test_object_storage import s3  # noqa: F401 (moto's S3 server, a fixture)

LABELS = ["negative", "positive"]


def _tfma_output(tmp_path, min_accuracy: float) -> str:
    """TFMA's evaluator on fixed labels and scores, sliced by a feature, with a gate."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    scores = np.where(rng.random(200) < 0.8, labels, 1 - labels)
    frame = pd.DataFrame({"label": labels, "scores": [[1.0 - s, float(s)] for s in scores],
                          "length": np.where(rng.random(200) < 0.5, "short", "long")})
    threshold = [tfma.PerSliceMetricThreshold(  # on the whole split, as the pipeline's
        slicing_specs=[tfma.SlicingSpec()], threshold=tfma.MetricThreshold(
            value_threshold=tfma.GenericValueThreshold(lower_bound={"value": min_accuracy})))]
    config = tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(label_key="label", prediction_key="scores")],
        slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=["length"])],
        metrics_specs=[tfma.MetricsSpec(metrics=[
            tfma.MetricConfig(class_name="ExampleCount"),
            tfma.MetricConfig(class_name="SparseCategoricalAccuracy",
                              per_slice_thresholds=threshold),
            tfma.MetricConfig(class_name="MultiClassConfusionMatrixAtThresholds",
                              config='{"thresholds": [0.0]}')])])
    tfma.analyze_raw_data(frame, config, output_path=str(tmp_path))
    return str(tmp_path)


def _facts(evaluation, gate, blessed) -> card.CardFacts:
    return card.CardFacts(
        model_name="bert_classifier", run_id="2026-11-25T01:00:00.000000",
        created="2026-11-25T01:10:00+00:00", labels=LABELS,
        data=card.DataFacts(sources=["/data/reviews (files: *)"],
                            rows={"train": 160, "eval": 40},
                            classes={"train": {"negative": 70, "positive": 90},
                                     "eval": {"negative": 22, "positive": 18}},
                            scripts=executor.script_shares(["a b", "影"]),
                            scripts_sample=2, unknown_share=0.0123),
        training={"started_from": "from the checkpoint tiny", "checkpoint": "tiny",
                  "steps": 10, "train_examples": 160, "examples_per_second": 52.25,
                  "final": {"loss": 0.5}, "hparams": {"learning_rate": 5e-05, "epochs": 1.0,
                                                      "dropout": None}},
        evaluation=evaluation, gate=gate, blessed=blessed,
        intended_use="Routing | support tickets", limitations="English only.",
        owners="ml-team@example.com",
        lineage=[("model", 7, "/root/Trainer/model/7"), ("model_with_card", None, "/o")])


def test_card_shows_tfma_metrics_slices_classes_and_the_gate(tmp_path):
    uri = _tfma_output(tmp_path, min_accuracy=0.99)  # a bar no model here clears
    evaluation = eval_results.read(uri, LABELS)
    gate = eval_results.gate_checks(uri, evaluation)
    text = card.markdown(_facts(evaluation, gate, blessed=False))

    accuracy = evaluation.metrics[""]["sparse_categorical_accuracy"]
    assert 0.7 < accuracy < 0.9
    assert f"| sparse_categorical_accuracy | {accuracy:.4f} | - |" in text
    assert "| example_count | 200 | - |" in text
    for name in ("length=long", "length=short"):  # per slice, TFMA's figures
        values = evaluation.metrics[name]
        assert (f"| {name} | {values['example_count']:.0f} | "
                f"{values['sparse_categorical_accuracy']:.4f} |") in text
    [check] = gate
    assert (check.metric, check.bound, check.passed) == ("sparse_categorical_accuracy",
                                                         0.99, False)
    assert check.value == pytest.approx(accuracy)
    assert (f"| sparse_categorical_accuracy | at least 0.9900 | {accuracy:.4f} | FAILED | "
            f"eval.min_accuracy |" in text)
    assert "Decision: **NOT BLESSED**" in text
    # the confusion matrix TFMA counted, rows by true class
    confusion = evaluation.confusion
    assert (f"| negative | {confusion[(0, 0)]:.0f} | {confusion[(0, 1)]:.0f} |") in text
    # data, training, what the user filled in, lineage
    assert "| negative | 70 | 22 |" in text and "| all rows | 160 | 40 |" in text
    assert "- Scripts (letters of 2 training texts): LATIN 66.7%, CJK 33.3%" in text
    assert "- [UNK] word pieces: 1.2%" in text
    assert "- No baseline (no model was blessed before)" in text
    assert "Training started from the checkpoint tiny." in text
    assert "| learning_rate | 5e-05 |" in text and "| dropout | - |" in text
    assert "| examples/s | 52.2500 |" in text
    assert "## Intended use\n\nRouting | support tickets" in text
    assert "## Owners\n\nml-team@example.com" in text
    assert "| model | 7 | /root/Trainer/model/7 |" in text
    assert "| model_with_card | - | /o |" in text


def test_card_passes_the_gate_and_says_what_was_not_stated(tmp_path):
    uri = _tfma_output(tmp_path, min_accuracy=0.5)
    evaluation = eval_results.read(uri, LABELS)
    facts = _facts(evaluation, eval_results.gate_checks(uri, evaluation), blessed=True)
    facts.owners = facts.limitations = ""
    text = card.markdown(facts)
    assert "Decision: **BLESSED**" in text and "| passed |" in text and "FAILED" not in text
    assert "Not stated (model_card.owners)." in text
    assert "Not stated (model_card.limitations)." in text


def test_card_states_the_input_contract():
    """The columns, their separator, the pair columns, privacy and each signature's
    inputs, as model_info.json records them (models/export.input_contract)."""
    from models import export
    from models.hparams import Task
    facts = _facts(eval_results.Evaluation(), [], blessed=None)
    assert "Not recorded in model_info.json" in card.markdown(facts)
    facts.input_contract = export.input_contract(
        Task(text_pair=True, text_columns=("subject", "body"), text_pair_columns=("answer",),
             text_separator=". "),
        {"redact": "email,phone", "custom_patterns": [["ticket", "TCK-[0-9]+"]]})
    text = card.markdown(facts)
    assert ('- Text: the columns subject, body, joined with ". " (empty parts left out), '
            "in the model's graph.") in text
    assert "- Second text of each pair: answer." in text
    assert "- Privacy: redacts email,phone and ticket before tokenizing" in text
    assert "| predict_text | subject, body, answer | strings |" in text
    assert "| classify | subject, body, answer | tf.Example features |" in text
    assert "| serving_default | text, text_pair | tf.Example features of the joined" in text
    facts.input_contract = export.input_contract(Task(text_columns=("sentence",)), None)
    text = card.markdown(facts)
    assert "- Text: the column sentence." in text and "redacts none" in text
    assert "| predict_text | text | strings |" in text


def test_copy_tree_copies_every_file(tmp_path):
    source = tmp_path / "model" / "Format-Serving"
    (source / "variables").mkdir(parents=True)
    (source / "saved_model.pb").write_bytes(b"\x00graph")
    (source / "variables" / "variables.index").write_bytes(b"index")
    executor.copy_tree(str(tmp_path / "model"), str(tmp_path / "copy"))
    copied = {os.path.relpath(os.path.join(d, f), tmp_path / "copy")
              for d, _, files in os.walk(tmp_path / "copy") for f in files}
    assert copied == {"Format-Serving/saved_model.pb",
                      "Format-Serving/variables/variables.index"}
    assert (tmp_path / "copy" / "Format-Serving" / "saved_model.pb").read_bytes() == \
        b"\x00graph"


COPY_ON_BUCKET = """
import sys
import tensorflow as tf
from components.model_card import card, executor
from pipeline.config import StorageConfig
from serving.filesystems import exit_process, register
import os
os.environ.update(StorageConfig(s3_endpoint=sys.argv[2]).environment())
register()
executor.copy_tree(sys.argv[1] + "/Trainer/model/7", sys.argv[1] + "/ModelCard/model/9")
with tf.io.gfile.GFile(card.card_path(sys.argv[1] + "/ModelCard/model/9"), "w") as f:
    f.write("# Model card")
exit_process(0)
"""


@pytest.mark.storage
def test_model_and_card_written_on_a_bucket(s3, tmp_path):  # noqa: F811 (the fixture)
    from tests.support.serving_models import export_half_plus_two

    bucket = s3.bucket("model-card")
    s3.put_folder(export_half_plus_two(str(tmp_path / "model"), 1), bucket,
                  "root/Trainer/model/7/Format-Serving")
    run = subprocess.run([sys.executable, "-c", COPY_ON_BUCKET, f"s3://{bucket}/root",
                          s3.endpoint], cwd=tmp_path, env=s3.env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-5000:]
    source = [k.split("/model/7/", 1)[1] for k in s3.keys(bucket, "root/Trainer/")]
    copied = [k.split("/model/9/", 1)[1] for k in s3.keys(bucket, "root/ModelCard/")]
    assert "Format-Serving/saved_model.pb" in source
    assert copied == sorted(source + ["Format-Serving/assets.extra/model_card.md"])
    assert s3.read(bucket, "root/ModelCard/model/9/Format-Serving/saved_model.pb") == \
        s3.read(bucket, "root/Trainer/model/7/Format-Serving/saved_model.pb")
    assert s3.read(bucket, "root/ModelCard/model/9/Format-Serving/assets.extra/"
                           "model_card.md") == b"# Model card"
    assert not [p for p in os.listdir(tmp_path) if p != "model"]  # nothing went local


@pytest.mark.e2e
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
    for slice_name in evaluation.metrics:
        assert not slice_name or f"| {slice_name} |" in text
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
