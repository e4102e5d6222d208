"""The pipeline (pipeline/pipeline.py): ``create_pipeline`` takes resolved values as given
and passes the text columns, separator and drift limits to its components (no pipeline
run here)."""
import json

import pytest

from local.local_runner import local_pipeline
from models.hparams import Task
from pipeline.config import PipelineConfig, load_config
from pipeline.pipeline import create_pipeline, task
from tests.support.pipelines import _by_id, _everything


def test_the_pipeline_passes_the_columns_and_separator_to_the_trainer():
    config = PipelineConfig()
    config.data.text_column, config.data.text_separator = "1, 2", ". "
    config.data.column_names = ["class", "title", "description"]
    assert task(config) == Task(text_columns=("title", "description"),
                                text_separator=". ")
    config.data.column_names = []
    assert task(config).text_columns == ("1", "2")  # positions in a header: kept as given
    config.data.text_column = "a b,a_b"
    with pytest.raises(ValueError, match="would both be served"):
        task(config)


NOWHERE = "/nowhere"  # platform settings create_pipeline must not read


def test_create_pipeline_uses_the_resolved_values_it_is_given():
    config = load_config(None, {
        "data.input_dir": f"{NOWHERE}/data", "data.schema_path": "schema/schema.pbtxt",
        "output.root": f"{NOWHERE}/out", "output.serving_dir": f"{NOWHERE}/serving",
        "beam_args": f"--temp_location={NOWHERE}", "kubeflow.project_dir": NOWHERE,
        "kubeflow.pipeline_root": f"gs:/{NOWHERE}", "kubeflow.beam_args": "--runner=flink",
        "kubeflow.trainer_accelerator": "TPU_V3"})
    pipeline = create_pipeline(
        config, pipeline_name="given-name", pipeline_root="gs://given/root",
        data_root="gs://given/data", schema_file="",
        serving_model_dir="gs://given/serving/clf",
        beam_pipeline_args=["--direct_num_workers=2"])
    components = _by_id(pipeline)
    assert pipeline.pipeline_info.pipeline_name == "given-name"
    assert pipeline.pipeline_info.pipeline_root == "gs://given/root"
    assert pipeline.beam_pipeline_args == ["--direct_num_workers=2"]
    assert components["TextExampleGen"].exec_properties["input_base"] == "gs://given/data"
    assert "SchemaGen" in components and "ImportSchemaGen" not in components  # "" infers
    pushed = components["Pusher"].exec_properties["push_destination"]
    assert "gs://given/serving/clf" in str(pushed)
    assert "ServingCheck" in components and "InfraValidator" not in components
    assert components["Trainer"].platform_config is None
    assert json.loads(components["Trainer"].exec_properties["custom_config"])["pipeline"] == \
        "given-name"  # in model_info.json: the Evaluator drops another pipeline's baseline
    assert type(components["Evaluator"]).__name__ == "BaselineEvaluator"
    assert NOWHERE not in _everything(pipeline)


def test_the_pipeline_passes_the_configured_drift_limits():
    config = load_config(None, {"data.span_pattern": "span-{SPAN}",
                                "data.max_label_l_infinity": "0.1",
                                "data.max_length_js_divergence": "0.2"})
    drift = _by_id(local_pipeline(config)).get("DriftCheck").exec_properties
    assert (drift["max_label_l_infinity"], drift["max_length_js_divergence"],
            drift["max_unknown_share_increase"]) == (0.1, 0.2, 0.02)
