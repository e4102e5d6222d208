"""docs/configuration.md, written from the configuration dataclasses: every setting with
its default and the help text ``--help`` prints.

``python -m pipeline.config_reference > docs/configuration.md`` regenerates it;
tests/unit/pipeline/test_config_reference.py fails while the file differs.
"""
from __future__ import annotations

import dataclasses
import json
import sys
from typing import Iterator

from components.text_example_gen.parsing import ReaderConfig
from pipeline import config as config_lib

COMMAND = "python -m pipeline.config_reference > docs/configuration.md"
TOP_LEVEL = "top level"  # the heading of PipelineConfig's own settings

_INTRO = f"""\
# Configuration reference

<!-- Generated from the configuration dataclasses by
`{COMMAND}`; do not edit by hand:
tests/unit/pipeline/test_config_reference.py fails while this file differs from what it prints. -->

A setting takes, last one winning: its default (below), its value in the file given with
`--config FILE` (YAML or JSON, one mapping per section, e.g. `data: {{text_column: review}}`),
then `--<section>.<setting> VALUE` on the command line of the `bert-pipeline` commands that
work on the pipeline (`bert-pipeline run --help` lists them all). Defaults are written as
JSON, which a YAML file takes as well. A list on the command line is a JSON list or items
separated by spaces (column names: by commas). A number must be finite (`nan` and `inf` are
refused: a NaN bound would switch its check off); shares, drift limits and the eval gate's
bounds must lie in [0, 1]; the model's counts and rates in their ranges (batch sizes at least
1, epochs and the learning rate above 0, warmup_fraction and dropout below 1, the seed from 0
to 2**32 - 1), all refused when the settings are read, before any component runs. A file's
values are checked by type too: a count must be a whole number (`16.0` is taken as 16, `16.5`
and `true` are refused), a switch true or false, a list a list of strings, a text setting a
string (a number is taken as its digits, so `text_column: 1` is the second column; `null` and
YAML's unquoted `yes`/`no` are refused: quote them; so is an unquoted `|` or `>`, which
YAML reads as an empty block: write `label_delimiter: '|'`). A YAML file indented with
tabs, or one that is not a mapping of sections, is refused naming the file. `output.model_name` cannot
hold `/`, `:` or `\\` (no REST path could carry it); `output.serving_dir` is a local folder,
`gs://` or `s3://`. A value that starts with `--` (Beam options) is given with `=` on the
command line: `--beam_args='--direct_num_workers=2 --direct_running_mode=multi_processing'`.
"""


def sections() -> Iterator[tuple[str, str, list]]:
    """(heading, summary, fields) of the top-level settings, then of every section."""
    top = [f for f in dataclasses.fields(config_lib.PipelineConfig)
           if f.name not in config_lib.SECTIONS]
    yield TOP_LEVEL, "Settings outside any section.", top
    for section, cls in config_lib.SECTIONS.items():
        yield section, config_lib.section_summary(cls), list(dataclasses.fields(cls))


def rows() -> Iterator[tuple[str, str, str]]:
    """(setting, default as JSON, help) of every setting, in ``--help``'s order."""
    for section, _, fields in sections():
        yield from (_row(section, f) for f in fields)


def _row(section: str, f: dataclasses.Field) -> tuple[str, str, str]:
    prefix = "" if section == TOP_LEVEL else section + "."
    return prefix + f.name, json.dumps(config_lib.default_value(f)), f.metadata["help"]


def _cell(text: str) -> str:
    """Text a Markdown table cell shows as written."""
    return text.replace("|", "\\|").replace("<", "\\<").replace("*", "\\*")


def _code(text: str) -> str:
    return "`" + text.replace("|", "\\|") + "`"


def _score_note() -> str:
    flags = ", ".join(f"`--{f.name}`" for f in dataclasses.fields(ReaderConfig))
    return (f"`bert-pipeline score` reads its file with the same reader settings, as the "
            f"flags {flags}, with the same defaults.")


def render() -> str:
    """The whole of docs/configuration.md."""
    lines = [_INTRO]
    for section, summary, fields in sections():
        lines += [f"## {section}", "", _cell(summary), "",
                  "| setting | default | help |", "| --- | --- | --- |"]
        for setting, default, help_text in (_row(section, f) for f in fields):
            lines.append(f"| {_code(setting)} | {_code(default)} | {_cell(help_text)} |")
        lines.append("")
        if section == "data":
            lines += [_score_note(), ""]
    return "\n".join(lines)


def main() -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
