"""The run report: written by a real tiny run, self-contained, its numbers TFMA's, found by
`history` and `report`, served over a real socket; a failing run still gets one that shows
where it stopped. Drawn by a real browser: tests/browser/test_report.py."""
import glob
import html.parser
import json
import os
import re
import subprocess
import urllib.request

from tests.support.paths import CURATED_SCHEMA, REPO
from tests.support.pipeline_runs import (cli_args, run_cli, sample_rows, tiny_overrides,
                                         write_labelled_tsv)
from tests.support.report_pages import EXTERNAL

SECTIONS = ("components", "data", "anomalies", "drift", "training", "evaluation", "serving",
            "lineage", "model-card")


def _config_args(overrides: dict) -> list:
    return cli_args(overrides)[1:]  # without the "run" subcommand


class _Page(html.parser.HTMLParser):
    """Section ids, figures (and whether each holds an <svg>), data-value cells."""

    def __init__(self):
        super().__init__()
        self.ids, self.figures, self.values, self._figure = set(), [], [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "figure":
            self._figure = [attrs.get("id"), False]
            self.figures.append(self._figure)
        if tag == "svg" and self._figure is not None:
            self._figure[1] = True
        if "data-value" in attrs and "data-metric" in attrs:
            self.values.append(attrs)

    def handle_endtag(self, tag):
        if tag == "figure":
            self._figure = None


def _parse(path: str) -> tuple:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    page = _Page()
    page.feed(text)
    return text, page


def test_report_is_self_contained_with_every_section_and_figure(report_run):
    _, code, out, path = report_run
    assert code == 0, out[-3000:]
    assert path.endswith(os.path.join("reports", os.path.basename(os.path.dirname(path)),
                                      "index.html"))
    assert re.fullmatch(r"[A-Za-z0-9._-]+", os.path.basename(os.path.dirname(path)))
    text, page = _parse(path)
    assert set(SECTIONS) <= page.ids
    assert EXTERNAL.findall(text) == []
    assert "<script" not in text.lower() and "<img" not in text.lower()
    charts = {figure_id for figure_id, has_svg in page.figures if has_svg}
    assert len(charts) == len(page.figures)  # every figure is drawn inline
    assert charts == {"fig-classes", "fig-lengths", "fig-training", "fig-baseline",
                      "fig-confusion", "fig-calibration"}
    for expected in ("PUSHED version", "Gate", "BLESSED", "Serving check: <strong",
                     "most wrong", "tensorboard --logdir", "Feature statistics",
                     "[UNK] word pieces"):
        assert expected in text, expected
    # The pushed model's card, as HTML below the report's headings, with this run's metrics.
    card = text[text.index('<section id="model-card">'):]
    assert '<div class="card"><h3>Model card: bert_classifier</h3>' in card
    assert "sparse_categorical_accuracy" in card and "<table>" in card
    # The eval examples the (near-random tiny) model gets most wrong: texts of the data.
    table = re.search(r"most wrong</h3>\s*<table>(.*?)</table>", text, re.S).group(1)
    wrong = [html.unescape(t) for t in re.findall(r"<tr><td>(.*?)</td>", table)]
    assert 0 < len(wrong) <= 10
    assert {w.strip() for w in wrong} <= {t.strip() for t, _ in sample_rows(240)}


def test_report_numbers_are_the_metrics_tfma_wrote(report_run):
    import tensorflow_model_analysis as tfma

    from components.eval_results import slice_name

    overrides, _, _, path = report_run
    [evaluation] = glob.glob(os.path.join(overrides["output.root"], "*", "Evaluator",
                                          "evaluation", "*"))
    written = {}
    for per_slice in tfma.load_metrics(evaluation):
        for kv in per_slice.metric_keys_and_values:
            if kv.value.HasField("double_value") and not kv.key.is_diff:
                per_class = kv.key.sub_key.HasField("class_id") and kv.key.name != "auc"
                key = (kv.key.model_name or "candidate", slice_name(per_slice.slice_key),
                       kv.key.name, kv.key.sub_key.class_id.value if per_class else None)
                written[key] = kv.value.double_value.value
    _, page = _parse(path)
    shown = {}
    for cell in page.values:
        class_id = cell.get("data-class-id")
        key = (cell.get("data-model", "candidate"), cell.get("data-slice", ""),
               cell["data-metric"], int(class_id) if class_id is not None else None)
        shown[key] = json.loads(cell["data-value"])
    overall = {k for k in written if k[1] == "" and k[3] is None}
    assert {"example_count", "sparse_categorical_accuracy", "macro_f1"} <= {k[2] for k in overall}
    slices = {k[1] for k in written}
    assert len(slices) > 1  # the length slices too
    for key, value in shown.items():
        assert written[key] == value, key
    # Every metric of every slice, and every class's figures (overall), are in the report.
    assert {k for k in written if k[3] is None or k[1] == ""} <= set(shown)


def test_summary_history_and_report_command_point_to_the_report(report_run):
    overrides, _, out, path = report_run
    logdir = re.search(r"^Training curves: tensorboard --logdir (\S+)$", out, re.M).group(1)
    assert glob.glob(os.path.join(logdir, "train", "events.out.tfevents.*"))
    assert out.rstrip().splitlines()[-2:] == [f"Report: {path}",
                                              f"Training curves: tensorboard --logdir {logdir}"]
    code, table = run_cli(["history"] + _config_args(overrides))
    assert code == 0 and path in table
    code, lines = run_cli(["history", "--json"] + _config_args(overrides))
    [entry] = [json.loads(line) for line in lines.splitlines()]
    assert entry["report"] == path
    assert run_cli(["report"] + _config_args(overrides)) == (0, path + "\n")
    assert run_cli(["report", "--run", entry["run_id"]] + _config_args(overrides)) == \
        (0, path + "\n")
    code, _ = run_cli(["report", "--run", "no-such-run"] + _config_args(overrides))
    assert code == 1


def test_report_serve_answers_over_a_socket(report_run):
    overrides, _, _, path = report_run
    command = [os.path.join(REPO, ".venv", "bin", "bert-pipeline"), "report", "--serve",
               "--port", "0"] + _config_args(overrides)
    with subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True) as server:
        try:
            line = server.stdout.readline()  # printed once the socket is listening
            url = re.search(r"http://127\.0\.0\.1:\d+/", line).group(0)
            run_folder = os.path.basename(os.path.dirname(path))
            with urllib.request.urlopen(f"{url}{run_folder}/index.html", timeout=30) as reply:
                assert reply.status == 200
                served = reply.read()
            with open(path, "rb") as f:
                assert served == f.read()
        finally:
            server.terminate()


