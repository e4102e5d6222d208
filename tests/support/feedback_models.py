"""A model that records redacted texts, feedback rows written as the server writes them,
and the data settings a feedback span is exported for."""
import json
import os
import stat

import tensorflow as tf

from models.export import set_method_name
from models.redaction import Redactor
from pipeline.config import DataConfig
from tests.support.serving_models import CLASSIFY, TextLength


class RedactingTextLength(TextLength):
    """TextLength with the ``redact_text`` signature this project's models export."""

    def __init__(self):
        super().__init__()
        self.redactor = Redactor("all")

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def redact_text(self, text):
        return {"text": self.redactor(text)[0]}


def export_redacting(base_path, module: RedactingTextLength = None) -> None:
    module, path = module or RedactingTextLength(), os.path.join(base_path, "1")
    tf.saved_model.save(module, path, signatures={
        "classify": module.classify.get_concrete_function(),
        "redact_text": module.redact_text.get_concrete_function()})
    set_method_name(path, "classify", CLASSIFY)


DAY = 86400.0


def _write_rows(folder, name, rows):
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / name, "w", encoding="utf-8") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))
    os.chmod(folder / name, 0o644)  # as an older server left it


def _prediction(i, when):
    return {"id": f"id{i}", "time": when, "model": "clf", "version": 1,
            "text": f"text {i}", "label": "short", "score": 0.9}


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def feedback_data(input_dir, span_pattern: str = "span-{SPAN}", **reader) -> DataConfig:
    """The data settings a feedback span is exported for: ``input_dir``'s spans, read with
    ``reader`` (``DataConfig``'s reader settings)."""
    return DataConfig(input_dir=str(input_dir), span_pattern=span_pattern, **reader)
