"""Small data, said plainly: a run on 360 support tickets in 5 classes (the case a user
measured) gives every class its eval rows, warns that they are few, hints that 21
training steps are too few, says the serving check was skipped (not FAILED) and shows
redacted spans by name; and the rules behind those lines, one by one."""
import contextlib
import html
import io
import re

import numpy as np
import pytest
import tensorflow as tf

from local import small_data
from local.summary import RunSummary
from models.training_progress import LossTrend
from tests.support.pipeline_runs import cli_args, tiny_overrides

TICKETS = {"billing": 140, "login": 100, "shipping": 60, "refund": 42, "legal": 18}  # 360
WORDS = {"billing": "invoice charged twice card payment", "login": "password reset account "
         "locked sign in", "shipping": "parcel delivery late courier tracking",
         "refund": "money back return order", "legal": "contract terms lawyer gdpr notice"}


def _tickets() -> list:
    rows = []
    for label, size in TICKETS.items():
        words = WORDS[label].split()
        for i in range(size):
            picked = " ".join(words[(i + k) % len(words)] for k in range(3))
            rows.append((f"from customer{i}.{label}@example.com: {picked} (case {i})", label))
    return rows


@pytest.mark.e2e
def test_small_five_class_run_says_what_is_wrong(tmp_path, tiny_checkpoint):
    from cli.main import main
    from components.text_example_gen.split import eval_rows

    data = tmp_path / "data"
    data.mkdir()
    (data / "tickets.tsv").write_text(
        "sentence\tlabel\n" + "".join(f"{t}\t{l}\n" for t, l in _tickets()), encoding="utf-8")
    overrides = tiny_overrides(tmp_path, tiny_checkpoint, str(data), **{
        "data.schema_path": "", "eval.min_accuracy": 0.95})
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(cli_args(overrides))
    text = out.getvalue()
    print(text)  # shown when an assertion fails
    assert code == 2, text[-3000:]  # not blessed, nothing pushed
    # Every class has its 10 % in eval (the hash split gave one of 5 classes 2 of 35 rows).
    support = {label: eval_rows(n, 0.1) for label, n in TICKETS.items()}
    warning = re.search(r"^WARNING: few eval rows for 5 class\(es\) \(under 30 each: (.*)\): "
                        r"their precision, recall and F1, and the gate's figures, rest on too "
                        r"few examples to mean much; raise data\.eval_fraction, or give an "
                        r"eval set \(data\.presplit\)$", text, re.M)
    assert warning, text
    assert {name: int(rows) for name, rows in re.findall(r"'(\w+)' (\d+)", warning.group(1))} \
        == support
    assert re.search(r"HINT: the model looks undertrained: the training loss barely moved "
                     r"\([0-9.]+ -> [0-9.]+\) and its eval predictions are near uniform \(top "
                     r"probability 0\.2\d on average; 0\.20 is a guess among 5 classes\) "
                     r"after only 21 training steps \(model\.epochs is 1\); train longer "
                     r"\(e\.g\. model\.epochs 15, or model\.train_steps 300\)", text), text
    assert "Gate: NOT BLESSED" in text
    assert "Serving check: skipped: the model was not blessed" in text
    assert "FAILED" not in text
    report = open(re.search(r"^Report: (\S+index\.html)$", text, re.M).group(1),
                  encoding="utf-8").read()
    cells = dict(re.findall(r'data-class-id="(\d+)" data-metric="support" '
                            r'data-value="([0-9.]+)"', report))
    assert sorted(float(v) for v in cells.values()) == sorted(support.values())
    assert 'id="support-warning">WARNING: few eval rows for 5 class(es)' in html.unescape(report)
    assert 'id="training-hint">HINT: the model looks undertrained' in report
    assert '<strong class="note">skipped: the model was not blessed</strong>' in report
    wrong = re.search(r"most wrong</h3>\s*<table>(.*?)</table>", report, re.S).group(1)
    texts = [html.unescape(t) for t in re.findall(r"<tr><td>(.*?)</td>", wrong)]
    assert texts and all(t.startswith("from [EMAIL]: ") for t in texts), texts
    assert "[unused" not in report


