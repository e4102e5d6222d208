"""The shell examples of README.md, docs/*.md and bench/README.md: their blocks and
commands, and RUNS, the ones run here.

Every fenced ``bash``/``sh``/``shell`` or ``python`` block is in RUNS (run in a sandbox
folder against a tiny BERT) or in NOT_RUNNABLE (tests/unit/test_docs_examples.py, with the
reason). A block is named ``"<file>: <its first line>"``. A block in RUNS is run by bash
after SUBSTITUTIONS (what the examples name that this machine lacks, and what the sandbox
gives instead) and COMMAND_DEFAULTS (options put right after ``bert-pipeline COMMAND``;
the example's own follow and win)."""
import dataclasses
import functools
import json
import os
import shlex
import textwrap
from typing import Optional

from tests.support.doc_files import FENCE, doc_files
from tests.support.paths import REPO

LANGUAGES = {"bash": "bash", "sh": "bash", "shell": "bash", "python": "python"}


@dataclasses.dataclass(frozen=True)
class Run:
    """A block that runs. ``expect``: regular expressions its output must match (each
    line tried). ``left_out``: ((a part of a command's text, why), ...), commands not run.
    ``server``: (a part of a command's text, the name of a serve example): that example
    is started (on free ports, in the sandbox) before the command and stopped after the
    block. ``started_by``: a serve example, run by the block named here."""
    expect: tuple = ()
    left_out: tuple = ()
    server: tuple = ()
    started_by: str = ""


# The pipeline run every other example needs: the module's one run (sandbox fixture).
PIPELINE_RUN = "README.md: .venv/bin/bert-pipeline run \\"
TLS_SERVE = ("docs/security.md: .venv/bin/bert-pipeline serve --port=8500 "
             "--rest_api_port=8501 \\")
TLS_RECIPE = ("docs/security.md: openssl req -x509 -newkey ec -pkeyopt "
              "ec_paramgen_curve:P-256 -noenc -days 30 \\")

RUNS = {
    PIPELINE_RUN: Run(expect=(r"^Pushed: version \d+",)),
    "docs/data.md: .venv/bin/bert-pipeline run \\": Run(  # README's block: runs once
        expect=(r"^Pushed: version \d+",)),
    "README.md: .venv/bin/bert-pipeline score --data /path/to/SST-2/dev.tsv "
    "--predictions predictions.jsonl": Run(expect=(
        r"^\d+ examples, accuracy [01]\.\d{4}", r"^predictions: predictions\.jsonl")),
    "docs/data.md: .venv/bin/bert-pipeline schema --data.input_dir /data/tickets \\": Run(
        expect=(r"^wrote schema/tickets\.pbtxt from \d+ rows; label domain: \['0', '1'\]",)),
    "README.md: curl -s -X POST http://127.0.0.1:8501/v1/models/bert_classifier:predict \\":
        Run(),
    "docs/serving.md: curl -s -X POST "
    "http://127.0.0.1:8501/v1/models/bert_classifier:predict \\": Run(),
    "docs/serving.md: curl -s -X POST "
    "http://127.0.0.1:8501/v1/models/bert_classifier:classify \\": Run(
        expect=(r'"model_version_status"', r'"signature_def"')),
    "README.md: from serving.client import Target, connect": Run(
        expect=(r"^[01] \{'[01]': [\d.e-]+, '[01]': [\d.e-]+\}$",)),
    'README.md: .venv/bin/bert-pipeline predict "a gripping, beautiful film" '
    '"dull and lifeless"': Run(),
    "docs/retraining.md: curl -X POST localhost:8501/v1/feedback \\": Run(),
    "docs/run-report.md: .venv/bin/bert-pipeline report                    "
    "# path of the newest run's report": Run(
        expect=(r"pipeline_output/reports/.+/index\.html$", r"^started \(UTC\)"),
        left_out=(("report --serve", "serves until interrupted (tests/unit/cli/test_main.py "
                                     "serves reports on a free port)"),
                  ("ssh -L", "a tunnel from another machine"))),
    "docs/serving.md: bert-pipeline labels --config serving/deploy/models.config \\": Run(
        expect=(r"stable=\d+",)),
    TLS_SERVE: Run(started_by=TLS_RECIPE),
    TLS_RECIPE: Run(server=("curl --cacert", TLS_SERVE), expect=(r'"model_version_status"',)),
}

# What the examples name that this machine lacks -> what the sandbox gives instead (a
# str.format template of Sandbox.values), and why. Applied in this order to the blocks
# that run; every row must be used by one.
SUBSTITUTIONS = (
    ("/data/tickets", "{data}/tickets",
     "a folder with tickets.csv: columns body and queue, rows of the shipped SST-2 sample"),
    ("/path/to/SST-2/dev.tsv", "{data}/SST-2/dev.tsv",
     "SST-2's layout (sentence<TAB>label), other rows of the sample"),
    ("127.0.0.1:8501", "127.0.0.1:{rest_port}", "the sandbox server's REST port"),
    ("localhost:8501", "localhost:{rest_port}", "the sandbox server's REST port"),
    ("2026-11-24T23:21:19.566480", "{run_id}", "the id of the sandbox's pipeline run"),
    ("1764012345", "{older_version}", "a copy of the pushed model, one version older"),
    ("1764099999", "{pushed_version}", "the version the sandbox's run pushed"),
    ("3f2a…", "{prediction_id}", "the id of a prediction the sandbox server recorded"),
    ('"label": "negative"', '"label": "0"', "a label of the sandbox model (SST-2's 0 and 1, "
                                            "as the docs' outputs show)"),
)
# Options put right after `bert-pipeline COMMAND` in the blocks that run.
COMMAND_DEFAULTS = {
    "run": "--model.checkpoint {checkpoint} --model.epochs 1 --model.batch_size 16 "
           "--model.max_seq_length 64 --eval.min_accuracy 0",  # the tiny BERT, blessed
    "predict": "--server grpc://127.0.0.1:{grpc_port}",  # the default's port, the sandbox's
}


