"""The shell examples of README.md, docs/*.md and bench/README.md that can run here, run
as the docs say in a sandbox (tests/support/doc_examples.py lists them): README's "your own
data" pipeline once (module fixture, the tiny BERT), the pushed model served as ``make
serve`` does, on free ports and with ``--feedback_dir``, and a serve example run as a
server for the block that needs it. Output the docs show is compared by keys and kinds.
The checks that need no run: tests/unit/test_docs_examples.py."""
import csv
import dataclasses
import json
import os
import re
import shutil
import subprocess

import pytest

from tests.support.doc_examples import (COMMAND_DEFAULTS, PIPELINE_RUN, RUNS, SUBSTITUTIONS, Block,
                                        Run, all_blocks, block_named, commands, json_values,
                                        shape_problems, without_comments)
from tests.support.paths import REPO
from tests.support.pipeline_runs import sample_rows

# The files of TLS_RECIPE the test's own client (readiness) uses, and the token of
# TLS_SERVE's --auth_token_file=token, a file the reader brings (the sandbox writes it).
TLS_CLIENT_FILES = {"ca_file": "ca.pem", "client_cert": "client.pem",
                    "client_key": "client.key"}
TOKEN = "docs-example-token"

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


@pytest.mark.serving
@pytest.mark.parametrize("key", sorted(RUNS), ids=lambda key: next(
    (str(block) for block in all_blocks() if block.key == key), key))
def test_example_runs_as_the_docs_say(key, sandbox):
    """Each block that runs (a serve example: through the block that starts it)."""
    key = RUNS[key].started_by or key
    block = block_named(key)
    assert run_problems(block, RUNS[key], sandbox.run(block, RUNS[key])) == []
