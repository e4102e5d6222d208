"""TextExampleGen's executor (components/text_example_gen/executor.py): how it finds its
input files, and the reader settings it carries in its custom config."""
import json
import os
import threading

import apache_beam as beam
import pytest
from google.protobuf import json_format

from components.text_example_gen import executor
from components.text_example_gen.parsing import InputDataError, ReaderConfig
from serving.contract import TEXT_FEATURE


def test_hidden_files_are_skipped_unless_the_pattern_names_them(tmp_path):
    (tmp_path / "a.csv").write_text("sentence,label\nx,1\n")
    (tmp_path / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (tmp_path / ".~lock.a.csv#").write_text("x")
    (tmp_path / "sub").mkdir()
    assert executor.input_files(str(tmp_path), "*") == [str(tmp_path / "a.csv")]
    assert executor.input_files(str(tmp_path), ".DS*") == [str(tmp_path / ".DS_Store")]
    # the transform the executor builds checks every file's format before Beam starts
    read = executor.Executor().GetInputSourceToExamplePTransform()
    properties = {"input_base": str(tmp_path), "custom_config": json_format.MessageToJson(
        executor.reader_config_to_proto(ReaderConfig("sentence", "label")))}
    assert isinstance(beam.Pipeline() | read(properties, "*"), beam.PCollection)


def test_folders_of_files_the_pattern_skips_are_named(tmp_path, caplog):
    """Files in a subfolder are not read: a warning names the folder (it was silent)."""
    (tmp_path / "a.csv").write_text("sentence,label\nx,1\n")
    (tmp_path / "2024").mkdir()
    (tmp_path / "2024" / "b.csv").write_text("sentence,label\ny,0\n")
    (tmp_path / "empty").mkdir()
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_text("ref")
    with caplog.at_level("WARNING"):
        assert executor.input_files(str(tmp_path), "*") == [str(tmp_path / "a.csv")]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and warnings[0].startswith(f"1 folder(s) match {tmp_path}/* "
                                                         f"and hold files, which are NOT read")
    assert warnings[0].endswith(f": {tmp_path / '2024'}; to read them, set "
                                f"data.file_pattern to a glob of their files (e.g. '*/*.csv')")


def test_the_custom_config_carries_the_reader_settings_as_to_json_writes_them():
    """TextExampleGen takes the reader settings in the format DriftCheck takes them:
    ``ReaderConfig.to_json()``, beside the split method, window and privacy settings."""
    reader = ReaderConfig("q", "l", text_pair_column="a", label_delimiter="|")
    properties = {"custom_config": json_format.MessageToJson(executor.reader_config_to_proto(
        reader, privacy={"redact": "all", "custom_patterns": []}, split_method="stratified"))}
    assert executor._custom_config(properties)[executor.READER_KEY] == reader.to_json()
    assert executor.reader_config_from_exec_properties(properties) == reader


def test_no_input_files_names_the_setting_to_change(tmp_path):
    missing = str(tmp_path / "nonexistent_dir")
    with pytest.raises(InputDataError, match=f"^input folder {missing} does not exist; set "
                                             f"data.input_dir to the folder that holds the "
                                             f"data files$"):
        executor.input_files(missing, "*")
    (tmp_path / ".DS_Store").write_text("x")
    with pytest.raises(InputDataError, match=r"no input files match .*\*.csv \(hidden files "
                                             r"are skipped\); set data.file_pattern to a glob"):
        executor.input_files(str(tmp_path), "*.csv")
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "a.tsv").write_text("sentence\tlabel\nx\t1\n")
    read = executor.Executor().GetInputSourceToExamplePTransform()
    properties = {"input_base": str(tmp_path), "input_config": json.dumps({"splits": [
        {"name": "train", "pattern": "train/*"}, {"name": "eval", "pattern": "eval/*"}]})}
    with pytest.raises(InputDataError, match=r"no input files match .*eval/\* .*data.presplit "
                                             r"reads the data files in the train/ and eval/"):
        _ = beam.Pipeline() | read(properties, "eval/*")


def test_the_patterns_an_error_quote_replaces_travel_in_the_custom_config():
    """Their own key; a spec compiled before it has them in the redaction settings only
    (privacy.at_ingestion on), and those are used rather than none."""
    reader = ReaderConfig("sentence", "label")
    tickets = [["ticket", "TCK-[0-9]{6}"]]

    def properties(**kwargs):
        return {"custom_config": json_format.MessageToJson(
            executor.reader_config_to_proto(reader, **kwargs))}
    assert executor.excerpt_patterns_from_exec_properties(properties(
        excerpt_patterns=[("ticket", "TCK-[0-9]{6}")])) == tickets
    assert executor.excerpt_patterns_from_exec_properties(properties(
        privacy={"redact": "all", "custom_patterns": tickets})) == tickets
    assert executor.excerpt_patterns_from_exec_properties(properties()) == []


def test_a_data_file_becomes_examples_as_it_is_read_not_after(tmp_path):
    """The reader took a file whole (Beam's FileSystems.open, then read()), so a worker held
    the file, its text, its rows and its examples at once. Here the file is a named pipe
    whose writer holds back the file's last row until the first example has come: read
    whole, the first example would wait for the end of the file."""
    path = tmp_path / "pipe.csv"
    os.mkfifo(path)
    first_part = "sentence,label\n" + "a text of some length to fill the pipe,1\n" * 60_000
    released, writer_gave_up = threading.Event(), []

    def write():
        try:
            with open(path, "w", encoding="utf-8") as f:
                f.write(first_part)  # 2.4 MB: more than a read chunk and than a pipe holds
                f.flush()
                writer_gave_up.append(not released.wait(timeout=60))
                f.write("the last row,0\n")
        except BrokenPipeError:  # the reader failed and closed its end
            pass

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        examples = executor._read_examples(str(path), ReaderConfig("sentence", "label"), [])
        first = next(iter(examples))
        released.set()
        rest = list(examples)
    finally:
        released.set()
        if writer.is_alive():  # a reader that failed before opening the pipe: the writer
            os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))  # waits in open()
        writer.join(timeout=90)
    assert writer_gave_up == [False]
    text = first.features.feature[TEXT_FEATURE].bytes_list.value[0]
    assert text == b"a text of some length to fill the pipe"
    assert len(rest) == 60_000
    assert rest[-1].features.feature[TEXT_FEATURE].bytes_list.value[0] == b"the last row"