def test_low_support_warning_names_each_small_class():
    per_class = {0: {"support": 120.0}, 1: {"support": 2.0}, 2: {"support": 29.0},
                 3: {"support": 30.0}}
    assert small_data.low_support(per_class, ["a", "b", "c", "d"]) == [("b", 2), ("c", 29)]
    warning = small_data.low_support_warning(per_class, ["a", "b", "c", "d"])
    assert warning.startswith("WARNING: few eval rows for 2 class(es) (under 30 each: "
                              "'b' 2, 'c' 29)")
    assert "data.eval_fraction" in warning and "data.presplit" in warning
    assert small_data.low_support_warning({0: {"support": 30.0}}, ["a"]) is None


STATS = {"steps": 22, "first_loss": 1.61, "last_loss": 1.60, "classes": 5,
         "eval_top_probability": 0.22, "hparams": {"epochs": 1.0, "train_steps": 0,
                                                   "learning_rate": 5e-5}}


def test_training_hint_for_too_few_steps_and_for_a_model_that_did_not_learn():
    hint = small_data.short_training_hint(STATS)
    assert hint == ("HINT: the model looks undertrained: the training loss barely moved "
                    "(1.610 -> 1.600) and its eval predictions are near uniform (top "
                    "probability 0.22 on average; 0.20 is a guess among 5 classes) after "
                    "only 22 training steps (model.epochs is 1); train longer (e.g. "
                    "model.epochs 14, or model.train_steps 300)")
    fixed_steps = dict(STATS, hparams=dict(STATS["hparams"], train_steps=22))
    assert small_data.short_training_hint(fixed_steps).endswith(
        "(model.train_steps is 22); train longer (e.g. model.train_steps 300)")
    # One symptom is enough; the loss alone (multi-label: no probabilities).
    assert "near uniform" not in small_data.short_training_hint(
        dict(STATS, eval_top_probability=None))
    assert "loss barely moved" not in small_data.short_training_hint(
        dict(STATS, last_loss=0.9))
    # Many steps and still guessing: not the length, the learning.
    assert small_data.short_training_hint(dict(STATS, steps=5000)).endswith(
        "after 5000 training steps; check that texts and labels belong together, or try "
        "another model.learning_rate (now 5e-05)")
    # A model that learned: the loss fell, confident predictions; or stats without figures.
    assert small_data.short_training_hint(
        dict(STATS, last_loss=0.4, eval_top_probability=0.8)) is None
    assert small_data.short_training_hint({"steps": 22}) is None
    # Two classes: 0.54 is near 0.5, 0.6 is not.
    two = dict(STATS, classes=2, last_loss=0.1)
    assert small_data.short_training_hint(dict(two, eval_top_probability=0.54))
    assert small_data.short_training_hint(dict(two, eval_top_probability=0.6)) is None


def test_summary_shows_the_warning_the_hint_and_a_skipped_serving_check():
    summary = RunSummary("p", blessed=False, labels=["a", "b"],
                         per_class={0: {"support": 40.0}, 1: {"support": 3.0}},
                         serving_check="not checked: the Evaluator did not bless the model",
                         serving_ok=False,
                         training_hint=small_data.short_training_hint(STATS))
    text = summary.format()
    assert "WARNING: few eval rows for 1 class(es) (under 30 each: 'b' 3)" in text
    assert "HINT: the model looks undertrained" in text
    assert "Serving check: skipped: the model was not blessed" in text
    assert "FAILED" not in text
    blessed = RunSummary("p", blessed=True, serving_check="timed out", serving_ok=False)
    assert "Serving check: FAILED (timed out)" in blessed.format()
    assert "Serving check: PASSED (ok)" in RunSummary(
        "p", blessed=True, serving_check="ok", serving_ok=True).format()


def test_loss_trend_records_where_a_real_fit_started_and_ended():
    tf.keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(512, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    model = tf.keras.Sequential([tf.keras.layers.Dense(2)])
    model.compile(optimizer=tf.keras.optimizers.SGD(0.5),
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    trend = LossTrend()
    history = model.fit(x, y, batch_size=32, epochs=3, callbacks=[trend], verbose=0)
    assert trend.first > 2 * trend.last  # it learned
    # The end is the last quarter of the last epoch: below that epoch's mean (still falling).
    assert trend.last < history.history["loss"][-1]
    # ... and close to the loss of the trained model on the whole data.
    assert abs(trend.last - model.evaluate(x, y, verbose=0)) < 0.05