def test_a_failing_run_writes_a_report_that_shows_where_it_stopped(tmp_path, tiny_checkpoint):
    data = tmp_path / "data"
    data.mkdir()
    write_labelled_tsv(data / "data.tsv", sample_rows(60) + [("a new kind of label", "7")])
    overrides = tiny_overrides(tmp_path, tiny_checkpoint, str(data),
                               **{"data.schema_path": CURATED_SCHEMA})
    code, out = run_cli(cli_args(overrides))
    assert code == 1
    path = re.search(r"^Report: (\S+index\.html)$", out, re.M).group(1)
    text, page = _parse(path)
    assert set(SECTIONS) <= page.ids
    assert EXTERNAL.findall(text) == []
    assert '<span class="badge failed">FAILED</span>' in text
    assert "The run failed at DataGate" in text
    assert re.search(r"Not run: [^<]*Transform, [^<]*Trainer", text)
    assert re.search(r'<tr class="status-failed"><td>DataGate</td>', text)
    # The anomaly that stopped it: the unknown label, in the split it landed in.
    assert re.search(r"<td>label</td><td class=\"fail\">Unexpected string values</td>", text)
    assert "The Trainer did not run." in text and "The gate did not run." in text
    assert {figure_id for figure_id, _ in page.figures} == {"fig-classes"}
