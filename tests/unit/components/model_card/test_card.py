"""The model card (components/model_card/card.py), rendered from TFMA's real output: the
metrics, slices, classes, the gate, and the input contract."""
import numpy as np
import pandas as pd
import pytest
import tensorflow_model_analysis as tfma

from components import eval_results
from components.model_card import card, executor

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
                  "pooling": "cls", "steps": 10, "train_examples": 160,
                  "examples_per_second": 52.25,
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
    assert ("Training started from the checkpoint tiny. The classifier reads BERT's pooler "
            "on [CLS]." in text)
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


def test_labels_from_the_data_are_text_in_the_card(tmp_path):
    """The card ships inside the model (assets.extra/model_card.md): a label such as
    <img src=x onerror=...> or [x](javascript:...) went in as written, HTML and a link
    for any Markdown viewer that renders them (only | and line breaks were escaped)."""
    uri = _tfma_output(tmp_path, min_accuracy=0.5)
    evaluation = eval_results.read(uri, LABELS)
    facts = _facts(evaluation, eval_results.gate_checks(uri, evaluation), blessed=True)
    facts.labels = ["<img src=x onerror=alert(1)>", "[x](javascript:alert(1))",
                    "https://evil.example"]  # GitHub's Markdown links a bare URL
    facts.data.classes = {"train": {label: 5 for label in facts.labels}}
    text = card.markdown(facts)
    assert "<img" not in text and "[x](javascript" not in text
    assert "&lt;img src=x onerror=alert(1)&gt;" in text
    assert "\\[x\\](javascript:alert(1))" in text
    assert "https://evil" not in text and "https&#58;//evil.example" in text
    facts.data.sources = ["/data/<b>bold</b>.csv"]  # file names and columns: from the data
    facts.input_contract = {"text_columns": ["<script>x</script>"]}
    text = card.markdown(facts)
    assert "<b>" not in text and "<script>" not in text
