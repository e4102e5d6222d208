"""Served inputs (models/features.py): one-column models keep text and text_pair, several
columns are served by name."""
import pytest

from models import features
from models.hparams import Task


def test_one_column_models_keep_text_and_text_pair():
    assert features.text_inputs(Task(text_columns=("sentence",))) == {"text": ["text"]}
    pair = Task(text_pair=True, text_columns=("#1 String",), text_pair_columns=("#2 String",))
    assert features.text_inputs(pair) == {"text": ["text"], "text_pair": ["text_pair"]}
    assert features.served_inputs(Task()) == ["text"]


def test_several_columns_are_served_by_name():
    columns = Task(text_columns=("subject", "Body Text", "2"), text_pair=True,
                   text_pair_columns=("answer", "subject"))
    assert features.text_inputs(columns) == {
        "text": ["subject", "Body_Text", "column_2"], "text_pair": ["answer", "subject"]}
    assert features.served_inputs(columns) == ["subject", "Body_Text", "column_2", "answer"]
    # `text`/`text_pair` name a one-column model's inputs (feedback, the client and
    # score tell the kinds apart by them): a column so named is served as column_text.
    titled = Task(text_columns=("title", "text"), text_pair=True,
                  text_pair_columns=("text_pair", "notes"))
    assert features.text_inputs(titled) == {
        "text": ["title", "column_text"], "text_pair": ["column_text_pair", "notes"]}
    with pytest.raises(ValueError, match=r"'a b' and 'a_b' would both be served as the "
                                         r"input 'a_b' \(data.text_column"):
        features.text_inputs(Task(text_columns=("a b", "a_b")))
