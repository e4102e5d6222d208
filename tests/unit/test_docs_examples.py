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
for the block that needs it (docs/security.md's TLS recipe). That run is
tests/e2e/test_docs_examples.py (about 2.5 minutes on 2 cores, 1.5 of them for the
pipeline run and server); the checks here take 5 s.
"""
import argparse
import contextlib
import functools
import io
import os
import re
import shlex
import subprocess
from typing import Optional

import pytest

from tests.support.doc_examples import (COMMAND_DEFAULTS, RUNS, SUBSTITUTIONS, Block, Command, Run,
                                        all_blocks, block_named, commands, fenced_blocks,
                                        json_values, shape_problems, without_comments)
from tests.support.doc_files import INLINE_CODE, doc_files, lines_outside_fences
from tests.support.files import write
from tests.support.paths import REPO

A_SECOND_RUN = "a pipeline run of its own (minutes; the module runs one, README's)"
SERVED_HERE = "the sandbox serves the pushed model the same way, on free ports"
CLUSTER = "needs a Kubernetes cluster (tests/unit/serving/test_deploy.py validates the manifests)"
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
                                             "is the reader's (tests/e2e/test_retraining.py)",
    "README.md: make image      # -> localhost/bert-text-pipeline:<hash>, also :latest "
    "(:latest-standin on the stand-in base)":
        "builds an image (minutes, tests/image/test_image.py) and submits to a Kubeflow "
        "Pipelines API (tests/unit/kubeflow/test_pipelines_client.py)",
    "README.md: make test                          # everything: what CI runs (.ci/run)":
        "the test suite, this test included",
    "docs/data.md: .venv/bin/bert-pipeline run --data.input_dir /data/news "
    "--data.schema_path \"\" \\": A_SECOND_RUN,
    "docs/data.md: .venv/bin/bert-pipeline run --data.input_dir /data/mrpc "
    "--data.file_pattern train.tsv \\": f"{A_SECOND_RUN}; tests/e2e/test_tasks.py runs MRPC",
    "docs/distributed-training.md: bert-pipeline run --trainer.workers 2 "
    "--model.batch_size 16   # global batch 32": f"{A_SECOND_RUN}, on two trainer replicas "
                                                 "(tests/e2e/test_distributed_training.py)",
    "docs/distributed-training.md: bert-pipeline kubeflow compile --config my.yaml "
    "--vertex.project my-project-123 \\": "needs a Google Cloud project and my.yaml, the "
                                           "reader's (tests/unit/kubeflow/test_vertex.py)",
    "docs/kubeflow.md: make image      # -> localhost/bert-text-pipeline:<hash>, also "
    ":latest (:latest-standin on the stand-in base)": "needs a registry, a cluster and a Kubeflow Pipelines API",
    "docs/kubeflow.md: make image          # docker or podman, whichever works; prints the "
    "image name": "builds images (minutes, tests/image/test_image.py)",
    "docs/kubeflow.md: kubeflow/image/run.sh -v \"$PWD/data:/pipeline/data:ro\" -v "
    "\"$PWD/image_output:/out\" -- \\": "needs the image make image builds "
                                         "(tests/image/test_image.py)",
    "docs/object-storage.md: export AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=...   "
    "# or ~/.aws/credentials, an IAM role": "needs an S3 bucket (tests/e2e/test_object_storage.py "
                                           "runs one on moto's S3 server)",
    "docs/performance.md: .venv/bin/bert-pipeline serve --port=8500 --rest_api_port=8501 \\":
        f"a server on fixed ports until stopped, bfloat16 on a CPU with AMX; {SERVED_HERE}",
    "docs/retraining.md: .venv/bin/bert-pipeline run --data.input_dir /data/reviews "
    "--data.span_pattern 'span-{SPAN}' \\": f"{A_SECOND_RUN}, on spans "
                                             "(tests/e2e/test_retraining.py)",
    "docs/retraining.md: .venv/bin/bert-pipeline schedule --config retrain.yaml            "
    "# runs until stopped": "schedule runs until stopped; retrain.yaml is the reader's "
                            "(tests/e2e/test_retraining.py)",
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


def test_a_new_block_a_stale_entry_and_a_twin_first_line_are_reported(tmp_path):
    write(tmp_path, "README.md", "# T\n\n```bash\nmake run\n```\n\n```yaml\na: 1\n```\n")
    write(tmp_path, "docs/a.md", "```sh\nbert-pipeline history\n```\n\n"
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
    write(tmp_path, "docs/x.md", "Set `--data.text_column body` or `--model.epoch 3`,\n"
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
