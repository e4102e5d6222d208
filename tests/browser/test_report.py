"""The run report of a real tiny run (tests/conftest.py's report_run), drawn by headless
Chromium over the DevTools protocol: no page errors, every chart drawn."""
import base64
import io
import json
import os
import shutil
import subprocess
import time
import urllib.request

import pytest

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--disable-dev-shm-usage",
                  "--hide-scrollbars", "--window-size=1280,900"]



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


@pytest.mark.e2e  # the report of a real pipeline run
def test_browser_draws_the_report_without_errors(report_run, tmp_path):
    _, _, _, path = report_run
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
