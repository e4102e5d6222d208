"""``bert-pipeline``: run or schedule the pipeline, its history and run reports,
Kubeflow, a schema, scoring, serving and prediction.

Every configuration field is an option: ``--<section>.<field> VALUE`` (see
``bert-pipeline run --help``); ``--config FILE`` loads a YAML/JSON file first.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import re
import stat
import sys
import tempfile
import typing

from components.text_example_gen.parsing import ReaderConfig
from pipeline import config as config_lib


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    """One ``--[section.]field`` option per configuration field, help from its metadata."""
    parser.add_argument("--config", metavar="FILE",
                        help="YAML or JSON file with any of the settings below.")
    for f in dataclasses.fields(config_lib.PipelineConfig):
        if f.name not in config_lib.SECTIONS:
            parser.add_argument(f"--{f.name}", dest=f"cfg:{f.name}", metavar="VALUE",
                                help=config_lib.option_help(f))
    for section, cls in config_lib.SECTIONS.items():
        group = parser.add_argument_group(f"{section} settings",
                                          config_lib.section_summary(cls))
        types = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            kind = getattr(types[f.name], "__name__", str(types[f.name]))
            group.add_argument(f"--{section}.{f.name}", dest=f"cfg:{section}.{f.name}",
                               metavar=kind.upper(), help=config_lib.option_help(f))


def _add_reader_options(parser: argparse.ArgumentParser) -> None:
    """``--<field>`` for every reader setting, with the help and default of the pipeline's
    ``--data.<field>`` (``ReaderConfig``)."""
    for f in dataclasses.fields(ReaderConfig):
        parser.add_argument(f"--{f.name}", default=config_lib.default_value(f),
                            choices=f.metadata.get("choices"), help=config_lib.option_help(f))


def _reader_from_args(args: argparse.Namespace) -> ReaderConfig:
    """The ``ReaderConfig`` the ``_add_reader_options`` flags give."""
    types = typing.get_type_hints(ReaderConfig)
    return ReaderConfig(**{f.name: config_lib.convert(getattr(args, f.name), types[f.name],
                                                      f"--{f.name}")
                           for f in dataclasses.fields(ReaderConfig)})


def config_from_args(args: argparse.Namespace) -> config_lib.PipelineConfig:
    overrides = {k[4:]: v for k, v in vars(args).items()
                 if k.startswith("cfg:") and v is not None}
    return config_lib.load_config(args.config, overrides)


def _cmd_run(args) -> int:
    from local import local_runner  # light: TFX is imported after the lock and the checks
    config = config_from_args(args)
    try:
        summary = local_runner.run(config)
    except local_runner.RunInProgress as busy:
        print(f"error: {busy}", file=sys.stderr)
        return 1
    print("\n" + summary.format(), flush=True)
    return summary.exit_code


def _cmd_schedule(args) -> int:
    from local.scheduler import Scheduler
    scheduler = Scheduler(config_from_args(args))
    if args.once:
        tick = scheduler.tick()
        print(f"{tick.action}: {tick.reason}")
        return tick.exit_code or 0
    scheduler.loop()
    return 0


def _cmd_history(args) -> int:
    import json

    from local import history, local_runner
    config = config_from_args(args)
    if args.last < 1:
        raise ValueError(f"--last must be at least 1, not {args.last}")
    entries = history.read(config.history_path, unfinished=True,
                           run_active=local_runner.run_active(config),
                           pipeline=config.name)[-args.last:]
    if args.json:
        for entry in entries:
            print(json.dumps(entry, ensure_ascii=False))
    else:
        print(history.format_table(entries) if entries else
              f"no runs of pipeline '{config.name}' recorded in {config.history_path} (the "
              f"history of output.root, or schedule.history_file)"
              f"{_other_pipelines(config)}")
    return 0


def _cmd_report(args) -> int:
    from local import history, local_runner, report
    config = config_from_args(args)
    if args.serve:
        return _serve_reports(report.folder(config), args.port)
    entries = history.read(config.history_path, unfinished=True,
                           run_active=local_runner.run_active(config), pipeline=config.name)
    if not args.run and entries and not entries[-1].get("report"):
        newest = entries[-1]
        why = {history.RUNNING: "it is still running",
               history.INTERRUPTED: "it was killed or interrupted before its report"}.get(
            newest.get("status"), "its report was not written")
        earlier = [e["run_id"] for e in entries if e.get("report") and e.get("run_id")]
        raise ValueError(
            f"the newest run ({newest.get('run_id') or 'no run id'}, started "
            f"{newest.get('started')}) has no report: {why}"
            + (f"; --run {earlier[-1]} for the newest run that has one" if earlier else ""))
    path = history.find_report(entries, args.run)
    if path is None and args.run:  # a run missing from the history: its folder, if there
        candidate = report.path_for(config, args.run)
        path = candidate if os.path.exists(candidate) else None
    if path is None:
        raise ValueError(f"no report for {'run ' + args.run if args.run else 'any run'} of "
                         f"pipeline '{config.name}' in {config.history_path} (reports are "
                         f"written by `bert-pipeline run`){_other_pipelines(config)}")
    if not os.path.exists(path):
        whose = f"run {args.run}'s" if args.run else "the newest run's"
        raise ValueError(f"{path} ({whose} report) does not exist: removed, or written on "
                         f"another machine")
    print(path)
    return 0


def _other_pipelines(config) -> str:
    """'; it holds runs of pipeline(s) 'a', 'b' (name)' when the history file has runs of
    other pipelines only (it is shared by the pipelines of one output root); else ''."""
    from local import history
    others = sorted(history.pipelines(config.history_path) - {config.name, None})
    return (f"; it holds runs of pipeline(s) {', '.join(repr(o) for o in others)} "
            f"(name, or --config)" if others else "")


def _serve_reports(folder: str, port: int) -> int:
    """Serves the reports folder on 127.0.0.1 until interrupted (for an SSH tunnel); a
    path that resolves outside it (a symbolic link out) is answered 404."""
    import functools
    import http.server

    if not os.path.isdir(folder):
        raise ValueError(f"{folder} does not exist: no run has written a report yet")
    real_folder = os.path.realpath(folder)

    class InsideFolder(http.server.SimpleHTTPRequestHandler):
        def send_head(self):
            real = os.path.realpath(self.translate_path(self.path))
            if real != real_folder and not real.startswith(real_folder + os.sep):
                self.send_error(404, "File not found")  # a link out of the folder
                return None
            return super().send_head()

    handler = functools.partial(InsideFolder, directory=folder)
    with http.server.ThreadingHTTPServer(("127.0.0.1", port), handler) as server:
        print(f"Serving {folder} at http://127.0.0.1:{server.server_address[1]}/ "
              f"(Ctrl-C stops)", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
    return 0


def _cmd_kubeflow(args) -> int:
    from kubeflow import kubeflow_runner, pipelines_client
    config = config_from_args(args)
    spec = args.spec
    if args.action == "compile":
        print(f"wrote {kubeflow_runner.compile_pipeline(config, spec)}")
        return 0
    if not os.path.exists(spec):
        raise ValueError(f"{spec} does not exist: run `bert-pipeline kubeflow compile` first")
    token = None
    if args.token_file:
        with open(args.token_file, encoding="utf-8") as f:
            token = f.read().strip()
    name = args.run_name or config.name
    if args.action == "submit":
        print(f"run {pipelines_client.submit(config, spec, name, token)} created")
    else:
        print(f"recurring run {pipelines_client.schedule(config, spec, name, token)} created "
              f"(cron '{pipelines_client.kfp_cron(config.kubeflow.cron)}', max concurrency 1, "
              "no catch-up)")
    return 0


def _cmd_vertex(args) -> int:
    from google.api_core import exceptions as api_exceptions
    from google.auth import exceptions as auth_exceptions

    from kubeflow import vertex
    config = config_from_args(args)
    if not os.path.exists(args.spec):
        raise ValueError(f"{args.spec} does not exist: run `bert-pipeline kubeflow compile` "
                         "with vertex.project set first")
    name = args.run_name or config.name
    try:
        if args.action == "submit":
            print(f"pipeline job {vertex.submit(config, args.spec, name)} created")
        else:
            print(f"schedule {vertex.schedule(config, args.spec, name)} created (cron "
                  f"'{config.kubeflow.cron}', one run at a time, no catch-up)")
    except auth_exceptions.DefaultCredentialsError as error:
        print(f"error: no Google Cloud credentials ({error}); run `gcloud auth "
              "application-default login` or set GOOGLE_APPLICATION_CREDENTIALS",
              file=sys.stderr)
        return 1
    except api_exceptions.GoogleAPICallError as error:
        print(f"error: Vertex AI ({vertex.api_endpoint(config)}) refused the request: "
              f"{error}", file=sys.stderr)
        return 1
    return 0


def _predictions_target(path: str) -> bool:
    """Whether ``score --predictions`` goes to a regular file (written aside and renamed
    over it once whole) rather than a pipe or device (/dev/stdout: written as it is);
    checked before scoring, so a folder that does not exist or cannot be written fails in
    seconds, not after the whole file was scored."""
    if os.path.isdir(path):
        raise ValueError(f"--predictions {path} is a folder: give a file name in it")
    path = os.path.realpath(path)  # a symlink: its target is written
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
    except FileNotFoundError:
        pass
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-check-", dir=folder)
    except OSError as error:
        raise ValueError(f"--predictions {path}: cannot write in {folder} "
                         f"({error.strerror})") from None
    os.close(fd)
    os.remove(probe)
    return True


def _cmd_score(args) -> int:
    from cli.score import score_file
    try:
        _check_batch_size(args.batch_size)
        whole_file = _predictions_target(args.predictions) if args.predictions else False
        result = score_file(args.model, args.data, _reader_from_args(args), args.batch_size,
                            args.allow_unknown_labels, redact_rows=bool(args.predictions))
    except ValueError as error:  # the reader names pipeline settings; here they are flags
        settings = "|".join(f.name for f in dataclasses.fields(ReaderConfig))
        raise ValueError(re.sub(rf"\bdata\.({settings})\b", r"--\1", str(error))) from None
    print(f"{result.examples} examples, accuracy {result.accuracy:.4f} "
          f"({result.seconds:.1f}s)")
    for label, (correct, total) in result.per_label.items():
        print(f"  label {label}: {correct}/{total} correct, F1 {result.f1(label):.4f}")
    if args.predictions:
        import json

        from serving.feedback import rewrite
        # texts as the model redacts them; for its owner alone all the same (0600). A file
        # is replaced once the new one is whole and on disk: a full disk or Ctrl-C leaves
        # the old one as it was.
        if whole_file:
            # through a symlink to its target (rewriting the link would replace it)
            rewrite(os.path.realpath(args.predictions), result.rows, durable=True)
        else:
            with open(args.predictions, "w", encoding="utf-8") as f:
                f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in result.rows)
        print(f"predictions: {args.predictions} (one JSON line per row, in file order)")
    return 0


def _cmd_schema(args) -> int:
    from cli.schema import infer_schema, pipeline_patterns, write_schema
    config = config_from_args(args)
    data = config.data
    schema, rows = infer_schema(data.input_dir, pipeline_patterns(data),
                                data.reader_config(), data.max_label_l_infinity,
                                data.max_length_js_divergence, data.presplit,
                                config.privacy.patterns())
    write_schema(schema, args.out)
    labels = list(schema.string_domain[0].value)
    print(f"wrote {args.out} from {rows} rows; label domain: {labels}; drift limits: label "
          f"L-infinity {data.max_label_l_infinity}, text-length Jensen-Shannon divergence "
          f"{data.max_length_js_divergence}")
    return 0


def _read_text_lines(path: str) -> list:
    """Non-blank lines of a UTF-8 file (or '-': standard input), without line endings;
    decoded as the pipeline decodes data files (an error names the file and the line)."""
    from components.text_example_gen.parsing import decode
    if path == "-":
        text = decode("standard input", sys.stdin.buffer.read())
    else:
        with open(path, "rb") as f:
            text = decode(path, f.read())
    # \r\n, \n or a lone \r (old Mac and some spreadsheet exports) ends a line
    return [line for line in re.split(r"\r\n|\r|\n", text) if line.strip()]


def _column_rows(texts: list) -> list:
    """--columns: every text a JSON object of strings, keyed by the model's inputs."""
    import json
    rows = []
    for i, text in enumerate(texts, start=1):
        try:
            row = json.loads(text)
        except json.JSONDecodeError as error:
            row, problem = None, f"invalid JSON ({error.msg})"
        else:
            problem = "not a JSON object of strings"
        if not isinstance(row, dict) or not all(isinstance(v, str) for v in row.values()):
            raise ValueError(f"--columns: text {i} is {problem}; give each as "
                             f'{{"subject": "...", "body": "..."}} with the model\'s column '
                             f"names (its model_info.json lists them)")
        rows.append(row)
    return rows


