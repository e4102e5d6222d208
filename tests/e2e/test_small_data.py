"""Small data, said plainly: a run on 360 support tickets in 5 classes (the case a user
measured) gives every class its eval rows, warns that they are few, hints that 21
training steps are too few, says the serving check was skipped (not FAILED) and shows
redacted spans by name."""
import html
import re

from tests.support.pipeline_runs import cli_args, run_cli, tiny_overrides, write_labelled_tsv

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


def test_small_five_class_run_says_what_is_wrong(tmp_path, tiny_checkpoint):
    from components.text_example_gen.split import eval_rows

    data = tmp_path / "data"
    data.mkdir()
    write_labelled_tsv(data / "tickets.tsv", _tickets())
    overrides = tiny_overrides(tmp_path, tiny_checkpoint, str(data), **{
        "data.schema_path": "", "eval.min_accuracy": 0.95})
    code, text = run_cli(cli_args(overrides))
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
