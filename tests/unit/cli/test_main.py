"""The CLI's own input handling (commands that read files before calling anything), and
mistakes refused early by the real command in a child process."""
import os
import shutil
import subprocess
import sys
import time

import pytest

from cli.main import _read_text_lines, main
from tests.support.paths import BERT_PIPELINE, REPO, SAMPLE


def test_predict_names_the_file_and_line_that_is_not_utf8(tmp_path, capsys):
    texts = tmp_path / "texts.txt"
    texts.write_bytes("\ufefffine\r\nalso fine\r\n".encode() + b"caf\xe9\n")
    assert main(["predict", "--server", "grpc://127.0.0.1:1", "--input", str(texts)]) == 1
    assert (f"{texts}: line 3: invalid UTF-8 (byte 0xe9 at offset 23); re-encode the file "
            f"as UTF-8") in capsys.readouterr().err


def test_predict_reads_lines_without_bom_or_line_endings(tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_bytes("\ufefffirst\tpair\r\n\r\nsecond\n".encode())
    assert _read_text_lines(str(texts)) == ["first\tpair", "second"]
    # Lone carriage returns (old Mac, some spreadsheet exports): the whole file was one text
    texts.write_bytes(b"good film\rbad film\r\rokay\r")
    assert _read_text_lines(str(texts)) == ["good film", "bad film", "okay"]


def test_predict_refuses_or_warns_about_tabs_before_connecting(tmp_path, capsys):
    """A TSV handed to --input: without --pairs its label was classified as part of the
    text, silently; with --pairs a third column stayed in the second text."""
    closed = ["--server", "grpc://127.0.0.1:1", "--timeout", "1"]
    assert main(["predict", *closed, "--pairs", "a\tb", "c\td\t1"]) == 1
    assert "--pairs: each text must be 'first<TAB>second', not text 2 'c\\td\\t1' " \
           "(3 tab-separated fields)" in capsys.readouterr().err
    assert main(["predict", *closed, "good film\t1", "fine"]) == 1  # the server is down
    assert "warning: 1 text(s) hold a tab (the first: text 1)" in capsys.readouterr().err
    assert main(["predict", "--server", "htps://127.0.0.1:1", "x"]) == 1
    assert "unknown scheme 'htps'; use grpc://, grpcs://, http:// or https://" in \
        capsys.readouterr().err
    # gRPC's own targets still go to gRPC (nothing listens there: UNAVAILABLE)
    assert main(["predict", "--server", f"unix://{tmp_path}/none.sock", "--timeout", "1",
                 "x"]) == 1
    assert "unknown scheme" not in capsys.readouterr().err


def test_predict_names_a_server_that_does_not_answer_tf_servings_json(tmp_path, capsys):
    """A 200 that is not JSON (a proxy's login page) was a KeyError traceback."""
    import http.server
    import threading

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            body = b"<html>Please log in</html>"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_GET

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert main(["predict", "--server", f"http://127.0.0.1:{server.server_port}",
                     "x"]) == 1
    finally:
        server.shutdown()
    err = capsys.readouterr().err
    assert "INVALID_RESPONSE: the answer is not a JSON object (not TF Serving's API?): " \
           "'<html>Please log in</html>'" in err and "Traceback" not in err


def test_predict_names_its_flags_in_client_errors(tmp_path, capsys):
    (tmp_path / "token").write_text("s3cret\n")
    (tmp_path / "client_cert.pem").write_text("not a certificate")
    for args, message in [
        (["--timeout", "0"], "--timeout must be > 0 seconds, got 0.0"),
        (["--server", "grpcs://127.0.0.1:1", "--ca_file", str(tmp_path / "client_cert.pem")],
         f"--ca_file {tmp_path / 'client_cert.pem'}: not a PEM file"),  # the name as it is
        (["--client_cert", str(tmp_path / "client_cert.pem")],
         "--client_cert and --client_key go together"),
        (["--server", "http://10.0.0.1:1", "--token_file", str(tmp_path / "token")],
         "refusing to send the bearer token in clear text to 10.0.0.1"),
    ]:
        assert main(["predict", *args, "x"]) == 1
        err = capsys.readouterr().err
        assert message in err, err
        assert "allow_insecure_token" not in err and "tls=True" not in err


def test_score_names_its_own_flags_in_reader_errors(tmp_path, capsys):
    data = tmp_path / "news.csv"
    data.write_text('3,"Fears for pension after talks","Unions said"\n')
    assert main(["score", "--model", str(tmp_path / "no_model"), "--data", str(data),
                 "--label_column", "class", "--text_column", "title"]) == 1
    err = capsys.readouterr().err
    assert "set --text_column to column names" in err and "with --column_names" in err
    assert "data." not in err


def test_score_reads_with_the_reader_settings_its_flags_give(tmp_path, capsys):
    """score's reader flags are ReaderConfig's fields: its defaults (the text column
    sentence), column names by commas or as a JSON list, as --data.column_names takes them."""
    from cli.main import _reader_from_args, build_parser
    from components.text_example_gen.parsing import ReaderConfig
    parser = build_parser()
    assert _reader_from_args(parser.parse_args(["score", "--data", "d.tsv"])) == ReaderConfig()
    given = parser.parse_args(["score", "--data", "d.tsv", "--quoting", "none",
                               "--column_names", "#1 String, #2 String, Quality",
                               "--text_column", "0", "--text_pair_column", "1",
                               "--label_column", "2"])
    assert _reader_from_args(given) == ReaderConfig(
        "0", "2", column_names=["#1 String", "#2 String", "Quality"], quoting="none",
        text_pair_column="1")
    with pytest.raises(SystemExit):
        parser.parse_args(["score", "--data", "d.tsv", "--quoting", "single"])
    assert "argument --quoting: invalid choice: 'single'" in capsys.readouterr().err
    assert main(["score", "--model", str(tmp_path), "--data", "d.tsv",
                 "--column_names", "[a, b"]) == 1
    assert "--column_names: '[a, b' is not a JSON list" in capsys.readouterr().err


# A refused mistake costs the CLI's own imports (config: TensorFlow for the RE2 checks),
# never TFX's nor a component's; generous for a loaded 2-core CI machine.
REFUSAL_SECONDS = 20


def _cli(args, cwd=REPO, timeout=120):
    """``bert-pipeline ARGS`` in a child process: (exit code, stderr, seconds)."""
    started = time.monotonic()
    done = subprocess.run([BERT_PIPELINE, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)
    return done.returncode, done.stderr, time.monotonic() - started


def _no_component_ran(root) -> bool:
    """Nothing under output.root but the run lock and history (no metadata, artifacts)."""
    return not os.path.exists(root) or set(os.listdir(root)) <= {"run.lock", "history.jsonl"}


@pytest.mark.parametrize("flag,meant", [
    ("--data.text_colum", "--data.text_column"),   # an abbreviation argparse took as is
    ("--data.txt_column", "--data.text_column"),   # a typo
    ("--model.epoch", "--model.epochs"),
])
def test_unknown_or_abbreviated_settings_are_refused_with_did_you_mean(tmp_path, flag, meant):
    root = tmp_path / "out"
    code, err, seconds = _cli(["run", flag, "body", "--output.root", str(root)])
    assert code == 2, err
    assert f"unrecognized arguments: {flag}" in err and f"did you mean {meant}?" in err
    assert _no_component_ran(root) and seconds < REFUSAL_SECONDS


def test_subcommand_options_are_not_abbreviated_either(tmp_path):
    code, err, _ = _cli(["history", "--las", "3", "--output.root", str(tmp_path)])
    assert code == 2 and "did you mean --last?" in err


def _refused(tmp_path, *settings, cwd=REPO):
    root = tmp_path / "out"
    code, err, seconds = _cli(["run", "--output.root", str(root), *settings], cwd=cwd)
    assert code == 1, err
    assert _no_component_ran(root), os.listdir(root)
    assert seconds < REFUSAL_SECONDS, f"refused after {seconds:.1f}s"
    return err


def test_a_missing_checkpoint_folder_is_refused_before_any_component(tmp_path):
    err = _refused(tmp_path, "--model.checkpoint", str(tmp_path / "my_bert"))
    assert f"model.checkpoint: folder {tmp_path / 'my_bert'} does not exist" in err
    assert "Repo id" not in err


def test_a_checkpoint_without_a_vocabulary_is_refused(tmp_path):
    (tmp_path / "half").mkdir()
    err = _refused(tmp_path, "--model.checkpoint", str(tmp_path / "half"))
    assert "model.checkpoint" in err and "vocab.txt" in err


def test_a_max_seq_length_past_the_checkpoints_positions_is_refused(tmp_path):
    """The default checkpoint has 512 positions: 1024 failed the Trainer at the first
    long text, after Transform (on a GPU, gather gives zeros: silently wrong)."""
    err = _refused(tmp_path, "--model.max_seq_length", "1024")
    assert "model.max_seq_length 1024 is more than the 512 positions of" in err
    assert "set model.max_seq_length to 512 or less" in err


def test_a_missing_input_folder_or_an_empty_pattern_is_refused(tmp_path):
    err = _refused(tmp_path, "--data.input_dir", str(tmp_path / "nodata"))
    assert f"data.input_dir: folder {tmp_path / 'nodata'} does not exist" in err
    err = _refused(tmp_path, "--data.file_pattern", "*.csv")
    assert "data.file_pattern: no data files match" in err and "*.csv" in err
    err = _refused(tmp_path, "--data.span_pattern", "span-{SPAN}")
    assert "data.span_pattern: no folder named like span-{SPAN}" in err


def test_a_relative_input_dir_under_a_folder_named_like_a_glob_is_refused(tmp_path):
    """data.input_dir 'data' is fine as written, but it is read as <working dir>/data,
    and TFX globs that: a working directory named 'proj [old]' matched no file, and the
    run blamed data.file_pattern."""
    work = tmp_path / "proj [old]"
    shutil.copytree(os.path.dirname(SAMPLE), work / "data")
    err = _refused(tmp_path, "--data.input_dir", "data", "--data.schema_path", "", cwd=work)
    assert (f"data.input_dir '{work / 'data'}' holds [, which TFX's ExampleGen reads as a "
            f"glob character") in err and "is resolved against the working directory" in err
    assert "data.file_pattern" not in err


def test_a_newest_span_without_data_files_is_named_as_such(tmp_path):
    """A span folder with only hidden files (a copy under way, a .DS_Store): the refusal
    named data.file_pattern, which is not what to change."""
    data = tmp_path / "data"
    shutil.copytree(os.path.dirname(SAMPLE), data / "span-1")
    (data / "span-2").mkdir()
    (data / "span-2" / ".DS_Store").write_bytes(b"\0")
    err = _refused(tmp_path, "--data.input_dir", str(data), "--data.span_pattern",
                   "span-{SPAN}", "--data.schema_path", "")
    assert f"the newest span folder {data / 'span-2'} is empty" in err
    assert "data.file_pattern" not in err


def test_span_folders_tfx_would_refuse_or_read_otherwise_are_named(tmp_path):
    """span-2.bak (or a file manager's "span-3 (copy)") passed the checks and TFX's driver
    failed with "Cannot find span number"; span-02 beside span-2 was accepted and one of
    the two never trained on."""
    data = tmp_path / "data"
    for span in ("span-1", "span-2", "span-2.bak"):
        shutil.copytree(os.path.dirname(SAMPLE), data / span)
    args = ("--data.input_dir", str(data), "--data.span_pattern", "span-{SPAN}",
            "--data.schema_path", "")
    err = _refused(tmp_path, *args)
    assert "data.span_pattern: span-2.bak in" in err and "has no span number" in err
    shutil.rmtree(data / "span-2.bak")
    (data / "span-3 (copy)").mkdir()  # no data files: TFX's glob finds nothing in it
    shutil.copytree(os.path.dirname(SAMPLE), data / "span-02")
    err = _refused(tmp_path, *args)
    assert "span-02 and span-2" in err and "are both span 2" in err


def test_files_the_reader_cannot_read_are_named_before_anything_runs(tmp_path):
    """A Spark-style folder (part-00000.csv and a _SUCCESS marker) passed the checks, and
    TextExampleGen failed on _SUCCESS."""
    data = tmp_path / "data"
    shutil.copytree(os.path.dirname(SAMPLE), data)
    (data / "_SUCCESS").write_bytes(b"")
    err = _refused(tmp_path, "--data.input_dir", str(data), "--data.schema_path", "")
    assert f"data.file_pattern: {data / '_SUCCESS'}: cannot tell the format" in err
    # in an older span of the training window too: it is read as well
    spans = tmp_path / "spans"
    shutil.copytree(data, spans / "span-1")
    shutil.copytree(os.path.dirname(SAMPLE), spans / "span-2")
    err = _refused(tmp_path, "--data.input_dir", str(spans), "--data.span_pattern",
                   "span-{SPAN}", "--data.window_spans", "2", "--data.schema_path", "")
    assert f"{spans / 'span-1' / '_SUCCESS'}: cannot tell the format" in err


def test_a_missing_schema_says_how_to_infer_or_write_one(tmp_path):
    """Run from another folder: the default data.schema_path is relative to it."""
    err = _refused(tmp_path, "--data.input_dir", os.path.dirname(SAMPLE), cwd=tmp_path)
    assert f"data.schema_path: {tmp_path / 'schema' / 'schema.pbtxt'} does not exist" in err
    assert '--data.schema_path ""' in err and "bert-pipeline schema" in err


def test_a_busy_root_is_refused_before_tfx_is_imported(tmp_path):
    """The lock comes first: no TFX import (27 s on a laptop) to learn that a run is on."""
    from local import local_runner
    from pipeline.config import load_config
    config = load_config(None, {"output.root": str(tmp_path / "out")})
    probe = ("import sys; from cli.main import main; code = main(sys.argv[1:]); "
             "print('tfx imported' if 'tfx' in sys.modules else 'tfx not imported'); "
             "sys.exit(code)")
    with local_runner.run_lock(config):
        done = subprocess.run([sys.executable, "-c", probe, "run", "--output.root",
                               config.output.root], cwd=REPO, capture_output=True,
                              text=True, timeout=120)
        code, err, seconds = _cli(["run", "--output.root", config.output.root])
    assert done.returncode == 1 and "another run is active" in done.stderr
    assert "tfx not imported" in done.stdout
    assert code == 1 and "another run is active" in err and seconds < REFUSAL_SECONDS


def test_report_serve_refuses_paths_that_resolve_outside_the_reports_folder(tmp_path):
    import re
    import urllib.error
    import urllib.request

    root = tmp_path / "out"
    run_folder = root / "reports" / "run-1"
    run_folder.mkdir(parents=True)
    (run_folder / "index.html").write_text("<p>report</p>")
    outside = tmp_path / "private"
    outside.mkdir()
    (outside / "secret.txt").write_text("not for the web")
    (root / "reports" / "leak.txt").symlink_to(outside / "secret.txt")
    (root / "reports" / "leakdir").symlink_to(outside)
    (run_folder / "inside.html").symlink_to(run_folder / "index.html")  # stays inside: ok
    with subprocess.Popen([BERT_PIPELINE, "report", "--serve", "--port", "0",
                           "--output.root", str(root)], cwd=REPO, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True) as server:
        try:
            url = re.search(r"http://127\.0\.0\.1:\d+/", server.stdout.readline()).group(0)
            for path in ("run-1/index.html", "run-1/inside.html"):
                with urllib.request.urlopen(url + path, timeout=30) as reply:
                    assert reply.status == 200 and reply.read() == b"<p>report</p>"
            for path in ("leak.txt", "leakdir/secret.txt", "leakdir/"):
                with pytest.raises(urllib.error.HTTPError) as refused:
                    urllib.request.urlopen(url + path, timeout=30)
                assert refused.value.code == 404
                assert b"not for the web" not in refused.value.read()
        finally:
            server.terminate()


def test_serve_flags_are_not_abbreviated_either(capsys):
    with pytest.raises(SystemExit) as refused:
        main(["serve", "--model_base_pat", "/models/m", "--model_name", "m"])
    assert refused.value.code == 2
    assert "unrecognized arguments: --model_base_pat" in capsys.readouterr().err


def test_report_is_the_newest_runs_or_says_why_there_is_none(tmp_path, capsys):
    """`report` printed an older run's report when the newest run had none (it failed
    before the report, or was killed), and a path it never checked."""
    from local import history
    from tests.support.schedules import _config, _entry

    config = _config(tmp_path)
    page = tmp_path / "out" / "reports" / "r1" / "index.html"
    page.parent.mkdir(parents=True)
    page.write_text("<html></html>")
    history.append(config.history_path, _entry("2026-11-24T03:00:00", run_id="r1",
                                               report=str(page)))
    root = ["--output.root", config.output.root]
    assert main(["report", *root]) == 0
    assert capsys.readouterr().out.strip() == str(page)
    history.append(config.history_path, _entry("2026-11-25T03:00:00", run_id="r2",
                                               exit_code=1, error="ValueError: bad"))
    assert main(["report", *root]) == 1
    error = capsys.readouterr().err
    assert "the newest run (r2, started 2026-11-25T03:00:00+00:00) has no report" in error
    assert "--run r1" in error  # the newest one that has
    assert main(["report", *root, "--run", "r1"]) == 0
    history.start(config.history_path, time.time(), "manual")  # then killed (kill -9)
    assert main(["report", *root]) == 1  # it printed r1's: finished runs only were read
    assert "was killed or interrupted before its report" in capsys.readouterr().err
    page.unlink()
    assert main(["report", *root, "--run", "r1"]) == 1
    assert f"{page} (run r1's report) does not exist" in capsys.readouterr().err
    assert main(["history", *root, "--last", "0"]) == 1
    assert "--last must be at least 1" in capsys.readouterr().err
    assert main(["history", "--output.root", str(tmp_path / "nowhere")]) == 0
    out = capsys.readouterr().out
    assert f"no runs of pipeline 'bert-text-classifier' recorded in " \
           f"{tmp_path / 'nowhere' / 'history.jsonl'}" in out
    assert "output.root" in out and "schedule.history_file" in out


def test_local_replicas_on_a_machine_with_gpus_are_refused_before_anything_runs(
        monkeypatch):
    """trainer.workers > 1 with GPUs was refused only when the Trainer started, after
    ExampleGen, StatisticsGen and Transform. These machines have no GPU: the device list
    stands in for one with two (the refusal's wording: tests/unit/models)."""
    import tensorflow as tf

    from local import preflight
    from pipeline.config import load_config
    config = load_config(None, {"trainer.workers": 2})
    preflight.check(config)  # no GPU here: local replicas are fine
    monkeypatch.setattr(tf.config, "list_physical_devices",
                        lambda kind=None: ["GPU:0", "GPU:1"] if kind == "GPU" else [])
    with pytest.raises(preflight.SettingsError, match=r"trainer.workers 2 .* all 2 GPU"):
        preflight.check(config)
    preflight.check(load_config(None, {}))  # one process: MirroredStrategy over the GPUs


def test_a_reader_that_went_away_is_no_error(tmp_path):
    """`bert-pipeline ... | head -1`: the closed pipe printed "error: [Errno 32] Broken
    pipe" (and Python's own complaint at exit)."""
    with subprocess.Popen([BERT_PIPELINE, "history", "--output.root", str(tmp_path)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as command:
        command.stdout.close()  # before it writes anything: every write fails (EPIPE)
        err = command.stderr.read().decode()
    assert command.returncode == 1 and "Broken pipe" not in err and "Error" not in err, err


def test_settings_that_failed_after_training_are_refused_before_anything_runs(
        tmp_path, monkeypatch):
    """Each passed the checks and failed minutes in: a TF_CONFIG left in the shell (the
    Trainer joined its cluster: "Collective ops must be configured at program startup"),
    the serving check in bfloat16 on a CPU without it (after training), the output root
    as the input folder (the run read its own history.jsonl and run.lock as data), a
    schema file that is not a schema (ImportSchemaGen's ParseError)."""
    from local import preflight
    from pipeline.config import load_config
    from serving import precision

    data = tmp_path / "data"
    shutil.copytree(os.path.dirname(SAMPLE), data)
    base = {"data.input_dir": str(data), "data.schema_path": "",
            "output.root": str(tmp_path / "out")}
    preflight.check(load_config(None, base))
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["a:1", "b:2"]}}')
    with pytest.raises(preflight.SettingsError, match="TF_CONFIG is set in the environment"):
        preflight.check(load_config(None, base))
    monkeypatch.delenv("TF_CONFIG")
    monkeypatch.setattr(precision, "bfloat16_refusal_here", lambda: "no bfloat16 here")
    with pytest.raises(preflight.SettingsError, match="output.serving_mixed_precision "
                                                      "bfloat16: no bfloat16 here"):
        preflight.check(load_config(None, dict(base, **{
            "output.serving_mixed_precision": "bfloat16"})))
    with pytest.raises(preflight.SettingsError) as refused:
        preflight.check(load_config(None, dict(base, **{"output.root": str(data)})))
    assert str(refused.value).splitlines()[1:] == [
        f"  output.root {data} is where data.input_dir {data} is read: a run would read "
        f"its own files as data; put them apart"]
    preflight.check(load_config(None, dict(base, **{"output.root": str(data / "runs")})))
    (data / "span-1").mkdir()  # read with spans: a span folder is read, others are not
    shutil.copy(SAMPLE, data / "span-1")
    spans = dict(base, **{"data.span_pattern": "span-{SPAN}"})
    with pytest.raises(preflight.SettingsError, match="is where data.input_dir"):
        preflight.check(load_config(None, dict(spans, **{"output.root":
                                                         str(data / "span-1")})))
    preflight.check(load_config(None, dict(spans, **{"output.root": str(data / "runs")})))
    with pytest.raises(preflight.SettingsError,
                       match=f"data.schema_path: {data / 'sst2_sample.tsv'} is not a "
                             f"schema"):
        preflight.check(load_config(None, dict(base, **{
            "data.schema_path": str(data / "sst2_sample.tsv")})))
    with pytest.raises(ValueError, match="data.file_format must be auto, csv, tsv or jsonl, "
                                         "not 'xml'"):
        load_config(None, dict(base, **{"data.file_format": "xml"}))