def _client_flags(message: str) -> str:
    """A client library's error in the words of predict's flags (file names left alone)."""
    for phrase, flags in ((" or pass allow_insecure_token=True", ""),
                          ("tls=True, with ca_file", "--ca_file"),
                          ("(tls, ca_file, client_cert or client_key)",
                           "(--ca_file, --client_cert or --client_key)"),
                          ("client_cert and client_key go together",
                           "--client_cert and --client_key go together")):
        message = message.replace(phrase, flags)
    return re.sub(r"^(timeout|ca_file|client_cert|client_key) ", r"--\1 ", message)


def _check_batch_size(value: int) -> None:
    if value < 1:
        raise ValueError(f"--batch_size must be at least 1, got {value}")


def _cmd_predict(args) -> int:
    import json

    from serving.client import ServingClientError, Target, connect
    from serving.lengths import map_by_length, text_bytes
    _check_batch_size(args.batch_size)
    texts = list(args.text) + (_read_text_lines(args.input) if args.input else [])
    if not texts:
        raise ValueError("nothing to predict: give texts or --input FILE")
    pairs = None
    if args.pairs and args.columns:
        raise ValueError("--pairs or --columns, not both (with --columns, a pair model's "
                         "texts are the keys text and text_pair)")
    if args.pairs:
        bad = next(((i, t) for i, t in enumerate(texts, 1) if t.count("\t") != 1), None)
        if bad:
            raise ValueError(f"--pairs: each text must be 'first<TAB>second', not text "
                             f"{bad[0]} {bad[1][:80]!r} ({bad[1].count(chr(9)) + 1} "
                             f"tab-separated fields)")
        texts, pairs = map(list, zip(*(t.split("\t") for t in texts)))
    elif not args.columns:
        tabbed = [i for i, t in enumerate(texts, 1) if "\t" in t]
        if tabbed:  # a TSV's label (or second text) would be classified as text
            print(f"warning: {len(tabbed)} text(s) hold a tab (the first: text {tabbed[0]}), "
                  "sent whole as one text; for sentence pairs give --pairs, to score a "
                  "labelled file use bert-pipeline score", file=sys.stderr)
    rows = _column_rows(texts) if args.columns else None
    token = None
    if args.token_file:  # the server's format; a file of several tokens: the first one
        from serving.auth import read_token_file
        token = next(iter(read_token_file(args.token_file, "--token_file")))
    target = Target(args.model, args.version, args.label)
    try:
        client = connect(args.server, target, timeout=args.timeout, token=token,
                         ca_file=args.ca_file, client_cert=args.client_cert,
                         client_key=args.client_key)
    except ValueError as error:  # the client library's arguments are flags here
        raise ValueError(_client_flags(str(error))) from None
    with client:
        def send(batch):  # row numbers of one request
            if rows is not None:
                return client.predict_columns([rows[i] for i in batch])
            return client.predict_texts([texts[i] for i in batch],
                                        None if pairs is None else [pairs[i] for i in batch])
        try:
            sizes = ([text_bytes(row.values()) for row in rows] if rows is not None else
                     [text_bytes([t] if pairs is None else [t, pairs[i]])
                      for i, t in enumerate(texts)])
            predictions = map_by_length(send, range(len(texts)), sizes, args.batch_size)
        except ServingClientError as error:
            hint = ("; lower --batch_size to the server's max_batch_size"
                    if "larger than maximum input batch size" in str(error) else "")
            print(f"error: {error}{hint}", file=sys.stderr)
            return 1
    for p in predictions:
        line = {"text": p.text, "label": p.label, "probabilities": p.probabilities}
        if p.text_pair is not None:
            line = {"text": p.text, "text_pair": p.text_pair, **line}
        if p.columns is not None:
            line = {"columns": p.columns, **{k: v for k, v in line.items() if k != "text"}}
        if p.id:  # the server records predictions: correct one with POST /v1/feedback
            line["id"] = p.id
        print(json.dumps(line, ensure_ascii=False))
    return 0


