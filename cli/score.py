"""Scoring a labelled file with an exported model (``bert-pipeline score``)."""
from __future__ import annotations

import collections
import dataclasses
import os
import time

from components.text_example_gen.parsing import ReaderConfig, read_file
from serving import contract


@dataclasses.dataclass
class Score:
    examples: int
    accuracy: float
    per_label: dict  # label -> (correct, total)
    seconds: float


def latest_version(model_dir: str) -> str:
    """``model_dir`` itself if it is a SavedModel, else its highest numeric version."""
    if os.path.exists(os.path.join(model_dir, "saved_model.pb")):
        return model_dir
    versions = [v for v in os.listdir(model_dir) if v.isdigit()]
    if not versions:
        raise ValueError(f"{model_dir} holds no SavedModel and no numbered versions")
    return os.path.join(model_dir, max(versions, key=int))


def score_file(model_dir: str, data_file: str, reader: ReaderConfig,
               batch_size: int = 64) -> Score:
    import tensorflow as tf
    import tensorflow_text  # noqa: F401 - registers the tokenizer ops

    records = read_file(data_file, reader)
    model = tf.saved_model.load(latest_version(model_dir))
    predict = model.signatures[contract.TEXT_SIGNATURE]
    started = time.time()
    per_label: dict = collections.defaultdict(lambda: [0, 0])
    for i in range(0, len(records), batch_size):
        batch = records[i:i + batch_size]
        texts = tf.constant([r.text for r in batch])
        labels = predict(**{contract.TEXT_INPUT: texts})[contract.LABEL_NAME].numpy()
        for record, predicted in zip(batch, labels):
            per_label[record.label][1] += 1
            per_label[record.label][0] += int(predicted.decode() == record.label)
    correct = sum(c for c, _ in per_label.values())
    return Score(len(records), correct / len(records),
                 {k: tuple(v) for k, v in sorted(per_label.items())}, time.time() - started)
