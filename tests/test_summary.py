"""The run summary's text and exit codes, and error root causes."""
from components.text_example_gen.parsing import InputDataError
from local.summary import EXIT_BLOCKED, EXIT_FAILED, EXIT_OK, RunSummary, root_cause


def test_root_cause_follows_causes_but_not_suppressed_context():
    try:
        try:
            raise UnicodeDecodeError("utf-8", b"\xe9", 0, 1, "invalid")
        except UnicodeDecodeError:
            raise InputDataError("a.tsv: line 3: invalid UTF-8 [while running 'Parse']") from None
    except InputDataError as e:
        inner = e
    try:
        raise RuntimeError("component failed") from inner
    except RuntimeError as outer:
        assert root_cause(outer) == "InputDataError: a.tsv: line 3: invalid UTF-8"


def test_exit_codes_and_text():
    pushed = RunSummary("p", pushed_version="17", pushed_path="/s/m/17", blessed=True,
                        metrics={"": {"example_count": 8.0, "accuracy": 0.75}},
                        baseline_metrics={"": {"accuracy": 0.5}})
    assert pushed.exit_code == EXIT_OK
    assert "accuracy=0.7500 (baseline 0.5000), example_count=8" in pushed.format()
    assert "Pushed: version 17 -> /s/m/17" in pushed.format()
    blocked = RunSummary("p", blessed=False, gate_failures=["accuracy: 0.5 fails"])
    assert blocked.exit_code == EXIT_BLOCKED
    assert "NOT BLESSED\n  - accuracy: 0.5 fails" in blocked.format()
    failed = RunSummary("p", error="InputDataError: x")
    assert failed.exit_code == EXIT_FAILED and "Nothing was pushed" in failed.format()