def _cmd_labels(args) -> int:
    from serving.labels import command
    print(command(args.config, args.action, args.items, args.model, args.base_path,
                  args.allow_unavailable))
    return 0


def _config_command(sub, name: str, func, help_text: str, description: str):
    """A subcommand that takes every configuration option (and adds its own)."""
    parser = sub.add_parser(name, help=help_text, description=description, allow_abbrev=False)
    _add_config_options(parser)
    parser.set_defaults(func=func)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bert-pipeline", allow_abbrev=False,
        description="Fine-tune a BERT text classifier with TFX and push it to TF Serving.")
    parser.add_argument("--verbose", action="store_true", help="Show component logs.")
    sub = parser.add_subparsers(dest="command", required=True)
    _config_command(
        sub, "run", _cmd_run, "Run the whole pipeline locally (LocalDagRunner).",
        "Ingest, validate, transform, train, evaluate and (if blessed) push. "
        "Exit code: 0 pushed, 1 failed, 2 not blessed (nothing pushed).")

    schema = _config_command(
        sub, "schema", _cmd_schema, "Infer a curated schema from data.",
        "Reads the data as the pipeline would, infers a schema with TFDV, requires text "
        "and label in every row, fixes the label domain to the labels seen and writes the "
        "drift limits data.max_label_l_infinity and data.max_length_js_divergence as drift "
        "comparators (a schema's comparators win over those settings at run time). Review "
        "it, then set data.schema_path to it.")
    schema.add_argument("--out", required=True, help="Where to write the schema (pbtxt).")

    score = sub.add_parser(
        "score", allow_abbrev=False, help="Accuracy of an exported model on a labelled file.",
        description="Scores a CSV/TSV/JSONL file with a SavedModel folder or a TF Serving "
                    "model folder (its highest version).")
    score.add_argument("--model", default="serving_model/bert_classifier",
                       help="SavedModel or versioned model folder (default: %(default)s).")
    score.add_argument("--data", required=True, help="Labelled file to score.")
    _add_reader_options(score)
    score.add_argument("--batch_size", type=int, default=64,
                       help="Rows per model call; rows run in batches of similar length "
                            "(default: %(default)s).")
    score.add_argument("--predictions", default="",
                       help="Also write each row's text, labels, predicted labels and "
                            "probabilities (by label) here, one JSON line per row in file "
                            "order.")
    score.add_argument("--allow_unknown_labels", action="store_true",
                       help="Score a file with labels the model does not have (counted as "
                            "missed) instead of refusing it.")
    score.set_defaults(func=_cmd_score)

    schedule = _config_command(
        sub, "schedule", _cmd_schedule,
        "Retrain locally on a cron schedule and when a new span lands.",
        "Runs the pipeline at schedule.cron times and whenever a span newer than any in "
        "the run history appears under data.input_dir (with data.span_pattern); one run "
        "at a time (a lock); every run goes into the history (`bert-pipeline history`).")
    schedule.add_argument("--once", action="store_true",
                          help="One tick: run if due, then exit (for cron or systemd).")

    hist = _config_command(
        sub, "history", _cmd_history,
        "Past runs: metrics over time, blessed or not, pushed version.",
        "Reads the run history (schedule.history_file, by default "
        "<output.root>/history.jsonl).")
    hist.add_argument("--last", type=int, default=20, help="How many runs (default: 20).")
    hist.add_argument("--json", action="store_true", help="JSON lines instead of a table.")

    report = _config_command(
        sub, "report", _cmd_report, "A run's HTML report: its path, or serve them all.",
        "Prints the path of the newest run's report (or --run's), a self-contained HTML "
        "page under <output.root>/reports/. --serve serves the reports folder on "
        "127.0.0.1 (for an SSH tunnel from another machine) until interrupted.")
    report.add_argument("--run", metavar="ID", help="Run id (as `history --json` shows it; "
                                                    "default: the newest run).")
    report.add_argument("--serve", action="store_true",
                        help="Serve the reports folder over HTTP on 127.0.0.1.")
    report.add_argument("--port", type=int, default=8008,
                        help="Port for --serve (0: any free port) (default: %(default)s).")

    kubeflow = _config_command(
        sub, "kubeflow", _cmd_kubeflow,
        "Compile for Kubeflow Pipelines v2 / Vertex AI, submit, schedule.",
        "compile: the same pipeline as a KFP v2 PipelineSpec (YAML), every step in "
        "kubeflow.image (images pinned by digest unless kubeflow.allow_unpinned_images). "
        "submit: one run on kubeflow.host as kubeflow.service_account. schedule: a "
        "recurring run on kubeflow.cron (max concurrency 1, no catch-up).")
    kubeflow.add_argument("action", choices=["compile", "submit", "schedule"])
    kubeflow.add_argument("--spec", default="kubeflow/pipeline.yaml",
                          help="Pipeline spec file to write or send (default: %(default)s).")
    kubeflow.add_argument("--run_name", help="Run or recurring-run name (default: the "
                                         "pipeline name).")
    kubeflow.add_argument("--token_file", help="File with a bearer token for the KFP API.")

    vertex = _config_command(
        sub, "vertex", _cmd_vertex, "Run the compiled spec on Vertex AI Pipelines: submit, "
                                    "schedule.",
        "Sends the spec `kubeflow compile` wrote with vertex.project set (its Trainer a "
        "Vertex AI CustomJob; its images pinned by digest unless "
        "kubeflow.allow_unpinned_images; its pipeline root gs://) to Vertex AI in "
        "vertex.project and vertex.region, as vertex.service_account, with Google's "
        "default credentials. submit: one PipelineJob. schedule: a PipelineJobSchedule on "
        "kubeflow.cron (one run at a time, no catch-up).")
    vertex.add_argument("action", choices=["submit", "schedule"])
    vertex.add_argument("--spec", default="kubeflow/pipeline.yaml",
                        help="Compiled pipeline spec to send (default: %(default)s).")
    vertex.add_argument("--run_name", help="PipelineJob or schedule display name (default: "
                                           "the pipeline name).")

    sub.add_parser(
        "serve", add_help=False, allow_abbrev=False,
        help="Local model server with TF Serving's gRPC and REST APIs and flags "
             "(`bert-pipeline serve --help`).")

    predict = sub.add_parser(
        "predict", allow_abbrev=False, help="Classify texts with a served model (gRPC or REST).",
        description="Sends texts to TF Serving or the local server (the model's classify "
                    "signature) and prints one JSON line per text: label and probabilities.")
    predict.add_argument("text", nargs="*", help="Texts to classify.")
    predict.add_argument("--input", help="File with one text per line ('-': stdin).")
    predict.add_argument("--pairs", action="store_true",
                         help="Sentence pairs: every text (argument or line) is "
                              "'first<TAB>second'.")
    predict.add_argument("--columns", action="store_true",
                         help="Every text (argument or line) is a JSON object with the "
                              "model's text columns, e.g. '{\"subject\": \"...\", "
                              "\"body\": \"...\"}' (models trained on several columns; "
                              "they join them as training did).")
    predict.add_argument("--server", default="grpc://127.0.0.1:8500",
                         help="grpc://host:port, grpcs://host:port (TLS), http://host:port "
                              "or https://host:port (default: %(default)s).")
    predict.add_argument("--model", default="bert_classifier",
                         help="Model name (default: %(default)s).")
    choice = predict.add_mutually_exclusive_group()
    choice.add_argument("--version", type=int, help="Model version (default: latest).")
    choice.add_argument("--label", help="Version label, e.g. stable or canary.")
    predict.add_argument("--batch_size", type=int, default=32,
                         help="Texts per request: they are sent in requests of similar "
                              "length (each padded less) and printed in input order; at "
                              "most the server's max_batch_size when it batches, as TF "
                              "Serving refuses more (default: %(default)s, the shipped "
                              "batching_parameters.txt's).")
    predict.add_argument("--timeout", type=float, default=10.0,
                         help="Seconds per call, retries included (default: %(default)s).")
    predict.add_argument("--token_file", help="File with the server's bearer token, in the "
                                              "server's format ('TOKEN [CALLER]' lines: the "
                                              "first is sent; in clear text only to loopback).")
    predict.add_argument("--ca_file", help="PEM CA certificate(s) to check the server's "
                                           "certificate with (turns TLS on; default with "
                                           "grpcs:// or https://: the system's CAs).")
    predict.add_argument("--client_cert", help="PEM client certificate for mutual TLS "
                                               "(with --client_key).")
    predict.add_argument("--client_key", help="PEM private key of --client_cert.")
    predict.set_defaults(func=_cmd_predict)

    labels = sub.add_parser(
        "labels", allow_abbrev=False, help="Set, move, remove or show version labels in a TF Serving config.",
        description="Edits version labels (stable, canary, ...) of a model_config_list file "
                    "in place, atomically. A label may only name a version that TF Serving "
                    "will have loaded (a SavedModel folder its version policy serves).")
    labels.add_argument("action", choices=["set", "unset", "show"])
    labels.add_argument("items", nargs="*", metavar="NAME[=VERSION]",
                        help="set: NAME=VERSION ...; unset: NAME ...")
    labels.add_argument("--config", required=True, help="model_config_list file to edit.")
    labels.add_argument("--model", help="Model name (default: the config's only model).")
    labels.add_argument("--base_path", help="The model's versions folder as seen from here "
                                            "(default: the config's base_path).")
    labels.add_argument("--allow_unavailable", action="store_true",
                        help="Set labels without checking that their versions exist.")
    labels.set_defaults(func=_cmd_labels)
    return parser


