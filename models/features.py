"""The served inputs of a task: which inputs a model takes and how they form its features.

Every name (features, signatures, their inputs) lives in ``serving/contract.py``.
"""
import re

from serving.contract import TEXT_FEATURE, TEXT_INPUT, TEXT_PAIR_FEATURE, TEXT_PAIR_INPUT

# Upper bounds (in word pieces, [CLS]/[SEP] included) of the text-length slices.
LENGTH_BUCKET_BOUNDARIES = (16, 32, 64, 128, 256)

def input_name(column: str) -> str:
    """A source column of a several-column model as a served input and tf.Example
    feature name: ASCII letters, digits and "_" (a valid signature key), not starting
    with a digit, and never a one-column model's ``text`` or ``text_pair`` (clients and
    the server tell the two kinds apart by those names): "Body Text" -> "Body_Text", a
    position "2" -> "column_2", "text" -> "column_text"."""
    name = re.sub(r"\W", "_", column, flags=re.ASCII)
    reserved = name in (TEXT_INPUT, TEXT_PAIR_INPUT)
    return name if name and not name[0].isdigit() and not reserved else f"column_{name}"


def text_inputs(task) -> dict:
    """{raw feature: the served inputs joined into it, in order}. A model trained on one
    text column (and one pair column) takes ``text`` (and ``text_pair``); one trained on
    several takes one input per source column (``models.hparams.Task``)."""
    if len(task.text_columns) <= 1 and len(task.text_pair_columns) <= 1:
        return {TEXT_FEATURE: [TEXT_INPUT],
                **({TEXT_PAIR_FEATURE: [TEXT_PAIR_INPUT]} if task.text_pair else {})}
    seen: dict = {}
    for column in (*task.text_columns, *task.text_pair_columns):
        other = seen.setdefault(input_name(column), column)
        if other != column:
            raise ValueError(f"the text columns '{other}' and '{column}' would both be served "
                             f"as the input '{input_name(column)}' (data.text_column, "
                             f"data.text_pair_column): rename one of them")
    inputs = {TEXT_FEATURE: [input_name(c) for c in task.text_columns]}
    if task.text_pair:
        inputs[TEXT_PAIR_FEATURE] = [input_name(c) for c in task.text_pair_columns]
    return inputs


def served_inputs(task) -> list:
    """Every served input of ``predict_text`` (and feature of ``classify``), each once."""
    return list(dict.fromkeys(name for names in text_inputs(task).values() for name in names))
