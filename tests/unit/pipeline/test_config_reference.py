"""docs/configuration.md: generated from the configuration dataclasses, never stale."""
import dataclasses
import os
import re

from cli.main import build_parser
from components.text_example_gen.parsing import ReaderConfig
from pipeline import config_reference
from tests.support.paths import REPO

REFERENCE = os.path.join(REPO, "docs", "configuration.md")


def _subcommand(name: str):
    return build_parser()._subparsers._group_actions[0].choices[name]


def test_the_reference_is_what_the_generator_prints():
    with open(REFERENCE, encoding="utf-8") as f:
        written = f.read()
    assert written == config_reference.render(), (
        f"docs/configuration.md differs from the configuration dataclasses: regenerate it "
        f"with `{config_reference.COMMAND}`")


def test_every_option_of_run_is_in_the_reference_with_the_help_it_prints():
    """The reference's rows and ``run``'s --section.setting options: the same settings, the
    same help text (``--help`` adds the default)."""
    options = {action.dest[len("cfg:"):]: action.help for action in _subcommand("run")._actions
               if action.dest.startswith("cfg:")}
    rows = {setting: help_text for setting, _, help_text in config_reference.rows()}
    assert list(rows) == list(options)
    for setting, help_text in rows.items():
        assert re.fullmatch(re.escape(help_text) + r" \(default: .*\)", options[setting])


def test_the_markdown_table_shows_the_text_as_written():
    """Pipes, angle brackets and asterisks in help texts are escaped in the table cells."""
    page = config_reference.render()
    assert "| `data.label_delimiter` | `\"\"` | Splits the label field into several labels, " \
           "e.g. '\\|' (multi-label" in page
    assert "pushed to \\<serving_dir>/\\<model_name>/\\<version>." in page
    assert "Read input_dir/train/\\* and input_dir/eval/\\*" in page


def test_score_takes_the_reader_settings_with_the_pipelines_help_and_defaults():
    """One declaration (ReaderConfig): ``score``'s --text_column ... are the pipeline's
    --data.text_column ... without the section, same help, same defaults."""
    score = {action.dest: action for action in _subcommand("score")._actions}
    run = {action.dest: action for action in _subcommand("run")._actions}
    for f in dataclasses.fields(ReaderConfig):
        assert score[f.name].help == run[f"cfg:data.{f.name}"].help
        assert score[f.name].default == getattr(ReaderConfig(), f.name)
    [note] = [line for line in config_reference.render().splitlines()
              if line.startswith("`bert-pipeline score`")]
    assert re.findall(r"`--(\w+)`", note) == [f.name for f in dataclasses.fields(ReaderConfig)]
