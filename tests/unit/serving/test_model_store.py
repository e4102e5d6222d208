"""TF Serving's model config file (serving/model_store.py): errors name the file."""
import pytest

from serving.model_store import read_model_config


def test_model_config_errors_name_the_file(tmp_path):
    bad = tmp_path / "models.config"
    bad.write_text('model_config_list { config { name: "m" base_path: "relative/m" } }')
    with pytest.raises(ValueError, match="models.config: Expected model m to have an absolute"):
        read_model_config(str(bad))
    bad.write_text('model_config_list { config { name: "m" base_path: "/m" } '
                   'config { name: "m" base_path: "/n" } }')
    with pytest.raises(ValueError, match="Illegal to list model m multiple times"):
        read_model_config(str(bad))
    bad.write_text('model_config_list { config { nme: "m" } }')
    with pytest.raises(ValueError, match="models.config"):
        read_model_config(str(bad))
