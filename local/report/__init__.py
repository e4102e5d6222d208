"""The run report: one self-contained HTML page per run, written under
``<state dir>/reports/<run id>/index.html`` (the state dir is output.root, or
storage.local_dir when output.root is object storage).

``write(summary, config)`` gathers the data (collect.py: ML Metadata via the summary, the
run's artifacts, the candidate model on a few eval examples), draws the charts
(figures.py) and renders the page (page.py).
"""
from __future__ import annotations

import os
import re
import time

REPORTS = "reports"
PAGE = "index.html"


def folder(config) -> str:
    """The reports folder of ``config``'s output root (what ``report --serve`` serves)."""
    return os.path.join(config.state_dir, REPORTS)


def run_folder_name(run_id) -> str:
    """A file-system-safe folder name for a run id (e.g. an ISO timestamp)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", str(run_id)).strip(".-")
    return name or "run"


def path_for(config, run_id) -> str:
    return os.path.join(folder(config), run_folder_name(run_id), PAGE)


def write(summary, config) -> str:
    """Writes the report of a finished (or failed) run; returns its path."""
    from local.report import collect, page

    run_id = summary.run_id or time.strftime("no-run-%Y%m%dT%H%M%S")
    path = path_for(config, run_id)
    from pipeline.pipeline import privacy_settings
    html = page.render(collect.collect(summary, privacy_settings(config.privacy)))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    partial = path + ".partial"
    with open(partial, "w", encoding="utf-8") as f:
        f.write(html)
    os.replace(partial, path)
    return path