@dataclasses.dataclass(frozen=True)
class Command:
    line: int       # in the Markdown file
    text: str       # as written: continuation lines, comments
    shown: tuple    # the JSON outputs the docs show for it


@dataclasses.dataclass(frozen=True)
class Block:
    path: str       # relative to the repository
    line: int       # of the opening fence
    language: str
    text: str

    @property
    def key(self) -> str:
        """How RUNS and NOT_RUNNABLE name the block: ``<file>: <its first line>``."""
        return f"{self.path}: {self.text.splitlines()[0].strip() if self.text else ''}"

    def __str__(self) -> str:  # where it is
        return f"{self.path}:{self.line}"


def fenced_blocks(root: str = REPO) -> list:
    """Every fenced block in LANGUAGES of the checked Markdown files, dedented."""
    blocks = []
    for doc in doc_files(root):
        with open(os.path.join(root, doc), encoding="utf-8") as f:
            lines = f.read().splitlines()
        number = 0
        while number < len(lines):
            opening = FENCE.match(lines[number])
            number += 1
            if not opening:
                continue
            fence, start = opening.group(1), number
            while number < len(lines) and not lines[number].strip().startswith(fence):
                number += 1
            language = (lines[start - 1].strip()[len(fence):].split() or [""])[0].lower()
            if language in LANGUAGES:
                body = textwrap.dedent("\n".join(lines[start:number])).strip("\n")
                blocks.append(Block(doc, start, LANGUAGES[language], body))
            number += 1
    return blocks


def without_comments(text: str) -> tuple:
    """(``text`` without its shell comments, the comments, whether every quote closed)."""
    kept, comments, quote, i = [], [], None, 0
    while i < len(text):
        char = text[i]
        if quote == "'":
            quote = None if char == "'" else quote
        elif char == "\\":
            kept.append(text[i:i + 2])
            i += 2
            continue
        elif quote == '"':
            quote = None if char == '"' else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or text[i - 1] in " \t\n;|&("):
            end = text.find("\n", i)
            end = len(text) if end < 0 else end
            comments.append(text[i + 1:end].strip())
            i = end
            continue
        kept.append(char)
        i += 1
    return "".join(kept), comments, quote is None


def _json_object(text: str) -> Optional[dict]:
    if not text.startswith("{"):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _complete(text: str) -> bool:
    """A whole command: no continuation backslash, open quote or open ``{ ...`` group."""
    code, _, closed = without_comments(text)
    if text.rstrip().endswith("\\") or not closed:
        return False
    words = shlex.split(code.replace("\\\n", " "))
    return words.count("{") <= sum(word == "}" for word in words)


def commands(block: Block) -> list:
    """The commands of a shell block, each with the output the docs show after it (a
    line ``{"...`` or a comment ``# {...}``, on its own line or after the command)."""
    found, pending, start = [], [], 0
    for offset, line in enumerate(block.text.splitlines()):
        stripped = line.strip()
        if not pending:
            shown = _json_object(stripped) or _json_object(stripped.lstrip("#").strip())
            if shown is not None and found:
                found[-1] = dataclasses.replace(found[-1], shown=found[-1].shown + (shown,))
                continue
            if not stripped or stripped.startswith("#"):
                continue
            start = offset
        pending.append(line)
        text = "\n".join(pending)
        if _complete(text):
            shown = tuple(filter(None, map(_json_object, without_comments(text)[1])))
            found.append(Command(block.line + 1 + start, text, shown))
            pending = []
    if pending:
        found.append(Command(block.line + 1 + start, "\n".join(pending), ()))
    return found


def kind(value) -> str:
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, (int, float)):
        return "a number"
    return {str: "text", list: "a list", dict: "an object"}.get(type(value), "null")


def shape_problems(shown, real, where: str = "output") -> list:
    """How ``real`` differs from the output the docs show: a key the docs show that is
    missing, a value of another kind (list items compared by position)."""
    if kind(shown) != kind(real):
        return [f"{where}: {kind(shown)} in the docs, {kind(real)} here"]
    if isinstance(shown, dict):
        return [problem for key, value in shown.items()
                for problem in (shape_problems(value, real[key], f"{where}.{key}")
                                if key in real else [f"{where}.{key}: missing"])]
    if isinstance(shown, list):
        if shown and not real:
            return [f"{where}: an empty list here"]
        return [problem for i, (a, b) in enumerate(zip(shown, real))
                for problem in shape_problems(a, b, f"{where}[{i}]")]
    return []


def json_values(text: str) -> list:
    """The JSON values ``text`` holds one after another (lines or pretty-printed)."""
    decoder, values, at = json.JSONDecoder(), [], 0
    while text[at:].strip():
        at += len(text[at:]) - len(text[at:].lstrip())
        try:
            value, at = decoder.raw_decode(text, at)
        except ValueError:
            break
        values.append(value)
    return values


@functools.lru_cache(maxsize=None)
def all_blocks() -> tuple:
    return tuple(fenced_blocks())


def block_named(key: str) -> Block:
    return next(block for block in all_blocks() if block.key == key)
