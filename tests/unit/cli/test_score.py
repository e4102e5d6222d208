"""`bert-pipeline score` (cli/score.py): it refuses data joined otherwise than the model
joins its columns."""
import json

import pytest
import tensorflow as tf

from components.text_example_gen.parsing import ReaderConfig
from models import export
from models.hparams import Task
from tests.support.joined_columns import ROWS, JoinedLength, _csv


def test_score_refuses_a_join_other_than_the_models(tmp_path):
    """``score`` joins the file's columns itself (the reader): other columns or another
    separator than the model's would score texts the model never sees in serving."""
    from cli.score import score_file
    module = JoinedLength()
    version = tmp_path / "columns" / "1"
    tf.saved_model.save(module, str(version), signatures={
        "predict_text": module.predict_text.get_concrete_function()})
    (version / "assets.extra").mkdir()
    (version / "assets.extra" / "model_info.json").write_text(json.dumps({
        "input": export.input_contract(Task(text_columns=("subject", "body"),
                                            text_separator=". "), None)}))
    (tmp_path / "t.csv").write_bytes(_csv([(s, b) for s, b in ROWS if s.strip() and b]))
    for reader in (ReaderConfig("body", text_separator=". "), ReaderConfig("subject,body"),
                   ReaderConfig("body,subject", text_separator=". ")):
        with pytest.raises(ValueError, match=r"trained on the text columns subject,body "
                                             r"joined with '\. ': score with --text_column "
                                             r"subject,body --text_separator '\. '"):
            score_file(str(tmp_path / "columns"), str(tmp_path / "t.csv"), reader)