def _options(parser: argparse.ArgumentParser) -> list:
    """Every --option of ``parser`` and of its subcommands' parsers."""
    found = [o for action in parser._actions for o in action.option_strings
             if o.startswith("--")]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += _options(sub)
    return found


def parse_args(parser: argparse.ArgumentParser, argv: list) -> argparse.Namespace:
    """``parse_args`` without abbreviations (every parser has allow_abbrev=False): an
    unknown option is refused with the closest known ones ("did you mean")."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        command = getattr(args, "command", None)
        subparsers = [a for a in parser._actions
                      if isinstance(a, argparse._SubParsersAction)]
        target = subparsers[0].choices[command] if command and subparsers else parser
        known = _options(target)
        hints = []
        for option in (u.split("=", 1)[0] for u in unknown if u.startswith("--")):
            close = config_lib.closest_name(option, known)
            if close:
                hints.append(f"{option}: did you mean {close}?")
        target.error(f"unrecognized arguments: {' '.join(unknown)}" +
                     "".join(f"\n  {hint}" for hint in hints))
    return args


def _not_input_data_error(record: logging.LogRecord) -> bool:
    """Beam logs a bad-data error with its traceback before re-raising it; the run summary
    already says it in full (file, line, setting), so the traceback shows only with
    --verbose."""
    from components.text_example_gen.parsing import InputDataError
    error = record.exc_info[1] if record.exc_info else None
    return not isinstance(error, InputDataError)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["serve"]:  # TF Serving's own flags, parsed by the server
        from serving.server import main as serve
        return serve(argv[1:])
    args = parse_args(build_parser(), argv)
    # TFX's Beam executors parse sys.argv as absl flags; ours are not theirs.
    sys.argv = sys.argv[:1]
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:  # library chatter hides the summary; --verbose shows it all
        import warnings
        from absl import logging as absl_logging
        absl_logging.set_verbosity(absl_logging.ERROR)
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        for category in (FutureWarning, DeprecationWarning, UserWarning):
            warnings.filterwarnings("ignore", category=category)
        logging.getLogger("apache_beam.runners.common").addFilter(_not_input_data_error)
    try:
        return args.func(args)
    except BrokenPipeError:  # `... | head`: the reader is gone, which is no error to print
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no flush error
        return 1
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


def entry() -> None:
    """The ``bert-pipeline`` command: ``main``, then an exit that survives tensorflow-io's
    S3 file system (see serving/filesystems.py)."""
    from serving import filesystems
    filesystems.exit_process(main())


if __name__ == "__main__":
    entry()
