"""Scoring a labelled file with an exported model (``bert-pipeline score``)."""
from __future__ import annotations

import collections
import dataclasses
import json
import os
import time

from components.text_example_gen.parsing import ReaderConfig, column_refs, read_file
from serving import contract
from serving.lengths import map_by_length, text_bytes


@dataclasses.dataclass
class Score:
    examples: int
    accuracy: float  # multi-label models: share of texts whose label set is exactly right
    per_label: dict  # label -> (correct, total): texts of the label predicted with it
    seconds: float
    predicted: dict = dataclasses.field(default_factory=dict)  # label -> times predicted
    # per record, in file order: text (text_pair), labels, predicted, probabilities
    rows: list = dataclasses.field(default_factory=list)

    def f1(self, label: str) -> float:
        """F1 of one label (precision over predictions, recall over its texts)."""
        correct, total = self.per_label.get(label, (0, 0))
        predicted = self.predicted.get(label, 0)
        return 2 * correct / (total + predicted) if total + predicted else 0.0


def latest_version(model_dir: str) -> str:
    """``model_dir`` itself if it is a SavedModel, else its highest numeric version."""
    if os.path.exists(os.path.join(model_dir, "saved_model.pb")):
        return model_dir
    versions = [v for v in os.listdir(model_dir) if v.isdigit()]
    if not versions:
        raise ValueError(f"{model_dir} holds no SavedModel and no numbered versions")
    return os.path.join(model_dir, max(versions, key=int))


def model_labels(version_dir: str):
    """The model's label names in its probabilities' order (assets.extra/labels.txt), or
    None for a SavedModel without them."""
    import tensorflow as tf
    from models.export import read_label_names
    path = os.path.join(version_dir, contract.ASSETS_EXTRA, contract.LABELS_FILE)
    return read_label_names(path) if tf.io.gfile.exists(path) else None


