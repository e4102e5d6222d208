"""Small data, said plainly (local/small_data.py): the low-support warning names each
small class, the hint for too few steps or a model that did not learn, and the summary
showing them. A real run on 360 tickets: tests/e2e/test_small_data.py."""
from local import small_data
from local.summary import RunSummary


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
