"""Transform's ``preprocessing_fn`` and the settings it is given (``transform_config``):
only the tokenizer's model settings, the task and the privacy settings reach Transform,
and the graph tokenizes with them. TFX's cache reuse itself: tests/e2e/test_transform_cache.py.
"""
import json

from local.local_runner import local_pipeline
from models import preprocessing
from models.hparams import ModelHParams, Task
from pipeline.config import load_config

SETTINGS = {"data.input_dir": "/nowhere/data", "output.root": "/nowhere/out",
            "enable_cache": True}


def custom_configs(**overrides) -> dict:
    """{component id: its custom_config} of the local pipeline with ``overrides``."""
    pipeline = local_pipeline(load_config(None, dict(SETTINGS, **overrides)))
    return {c.id: json.loads(c.exec_properties["custom_config"]) for c in pipeline.components
            if c.id in ("Transform", "Trainer")}


def test_transform_gets_the_tokenizer_settings_task_and_privacy_the_trainer_everything():
    config = load_config(None, SETTINGS)
    found = custom_configs()
    assert set(found["Transform"]) == {"model", "task", "privacy"}
    assert found["Transform"]["model"] == {
        name: getattr(config.model, name) for name in preprocessing.TOKENIZER_SETTINGS}
    assert found["Trainer"]["model"] == config.model.to_dict()
    for key in ("task", "privacy"):
        assert found["Transform"][key] == found["Trainer"][key]


def test_transform_leaves_statistics_to_statistics_gen():
    (transform,) = [c for c in local_pipeline(load_config(None, SETTINGS)).components
                    if c.id == "Transform"]
    assert transform.exec_properties["disable_statistics"] == 1
    assert "post_transform_stats" not in transform.outputs


def test_only_what_preprocessing_fn_reads_changes_transform_settings():
    base = custom_configs()["Transform"]
    for training in ({"model.epochs": 5}, {"model.learning_rate": 1e-4},
                     {"model.batch_size": 8}, {"model.seed": 1}, {"model.warm_start": True},
                     {"data.max_unknown_share": 0.5}):
        assert custom_configs(**training)["Transform"] == base, training
    for read in ({"model.max_seq_length": 64}, {"model.truncation": "tail"},
                 {"privacy.redact": "none"}, {"data.label_delimiter": "|",
                                              "eval.metric": "micro_f1"}):
        assert custom_configs(**read)["Transform"] != base, read


def test_preprocessing_fn_redacts_tokenizes_and_maps_labels_with_its_settings(tmp_path):
    import tensorflow as tf
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

    from models import redaction

    privacy = {"redact": "all", "custom_patterns": []}
    config = preprocessing.transform_config(ModelHParams(max_seq_length=12), Task(), privacy)
    texts = ["write to jane@example.com , it is a rather long sentence", "short"]
    schema = schema_utils.schema_from_feature_spec(
        {"text": tf.io.FixedLenFeature([], tf.string),
         "label": tf.io.FixedLenFeature([], tf.string)})
    with tft_beam.Context(temp_dir=str(tmp_path)):
        (transformed, _), _ = ([{"text": t, "label": label} for t, label in zip(texts, "ba")],
                               dataset_metadata.DatasetMetadata(schema)) | \
            tft_beam.AnalyzeAndTransformDataset(
                lambda inputs: preprocessing.preprocessing_fn(inputs, config),
                output_record_batches=False)
    tokenizer = preprocessing.make_tokenizer(config["model"])
    redacted = redaction.from_settings(privacy)(tf.constant(texts))[0]
    expected = tokenizer(redacted).to_list()
    assert [list(row["input_ids"]) for row in transformed] == expected
    assert expected != tokenizer(tf.constant(texts)).to_list()  # the address was redacted
    assert len(expected[0]) == 12  # truncated to max_seq_length, [CLS] and [SEP] included
    assert sorted(row["label_id"] for row in transformed) == [0, 1]
    assert [row["text_length_bucket"] for row in transformed] == [b"<=16", b"<=16"]


def test_the_tokenizer_refuses_more_positions_than_the_checkpoint_has(tiny_checkpoint):
    """Where no preflight runs (Kubeflow, Vertex), Transform stops before any row."""
    import pytest
    settings = {"checkpoint": tiny_checkpoint, "max_seq_length": 513, "truncation": "head",
                "head_tokens": 32}
    with pytest.raises(ValueError, match="model.max_seq_length 513 is more than the 512 "
                                         "positions"):
        preprocessing.make_tokenizer(settings)
    assert preprocessing.make_tokenizer(dict(settings, max_seq_length=512))
