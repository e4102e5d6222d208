"""The shell examples of README.md, docs/*.md and bench/README.md: run where they can run
here, checked where they cannot, so that a changed flag breaks the build, not the reader.

Every fenced ``bash``/``sh``/``shell`` or ``python`` block is in RUNS (run in a sandbox
folder against a tiny BERT) or in NOT_RUNNABLE (with the reason); a block in neither, or
an entry that names no block, fails. A block is named ``"<file>: <its first line>"``.
Whatever a block's fate, each of its commands is checked (fast, no pipeline):

- ``bert-pipeline ...`` (also after ``VAR=value`` or another command's ``--``): parsed by
  the real parsers (``cli.main.build_parser``, ``serving.server.parse_flags`` for
  ``serve``), its ``--section.field`` values converted by ``load_config`` (a ``--config``
  file is the reader's own and is not read): a renamed flag or a refused value fails;
- ``make ...``: ``make -n`` in the repository (the target exists);
- a script of the repository (``kubeflow/image/run.sh``): exists and is executable; in a
  block that does not run, every argument that names a path of the repository exists;
- and outside the blocks, each ``--section.field`` in inline code is an option of
  ``bert-pipeline run`` (NOT_OPTIONS lists the ones that are not, on purpose).

A block in RUNS is run by bash (``set -euo pipefail``; ``python`` blocks by the
project's Python) in the sandbox, with ``.venv/bin`` first on PATH, after SUBSTITUTIONS
(what the examples name that this machine lacks, and what the sandbox gives instead) and
COMMAND_DEFAULTS (options put right after ``bert-pipeline COMMAND``; the example's own
follow and win). Output the docs show (a line starting with ``{"``, or a ``# {...}``
comment after a command) is compared with the command's real output: every key the docs
show is there, with a value of the same kind. The sandbox runs README's "your own data"
pipeline once (module fixture, the tiny BERT) and serves the pushed model as ``make
serve`` does, on free ports and with ``--feedback_dir``; a serve example runs as a server
for the block that needs it (docs/security.md's TLS recipe). The module takes about 2.5
minutes on 2 cores, 1.5 of them for that run and server (the other checks: 5 s).
"""
import argparse
import contextlib
import csv
import dataclasses
import functools
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import textwrap
from typing import Optional

import pytest

from tests.support.paths import REPO
from tests.support.pipeline_runs import sample_rows
from tests.unit.test_docs_links import FENCE, INLINE_CODE, doc_files, lines_outside_fences

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
# The files of TLS_RECIPE the test's own client (readiness) uses, and the token of
# TLS_SERVE's --auth_token_file=token, a file the reader brings (the sandbox writes it).
TLS_CLIENT_FILES = {"ca_file": "ca.pem", "client_cert": "client.pem",
                    "client_key": "client.key"}
TOKEN = "docs-example-token"

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
        left_out=(("report --serve", "serves until interrupted (tests/test_cli.py serves "
                                     "reports on a free port)"),
                  ("ssh -L", "a tunnel from another machine"))),
    "docs/serving.md: bert-pipeline labels --config serving/deploy/models.config \\": Run(
        expect=(r"stable=\d+",)),
    TLS_SERVE: Run(started_by=TLS_RECIPE),
    TLS_RECIPE: Run(server=("curl --cacert", TLS_SERVE), expect=(r'"model_version_status"',)),
}