def score_file(model_dir: str, data_file: str, reader: ReaderConfig,
               batch_size: int = 64, allow_unknown_labels: bool = False,
               redact_rows: bool = True) -> Score:
    """Accuracy of the model on a labelled file (sentence pairs with
    ``reader.text_pair_column``; several labels per text with ``reader.label_delimiter``).
    Records run in batches of ``batch_size`` of similar length; ``Score.rows`` keeps
    the file's order, each row's probabilities by label name, its texts as the model's
    ``redact_text`` redacts them (unless not ``redact_rows``). A label the model does not
    have (a file of another task, 'positive' for '1') is refused unless
    ``allow_unknown_labels``."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401 - registers the tokenizer ops

    from models.export import redact_texts

    records = read_file(data_file, reader)
    version_dir = latest_version(model_dir)
    labels_of_model = model_labels(version_dir)
    unknown = sorted({label for r in records for label in r.labels}
                     - set(labels_of_model or ())) if labels_of_model else []
    if unknown and not allow_unknown_labels:
        raise ValueError(f"{data_file} has labels the model does not have: "
                         f"{', '.join(unknown[:10])}{', ...' if len(unknown) > 10 else ''} "
                         f"(its labels: {', '.join(labels_of_model)}); score a file of the "
                         f"model's task, or pass --allow_unknown_labels to count them as "
                         f"missed")
    model = tf.saved_model.load(version_dir)
    predict = model.signatures[contract.TEXT_SIGNATURE]
    by_columns = contract.TEXT_INPUT not in predict.structured_input_signature[1]
    if by_columns:  # trained on several text columns: score the reader's joined texts
        with tf.io.gfile.GFile(os.path.join(version_dir, contract.ASSETS_EXTRA,
                                            contract.MODEL_INFO_FILE)) as f:
            trained = json.load(f)[contract.INPUT_CONTRACT]
        _check_columns(reader, trained, model_dir)
        takes_pairs = bool(trained["text_pair_columns"])
        predict = model.signatures[contract.EXAMPLES_SIGNATURE]  # as TFMA does
    else:
        takes_pairs = contract.TEXT_PAIR_INPUT in predict.structured_input_signature[1]
    if takes_pairs != reader.text_pair:
        raise ValueError(f"the model at {model_dir} takes "
                         f"{'sentence pairs' if takes_pairs else 'single texts'}: "
                         f"{'set' if takes_pairs else 'drop'} the text pair column")
    multi_label = contract.LABEL_SET in predict.structured_outputs

    def run(batch):
        """(predicted labels, probabilities) per record of one batch."""
        if by_columns:
            outputs = predict(examples=tf.constant([_example(r, takes_pairs) for r in batch]))
        else:
            inputs = {contract.TEXT_INPUT: tf.constant([r.text for r in batch])}
            if takes_pairs:
                inputs[contract.TEXT_PAIR_INPUT] = tf.constant([r.text_pair for r in batch])
            outputs = predict(**inputs)
        if multi_label:
            predicted = [[v.decode() for v in row if v]
                         for row in outputs[contract.LABEL_SET].numpy()]
        else:
            predicted = [[v.decode()] for v in outputs[contract.LABEL_NAME].numpy()]
        probabilities = outputs[contract.PROBABILITIES].numpy()
        if labels_of_model and probabilities.shape[1] != len(labels_of_model):
            raise ValueError(f"{version_dir}: labels.txt names {len(labels_of_model)} "
                             f"labels, the model answers {probabilities.shape[1]} "
                             f"probabilities")
        return list(zip(predicted, probabilities.tolist()))

    started = time.time()
    # batches of similar length, each padded less; the answers come back in file order
    answers = map_by_length(run, records, [text_bytes([r.text, r.text_pair or ""])
                                           for r in records], batch_size)
    per_label: dict = collections.defaultdict(lambda: [0, 0])
    predicted_counts: dict = collections.Counter()
    exact = 0
    for record, (labels, _) in zip(records, answers):
        exact += set(labels) == set(record.labels)
        predicted_counts.update(labels)
        for label in record.labels:
            per_label[label][1] += 1
            per_label[label][0] += label in labels
    def named(probabilities: list):
        return dict(zip(labels_of_model, probabilities)) if labels_of_model else probabilities

    seconds = time.time() - started
    texts = [r.text for r in records] + ([r.text_pair for r in records] if takes_pairs else [])
    redacted = redact_texts(model, texts, batch_size) if redact_rows else None
    if redacted is not None:
        texts = [value.decode("utf-8", errors="replace") for value in redacted]
    rows = [{"text": texts[i], **({"text_pair": texts[len(records) + i]} if takes_pairs else {}),
             "labels": list(r.labels), "predicted": labels,
             "probabilities": named(probabilities)}
            for i, (r, (labels, probabilities)) in enumerate(zip(records, answers))]
    return Score(len(records), exact / len(records),
                 {k: tuple(v) for k, v in sorted(per_label.items())}, seconds,
                 dict(predicted_counts), rows)


def _check_columns(reader: ReaderConfig, trained: dict, model_dir: str) -> None:
    """Refuses a join other than the model's: the same number of text (and pair) columns,
    the same names where given by name, the same separator."""
    def same(setting: str, columns: list) -> bool:
        refs = column_refs(setting)
        return len(refs) == len(columns) and all(
            ref == column or ref.isdigit() for ref, column in zip(refs, columns))

    text, pair = trained["text_columns"], trained["text_pair_columns"]
    if not (same(reader.text_column, text) and same(reader.text_pair_column, pair)
            and reader.text_separator == trained["text_separator"]):
        raise ValueError(
            f"the model at {model_dir} was trained on the text columns {','.join(text)}"
            + (f" and the pair columns {','.join(pair)}" if pair else "")
            + f" joined with {trained['text_separator']!r}: score with --text_column "
            f"{','.join(text)}" + (f" --text_pair_column {','.join(pair)}" if pair else "")
            + f" --text_separator {trained['text_separator']!r} (or their positions)")


def _example(record, with_pair: bool) -> bytes:
    """A serialized tf.Example of the record's ``text`` (and ``text_pair``)."""
    from tensorflow.core.example import example_pb2

    example = example_pb2.Example()
    texts = {contract.TEXT_FEATURE: record.text}
    if with_pair:
        texts[contract.TEXT_PAIR_FEATURE] = record.text_pair
    for name, value in texts.items():
        example.features.feature[name].bytes_list.value.append(value.encode("utf-8"))
    return example.SerializeToString()
