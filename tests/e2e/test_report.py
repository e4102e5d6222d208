"""The run report: written by a real tiny run, self-contained, its numbers TFMA's, found by
`history` and `report`, served over a real socket, drawn by a real browser; a failing run
still gets one that shows where it stopped."""
import base64
import contextlib
import glob
import html.parser
import io
import json
import os
import re
import shutil
import subprocess
import time
import urllib.request

import pytest

from cli.main import main
from tests.support.paths import CURATED_SCHEMA, REPO
from tests.support.pipeline_runs import cli_args, sample_rows, tiny_overrides
from tests.support.report_pages import EXTERNAL

SECTIONS = ("components", "data", "anomalies", "drift", "training", "evaluation", "serving",
            "lineage", "model-card")

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--disable-dev-shm-usage",
                  "--hide-scrollbars", "--window-size=1280,900"]


def _run(argv) -> tuple:
    """``bert-pipeline`` in-process: (exit code, stdout)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    return code, out.getvalue()


def _config_args(overrides: dict) -> list:
    return cli_args(overrides)[1:]  # without the "run" subcommand


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_checkpoint):
    """One successful tiny run: (overrides, exit code, printed summary, report path)."""
    tmp = tmp_path_factory.mktemp("report_run")
    data = tmp / "data"
    data.mkdir()
    (data / "reviews.tsv").write_text(
        "sentence\tlabel\n" + "".join(f"{t}\t{label}\n" for t, label in sample_rows(240)),
        encoding="utf-8")
    overrides = tiny_overrides(tmp, tiny_checkpoint, str(data), **{"data.schema_path": ""})
    code, out = _run(cli_args(overrides))
    found = re.search(r"^Report: (\S+index\.html)$", out, re.M)
    assert found, out[-3000:]
    return overrides, code, out, found.group(1)


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


def test_report_is_self_contained_with_every_section_and_figure(tiny_run):
    _, code, out, path = tiny_run
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


def test_report_numbers_are_the_metrics_tfma_wrote(tiny_run):
    import tensorflow_model_analysis as tfma

    from components.eval_results import slice_name

    overrides, _, _, path = tiny_run
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


def test_summary_history_and_report_command_point_to_the_report(tiny_run):
    overrides, _, out, path = tiny_run
    logdir = re.search(r"^Training curves: tensorboard --logdir (\S+)$", out, re.M).group(1)
    assert glob.glob(os.path.join(logdir, "train", "events.out.tfevents.*"))
    assert out.rstrip().splitlines()[-2:] == [f"Report: {path}",
                                              f"Training curves: tensorboard --logdir {logdir}"]
    code, table = _run(["history"] + _config_args(overrides))
    assert code == 0 and path in table
    code, lines = _run(["history", "--json"] + _config_args(overrides))
    [entry] = [json.loads(line) for line in lines.splitlines()]
    assert entry["report"] == path
    assert _run(["report"] + _config_args(overrides)) == (0, path + "\n")
    assert _run(["report", "--run", entry["run_id"]] + _config_args(overrides)) == \
        (0, path + "\n")
    code, _ = _run(["report", "--run", "no-such-run"] + _config_args(overrides))
    assert code == 1


def test_report_serve_answers_over_a_socket(tiny_run):
    overrides, _, _, path = tiny_run
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
    rows = "".join(f"{t}\t{label}\n" for t, label in sample_rows(60))
    (data / "data.tsv").write_text("sentence\tlabel\n" + rows + "a new kind of label\t7\n",
                                   encoding="utf-8")
    overrides = tiny_overrides(tmp_path, tiny_checkpoint, str(data),
                               **{"data.schema_path": CURATED_SCHEMA})
    code, out = _run(cli_args(overrides))
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


class DevTools:
    """Headless Chromium driven over the DevTools protocol (websocket-client)."""

    def __init__(self, profile: str):
        chromium = shutil.which("chromium")
        if chromium is None:
            pytest.fail("chromium is missing: `make test` installs it as root "
                        "(apt-get install chromium)")
        self.process = subprocess.Popen(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
             "--remote-debugging-port=0", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = os.path.join(profile, "DevToolsActivePort")
        deadline = time.monotonic() + 60
        while not os.path.exists(port_file) or not open(port_file).read().strip():
            assert self.process.poll() is None, "chromium exited"
            assert time.monotonic() < deadline, "chromium opened no DevTools port"
            time.sleep(0.05)  # polling for the port file, not a timed assertion
        port = open(port_file).read().split()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as r:
            target = next(t for t in json.load(r) if t["type"] == "page")
        import websocket
        self.socket = websocket.create_connection(target["webSocketDebuggerUrl"], timeout=60,
                                                  suppress_origin=True)
        self.events, self._id = [], 0
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")

    def call(self, method: str, **params) -> dict:
        self._id += 1
        self.socket.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == self._id:
                assert "error" not in message, message
                return message["result"]
            self.events.append(message)

    def open(self, url: str) -> None:
        """Navigates and waits for the load event."""
        self.events.clear()
        self.call("Page.navigate", url=url)
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            self.events.append(json.loads(self.socket.recv()))

    def errors(self) -> list:
        """Uncaught exceptions, console.error calls and error log entries (e.g. a resource
        that failed to load) since the last ``open``."""
        self.call("Runtime.evaluate", expression="1")  # flushes pending events
        found = []
        for e in self.events:
            method, params = e.get("method"), e.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append(params["exceptionDetails"].get("text"))
            elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                found.append(str(params["args"]))
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                found.append(params["entry"]["text"])
        return found

    def screenshot(self):
        """The whole page as a PIL image (CSS pixels)."""
        from PIL import Image
        size = self.call("Page.getLayoutMetrics")["cssContentSize"]
        shot = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                         clip={"x": 0, "y": 0, "width": size["width"],
                               "height": size["height"], "scale": 1})
        return Image.open(io.BytesIO(base64.b64decode(shot["data"]))).convert("RGB")

    def value(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"]["value"]

    def close(self):
        self.socket.close()
        self.process.terminate()
        self.process.wait(timeout=30)


CHART_BOXES = """JSON.stringify([...document.querySelectorAll('figure.chart svg')].map(svg => {
  const r = svg.getBoundingClientRect();
  return {id: svg.parentElement.id, x: r.left + scrollX, y: r.top + scrollY,
          width: r.width, height: r.height};
}))"""


def _ink(image, box) -> float:
    """Share of the box's pixels that are not (near) white."""
    crop = image.crop((int(box["x"]), int(box["y"]), int(box["x"] + box["width"]),
                       int(box["y"] + box["height"]))).convert("L")
    histogram = crop.histogram()
    return sum(histogram[:235]) / max(1, crop.width * crop.height)


@pytest.mark.browser
def test_browser_draws_the_report_without_errors(tiny_run, tmp_path):
    _, _, _, path = tiny_run
    browser = DevTools(str(tmp_path / "profile"))
    try:
        # The error check can fail: a page with a broken image and a console error.
        control = tmp_path / "control.html"
        control.write_text("<img src='missing.png'><script>console.error('boom')</script>")
        browser.open(control.as_uri())
        assert len(browser.errors()) >= 2, browser.events

        browser.open("file://" + path)
        assert browser.errors() == []
        assert browser.value("document.title").startswith("Run ")
        boxes = json.loads(browser.value(CHART_BOXES))
        assert len(boxes) == 6
        shot = browser.screenshot()
        shot.save(tmp_path / "report.png")
        for box in boxes:
            assert box["width"] > 200 and box["height"] > 100, box
            assert _ink(shot, box) > 0.02, box  # drawn: axes, bars, lines, labels
        # ... and a white page region (the margin right of the content) is blank.
        assert _ink(shot, {"x": shot.width - 60, "y": 0, "width": 50, "height": 400}) < 0.001
    finally:
        browser.close()