A_SECOND_RUN = "a pipeline run of its own (minutes; the module runs one, README's)"
SERVED_HERE = "the sandbox serves the pushed model the same way, on free ports"
CLUSTER = "needs a Kubernetes cluster (tests/test_deploy.py validates the manifests)"
NOT_RUNNABLE = {
    "README.md: make run    # creates .venv, installs pinned deps + the offline checkpoint, "
    "runs the pipeline": "make run is the full job (8,000 rows, the real checkpoint) and "
                         "make test the whole suite, this test included",
    "README.md: make serve   # serving_model/bert_classifier: gRPC on 8500, REST on 8501":
        f"a server on fixed ports until stopped; {SERVED_HERE}",
    "README.md: docker run --rm -p 8500:8500 -p 8501:8501 \\":
        "needs a Docker engine and TF Serving's image",
    "README.md: kubectl apply -f serving/deploy/kubernetes/models-pvc.yaml      "
    "# once; skip if the claim exists": CLUSTER,
    "README.md: .venv/bin/bert-pipeline run --data.input_dir /data/reviews "
    "--data.span_pattern 'span-{SPAN}' \\": f"{A_SECOND_RUN}, on spans, and retrain.yaml "
                                             "is the reader's (tests/test_retraining.py)",
    "README.md: make image      # -> localhost/bert-text-pipeline:<hash>, also :latest":
        "builds an image (minutes, tests/test_image.py) and submits to a Kubeflow "
        "Pipelines API (tests/test_kubeflow.py)",
    "README.md: make test                          # everything: what CI runs (.ci/run)":
        "the test suite, this test included",
    "docs/data.md: .venv/bin/bert-pipeline run --data.input_dir /data/news "
    "--data.schema_path \"\" \\": A_SECOND_RUN,
    "docs/data.md: .venv/bin/bert-pipeline run --data.input_dir /data/mrpc "
    "--data.file_pattern train.tsv \\": f"{A_SECOND_RUN}; tests/test_tasks_e2e.py runs MRPC",
    "docs/distributed-training.md: bert-pipeline run --trainer.workers 2 "
    "--model.batch_size 16   # global batch 32": f"{A_SECOND_RUN}, on two trainer replicas "
                                                 "(tests/test_distributed_training.py)",
    "docs/distributed-training.md: bert-pipeline kubeflow compile --config my.yaml "
    "--vertex.project my-project-123 \\": "needs a Google Cloud project and my.yaml, the "
                                           "reader's (tests/test_vertex.py)",
    "docs/kubeflow.md: make image      # -> localhost/bert-text-pipeline:<hash>, also "
    ":latest": "needs a registry, a cluster and a Kubeflow Pipelines API",
    "docs/kubeflow.md: make image          # docker or podman, whichever works; prints the "
    "image name": "builds images (minutes, tests/test_image.py)",
    "docs/kubeflow.md: kubeflow/image/run.sh -v \"$PWD/data:/pipeline/data:ro\" -v "
    "\"$PWD/image_output:/out\" -- \\": "needs the image make image builds "
                                         "(tests/test_image.py)",
    "docs/object-storage.md: export AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=...   "
    "# or ~/.aws/credentials, an IAM role": "needs an S3 bucket (tests/test_object_storage.py "
                                           "runs one on moto's S3 server)",
    "docs/performance.md: .venv/bin/bert-pipeline serve --port=8500 --rest_api_port=8501 \\":
        f"a server on fixed ports until stopped, bfloat16 on a CPU with AMX; {SERVED_HERE}",
    "docs/retraining.md: .venv/bin/bert-pipeline run --data.input_dir /data/reviews "
    "--data.span_pattern 'span-{SPAN}' \\": f"{A_SECOND_RUN}, on spans "
                                             "(tests/test_retraining.py)",
    "docs/retraining.md: .venv/bin/bert-pipeline schedule --config retrain.yaml            "
    "# runs until stopped": "schedule runs until stopped; retrain.yaml is the reader's "
                            "(tests/test_retraining.py)",
    "docs/serving.md: kubectl apply -f serving/deploy/kubernetes/networkpolicy.yaml": CLUSTER,
    "docs/serving.md: serving/deploy/kubernetes/pin-images.sh          "
    "# image: NAME:TAG -> NAME:TAG@sha256:<digest>": "needs the images' registries and "
                                                     "rewrites the manifests",
    "docs/serving.md: # the two Secrets first: the README's recipe (the same for both "
    "Deployments)": CLUSTER,
    "docs/serving.md: kubectl patch inferenceservice bert-classifier --type merge -p \\":
        "needs a Kubernetes cluster with KServe",
    "docs/serving.md: make serve     # serving_model/bert_classifier, gRPC on 8500, REST on "
    "8501 (TF Serving's Docker ports)": f"servers on fixed ports until stopped, the second "
                                        f"on the reader's models.config; {SERVED_HERE}",
    "docs/serving.md: .venv/bin/bert-pipeline predict \"a gripping, beautiful film\" "
    "\"dull and lifeless\"": "--label canary needs a labelled models.config behind the "
                             "server, grpcs://serving.internal is a remote TLS server; "
                             "its first line is README's predict example, which runs",
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


# --- blocks and commands -------------------------------------------------------------


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


CONTROL = re.compile(r"^[|&;()<>\n]+$")
ASSIGNMENT = re.compile(r"^\w+=")


def simple_commands(command: Command) -> list:
    """The words of each simple command of a command line (split at ``|``, ``&&``, ``;``,
    newlines, redirections, ``<(``...), its leading ``VAR=value`` assignments dropped."""
    code = without_comments(command.text)[0].replace("\\\n", " ")
    lexer = shlex.shlex(code, posix=True, punctuation_chars="();<>|&\n")
    lexer.whitespace, lexer.whitespace_split = " \t\r", True  # a newline ends a command
    found, words, redirect = [], [], False
    for word in lexer:
        if CONTROL.match(word):
            found.append(words)
            words, redirect = [], word in (">", ">>", "<")
        elif redirect:
            redirect = False  # the file of a redirection
        elif words or not ASSIGNMENT.match(word):
            words.append(word)
    return [w for w in found + [words] if w]


def bert_pipeline_argv(words: list) -> Optional[list]:
    """The arguments after ``bert-pipeline`` in a simple command, None without it."""
    for i, word in enumerate(words):
        if os.path.basename(word) == "bert-pipeline":
            return words[i + 1:]
    return None


# --- checks that need no run ----------------------------------------------------------


def cli_problem(argv: list) -> Optional[str]:
    """Why the real ``bert-pipeline`` refuses ``argv`` before doing anything; None when it
    takes it (a ``--config`` file is not read: its settings are the reader's)."""
    from cli.main import build_parser, config_from_args, parse_args
    from serving.server import parse_flags
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            if argv[:1] == ["serve"]:
                parse_flags(argv[1:])
                return None
            args = parse_args(build_parser(), argv)
            if hasattr(args, "config"):  # a command that takes the pipeline's settings
                config_from_args(argparse.Namespace(**{**vars(args), "config": None}))
    except SystemExit:
        message = errors.getvalue()
        return message[message.find("error:"):].strip()
    except ValueError as error:
        return str(error)
    return None


def make_problem(words: list) -> Optional[str]:
    """Why ``make -n`` refuses a make command of the docs (a target that is gone)."""
    done = subprocess.run(["make", "-n", *words[1:]], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    return None if done.returncode == 0 else done.stderr.strip()


def script_problem(words: list) -> Optional[str]:
    """A command that is a script of the repository which is not there or not runnable."""
    program = words[0]
    if "/" not in program or program.startswith(("/", "$", "~", ".venv/")):
        return None
    if not os.access(os.path.join(REPO, program), os.X_OK):
        return f"{program}: not an executable file of the repository"
    return None


@functools.lru_cache(maxsize=None)
def repository_folders() -> frozenset:
    """The repository's top-level folders, without those .gitignore names (outputs)."""
    with open(os.path.join(REPO, ".gitignore"), encoding="utf-8") as f:
        ignored = {line.strip().strip("/") for line in f if line.strip().endswith("/")}
    return frozenset(name for name in os.listdir(REPO) if not name.startswith(".") and
                     name not in ignored and os.path.isdir(os.path.join(REPO, name)))


def path_problems(words: list) -> list:
    """Arguments that name a path of the repository (``serving/deploy/x``, also as
    ``--flag=serving/deploy/x``) that does not exist."""
    problems = []
    for word in words[1:]:
        path = word.split("=", 1)[1] if word.startswith("-") and "=" in word else word
        if path.split("/")[0] in repository_folders() and "/" in path and \
                not os.path.exists(os.path.join(REPO, path)):
            problems.append(f"{path}: no such file or folder in the repository")
    return problems


def command_problems(block: Block) -> list:
    """'file:line: why' for each command of a shell block that the checks above refuse."""
    problems = []
    for command in commands(block):
        for words in simple_commands(command):
            argv = bert_pipeline_argv(words)
            found = [script_problem(words),
                     cli_problem(argv) if argv is not None else None,
                     make_problem(words) if words[0] == "make" else None]
            if block.key not in RUNS:  # a block that runs finds its missing inputs
                found += path_problems(words)
            problems += [f"{block.path}:{command.line}: {p}" for p in found if p]
    return problems


# `--section.field` in the prose's inline code that are no option, on purpose.
NOT_OPTIONS = {"--section.field": "the form of every setting's option",
               "--data.text_colum": "the abbreviation the did-you-mean answer is shown for"}
SETTING_OPTION = re.compile(r"(?<![\w-])--[a-z_]+\.[a-z_]+\b")


def prose_option_problems(root: str = REPO) -> list:
    """'file:line: --x.y' for each setting's option in inline code outside the examples
    (``--data.text_column``) that ``bert-pipeline run`` does not take."""
    from cli.main import build_parser
    parser, problems = build_parser(), []
    for doc in doc_files(root):
        with open(os.path.join(root, doc), encoding="utf-8") as f:
            text = f.read()
        for number, line in lines_outside_fences(text):
            options = [option for span in INLINE_CODE.finditer(line)
                       for option in SETTING_OPTION.findall(span.group(0))]
            problems += [f"{doc}:{number}: {option}" for option in options
                         if option not in NOT_OPTIONS and
                         parser.parse_known_args(["run", option, "1"])[1]]
    return problems


def coverage_problems(blocks: list, runs: dict, not_runnable: dict) -> list:
    """Blocks neither run nor listed (or both), entries that name no block, and two
    different blocks of one file with the same name."""
    problems, seen = [], {}
    for block in blocks:
        if (block.key in runs) == (block.key in not_runnable):
            problems.append(
                f"{block}: listed in both RUNS and NOT_RUNNABLE: {block.key!r}"
                if block.key in runs else
                f"{block}: a new example: run it (RUNS) or say why it cannot run "
                f"here (NOT_RUNNABLE): {block.key!r}")
        if seen.setdefault(block.key, block).text != block.text:
            problems.append(f"{block}: starts with the same line as "
                            f"{seen[block.key]}: make the first lines differ")
    problems += [f"no block is named {key!r} any more: update or remove its entry"
                 for key in [*runs, *not_runnable] if key not in seen]
    return problems


# --- the sandbox and its runs ---------------------------------------------------------

MARK = "@@docs-example-command"


@dataclasses.dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str

    def output_of(self, index: int) -> str:
        """What command ``index`` of a shell block printed."""
        parts = re.split(rf"\n{MARK} (\d+)\n", self.stdout)
        return dict(zip(parts[1::2], parts[2::2])).get(str(index), "")

    def last_command(self) -> int:
        return int(([0] + re.findall(rf"\n{MARK} (\d+)\n", self.stdout))[-1])


class Sandbox:
    """The folder the examples run in, and the values SUBSTITUTIONS and COMMAND_DEFAULTS
    name; each block text runs once."""

    def __init__(self, root: str, **values):
        self.root, self.values, self._outcomes = root, values, {}
        self.env = dict(os.environ, PATH=os.path.join(REPO, ".venv", "bin") + os.pathsep +
                        os.environ.get("PATH", ""))

    def prepared(self, text: str, ports=None) -> str:
        """``text`` after SUBSTITUTIONS and COMMAND_DEFAULTS (``ports``: other values of
        grpc_port and rest_port)."""
        values = {**self.values, **(ports or {})}
        for literal, replacement, _ in SUBSTITUTIONS:
            if literal in text:
                text = text.replace(literal, replacement.format(**values))
        for command, options in COMMAND_DEFAULTS.items():
            text = re.sub(rf"(bert-pipeline\s+{command})\b",
                          lambda found: f"{found.group(1)} {options.format(**values)}", text)
        return text

    def run(self, block: Block, entry: Run) -> Outcome:
        if block.text not in self._outcomes:
            self._outcomes[block.text] = self._execute(block, entry)
        return self._outcomes[block.text]

    def _execute(self, block: Block, entry: Run) -> Outcome:
        if block.language == "python":
            return self._call(["python", "-c", self.prepared(block.text)])
        found = commands(block)
        split = next((i for i, c in enumerate(found) if entry.server and
                      entry.server[0] in c.text), len(found))
        before = self._call(["bash", "-c", self._script(found[:split], 0, entry.left_out)])
        if split == len(found) or before.code != 0:
            return before
        with self._server(block_named(entry.server[1])) as server:
            ports = {"grpc_port": server.grpc_port, "rest_port": server.rest_port}
            after = self._call(["bash", "-c", self._script(found[split:], split,
                                                           entry.left_out, ports)])
        return Outcome(after.code, before.stdout + after.stdout, before.stderr + after.stderr)

    def _call(self, argv: list) -> Outcome:
        done = subprocess.run(argv, cwd=self.root, env=self.env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=900)
        return Outcome(done.returncode, done.stdout, done.stderr)

    def _script(self, found: list, first: int, left_out: tuple, ports=None) -> str:
        """Commands for bash, each after a line that marks its output (numbered from
        ``first``); one left out is ``:``; ``ports`` replace the sandbox server's."""
        lines = ["set -euo pipefail"]
        for i, command in enumerate(found, first):
            skipped = any(part in command.text for part, _ in left_out)
            lines += [f"printf '\\n{MARK} {i}\\n'",
                      ":" if skipped else self.prepared(command.text, ports)]
        return "\n".join(lines) + "\n"

    def _server(self, block: Block):
        """A serve example as a server in the sandbox: its flags, then free ports (which
        win), ready when TLS_CLIENT_FILES and TOKEN get the model's status."""
        from serving.process import ServerProcess
        code = without_comments(self.prepared(block.text))[0].strip()
        return ServerProcess(
            ["--drain_delay_seconds", "0"], wait_for=["bert_classifier"], env=self.env,
            executable=["bash", "-c", f'cd "$0" && exec {code} "$@"', self.root],
            token=TOKEN, **{name: os.path.join(self.root, path)
                            for name, path in TLS_CLIENT_FILES.items()})


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


def run_problems(block: Block, entry: Run, outcome: Outcome) -> list:
    """Why a block's run is not what the docs promise: its exit status, an output the
    docs show with other keys or kinds, an ``expect`` pattern no line matches."""
    found = commands(block) if block.language == "bash" else []
    if outcome.code != 0:
        line = found[outcome.last_command()].line if found else block.line
        return [f"{block.path}:{line}: exit status {outcome.code}\n"
                f"{outcome.stdout[-2000:]}\n{outcome.stderr[-4000:]}"]
    problems = []
    for i, command in enumerate(found):
        printed = json_values(outcome.output_of(i))
        for n, shown in enumerate(command.shown):
            where = f"{block.path}:{command.line}: output {n + 1}"
            problems += (shape_problems(shown, printed[n], where) if n < len(printed) else
                         [f"{where}: the docs show {json.dumps(shown)[:80]}, the command "
                          f"printed {outcome.output_of(i)[:300]!r}"])
    problems += [f"{block}: no output line matches {pattern!r}:\n{outcome.stdout}"
                 for pattern in entry.expect
                 if not re.search(pattern, outcome.stdout, re.MULTILINE)]
    return problems


def _write_rows(path, header: tuple, rows: list, delimiter: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        csv.writer(f, delimiter=delimiter, lineterminator="\n").writerows([header, *rows])


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory, tiny_checkpoint):
    """The folder the examples expect: README's pipeline run done (the tiny BERT), its
    model served as ``make serve`` serves it, on free ports, recording predictions."""
    from serving.client import Target, connect
    from serving.process import ServerProcess

    root = tmp_path_factory.mktemp("docs_examples")
    data = root / "data"
    _write_rows(data / "tickets" / "tickets.csv", ("body", "queue"), sample_rows(240), ",")
    _write_rows(data / "SST-2" / "dev.tsv", ("sentence", "label"), sample_rows(64, 240), "\t")
    (root / ".venv").symlink_to(os.path.join(REPO, ".venv"))  # .venv/bin/bert-pipeline
    shutil.copytree(os.path.join(REPO, "serving", "deploy"), root / "serving" / "deploy")
    (root / "token").write_text(f"{TOKEN} docs-reader\n")  # TLS_SERVE's token file
    box = Sandbox(str(root), data=str(data), checkpoint=tiny_checkpoint)
    pipeline = block_named(PIPELINE_RUN)
    assert run_problems(pipeline, RUNS[PIPELINE_RUN], box.run(pipeline, RUNS[PIPELINE_RUN])) == []

    model = root / "serving_model" / "bert_classifier"
    [pushed] = os.listdir(model)
    older = str(int(pushed) - 1)
    shutil.copytree(model / pushed, model / older)
    with open(root / "pipeline_output" / "history.jsonl", encoding="utf-8") as f:
        run_id = [json.loads(line) for line in f if '"run_id"' in line][-1]["run_id"]
    box.values.update(pushed_version=pushed, older_version=older, run_id=run_id)
    with ServerProcess(["--model_name", "bert_classifier", "--model_base_path", str(model),
                        "--monitoring_config_file", "serving/deploy/monitoring.config",
                        "--feedback_dir", str(root / "feedback")]) as server:
        with connect(server.rest_url, Target("bert_classifier"), timeout=60) as client:
            [recorded] = client.predict_texts(["a gripping, beautiful film"])
        box.values.update(grpc_port=server.grpc_port, rest_port=server.rest_port,
                          prediction_id=recorded.id)
        yield box


# --- tests ------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def all_blocks() -> tuple:
    return tuple(fenced_blocks())


def block_named(key: str) -> Block:
    return next(block for block in all_blocks() if block.key == key)


SHELL_BLOCKS = [block for block in all_blocks() if block.language == "bash"]


def test_every_example_is_run_or_listed_with_a_reason():
    assert len(all_blocks()) > 30 and {b.path for b in all_blocks()} >= {"README.md"}
    assert coverage_problems(list(all_blocks()), RUNS, NOT_RUNNABLE) == []


def test_every_substitution_default_and_left_out_command_is_used():
    ran = [block_named(key) for key in RUNS if key in {b.key for b in all_blocks()}]
    texts = "\n".join(block.text for block in ran)
    assert [literal for literal, _, _ in SUBSTITUTIONS if literal not in texts] == []
    assert [name for name in COMMAND_DEFAULTS
            if not re.search(rf"bert-pipeline\s+{name}\b", texts)] == []
    parts = [(key, part) for key, entry in RUNS.items()
             for part in [p for p, _ in entry.left_out] + list(entry.server[:1])]
    assert [(key, part) for key, part in parts
            if not any(part in c.text for c in commands(block_named(key)))] == []
    assert [key for key, entry in RUNS.items()
            if entry.started_by and RUNS[entry.started_by].server[1:] != (key,)] == []


def test_every_settings_option_the_prose_names_exists():
    assert prose_option_problems() == []


@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=str)
def test_every_command_of_an_example_is_accepted(block):
    """bert-pipeline by its parsers, make targets, the repository's scripts and paths."""
    assert command_problems(block) == []


@pytest.mark.e2e
@pytest.mark.serving
@pytest.mark.parametrize("key", sorted(RUNS), ids=lambda key: next(
    (str(block) for block in all_blocks() if block.key == key), key))
def test_example_runs_as_the_docs_say(key, sandbox):
    """Each block that runs (a serve example: through the block that starts it)."""
    key = RUNS[key].started_by or key
    block = block_named(key)
    assert run_problems(block, RUNS[key], sandbox.run(block, RUNS[key])) == []


# --- the checker's own tests ------------------------------------------------------------


def _write(root, name: str, text: str) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_a_new_block_a_stale_entry_and_a_twin_first_line_are_reported(tmp_path):
    _write(tmp_path, "README.md", "# T\n\n```bash\nmake run\n```\n\n```yaml\na: 1\n```\n")
    _write(tmp_path, "docs/a.md", "```sh\nbert-pipeline history\n```\n\n"
                                  "  ```bash\n  kubectl apply -f x.yaml\n  ```\n"
                                  "```shell\nkubectl apply -f x.yaml\nkubectl get pods\n```\n")
    blocks = fenced_blocks(str(tmp_path))
    assert [(str(b), b.language, b.text) for b in blocks] == [
        ("README.md:3", "bash", "make run"), ("docs/a.md:1", "bash", "bert-pipeline history"),
        ("docs/a.md:5", "bash", "kubectl apply -f x.yaml"),
        ("docs/a.md:8", "bash", "kubectl apply -f x.yaml\nkubectl get pods")]
    assert coverage_problems(blocks, {"README.md: make run": Run()},
                             {"docs/a.md: kubectl apply -f x.yaml": "a cluster",
                              "docs/a.md: gone": "moved"}) == [
        "docs/a.md:1: a new example: run it (RUNS) or say why it cannot run here "
        "(NOT_RUNNABLE): 'docs/a.md: bert-pipeline history'",
        "docs/a.md:8: starts with the same line as docs/a.md:5: make the first lines differ",
        "no block is named 'docs/a.md: gone' any more: update or remove its entry"]


def test_commands_are_split_as_bash_reads_them():
    block = Block("x.md", 10, "bash", "\n".join([
        "S3_ENDPOINT=http://h:9000 .venv/bin/bert-pipeline serve --port=1 \\",
        "    --model_name m   # it's a comment with a quote",
        "python3 -c 'one",
        "two' > out.txt && kubectl apply -f - | tee log",
        "{ pem a b; pem c d",
        '  echo "#not a comment"; } > ssl.config',
        'bert-pipeline predict "great"',
        '{"text": "great", "label": "1"}',
        "curl -d '{\"a\": 1}' localhost:8501/x   # {\"accepted\": 1}",
        '# {"status": "ok"}']))
    found = commands(block)
    assert [(c.line, c.shown) for c in found] == [
        (11, ()), (13, ()), (15, ()), (17, ({"text": "great", "label": "1"},)),
        (19, ({"accepted": 1}, {"status": "ok"}))]
    assert simple_commands(found[0]) == [[".venv/bin/bert-pipeline", "serve", "--port=1",
                                          "--model_name", "m"]]
    assert simple_commands(found[1]) == [["python3", "-c", "one\ntwo"],
                                         ["kubectl", "apply", "-f", "-"], ["tee", "log"]]
    assert simple_commands(found[2])[-2:] == [["echo", "#not a comment"], ["}"]]
    assert bert_pipeline_argv(simple_commands(found[0])[0]) == ["serve", "--port=1",
                                                                "--model_name", "m"]


def test_a_renamed_flag_a_refused_value_or_a_missing_make_target_is_reported(tmp_path):
    assert "did you mean --data.text_column?" in cli_problem(
        ["run", "--data.txt_column", "body"])
    assert "model.epochs" in cli_problem(["run", "--model.epochs", "two"])
    assert "unrecognized arguments: --model_base_pat" in cli_problem(
        ["serve", "--model_base_pat", "/m", "--model_name", "m"])
    assert cli_problem(["history", "--config", "not-read.yaml", "--last", "3"]) is None
    assert cli_problem(["serve", "--model_name", "m", "--model_base_path", "/m"]) is None
    assert "No rule to make target" in make_problem(["make", "no-such-target"])
    assert script_problem(["serving/deploy/gone.sh"]) is not None
    _write(tmp_path, "docs/x.md", "Set `--data.text_column body` or `--model.epoch 3`,\n"
                                  "not `--data.text_colum`.\n```bash\n--data.nope\n```\n")
    assert prose_option_problems(str(tmp_path)) == ["docs/x.md:1: --model.epoch"]
    assert path_problems(["kubectl", "-f", "serving/deploy/gone.yaml",
                          "--from-file=serving/deploy/models.config"]) == [
        "serving/deploy/gone.yaml: no such file or folder in the repository"]


def test_output_is_compared_by_keys_and_kinds_not_values():
    shown = {"predictions": [{"class_id": 0, "label": "1", "probabilities": [0.9, 0.1]}]}
    real = {"predictions": [{"class_id": 1, "label": "0", "probabilities": [0.4, 0.6]},
                            {"class_id": 0, "label": "1", "probabilities": [0.7, 0.3]}],
            "model_version": 3}
    assert shape_problems(shown, real) == []
    assert shape_problems(shown, {"predictions": [{"class_id": "1", "label": "0"}]}) == [
        "output.predictions[0].class_id: a number in the docs, text here",
        "output.predictions[0].probabilities: missing"]
    assert json_values('{"a": 1}\n{"b": [\n  2\n]}\nnot json') == [{"a": 1}, {"b": [2]}]
