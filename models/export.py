"""Exporting the trained classifier as a SavedModel for TF Serving and TFMA.

Serving contract (clients and tests rely on these names):
  * ``serving_default``: input ``examples`` (serialized tf.Example with a ``text`` feature)
  * ``predict_text``: input ``text`` (raw strings)
  both returning ``probabilities`` [batch, classes] float32, ``class_id`` [batch]
  int64 and ``label`` [batch] string. Tokenizer and label names are in the graph.
  * ``transform_features`` (for TFMA only): serialized examples with labels ->
    ``label_id`` and ``text_length_bucket``.
"""
from __future__ import annotations

import json
import os
from typing import Mapping, Sequence

import tensorflow as tf

from models import features
from models.preprocessing import dense_column
from models.tokenizer import pad_to_dense

LABELS_FILE = "labels.txt"
MODEL_INFO_FILE = "model_info.json"


def _text_feature(texts: tf.Tensor, spec) -> tf.Tensor:
    """Raw strings shaped like the raw ``text`` feature Transform expects."""
    if isinstance(spec, tf.io.VarLenFeature):
        return tf.sparse.from_dense(tf.reshape(texts, [-1, 1]))
    return tf.reshape(texts, [-1] + list(spec.shape))


def export_serving_model(model, tf_transform_output, label_names: Sequence[str],
                         pad_id: int, output_dir: str, model_info: Mapping) -> None:
    """Saves ``model`` with the tokenizer and label names baked into its signatures."""
    raw_spec = tf_transform_output.raw_feature_spec()
    text_spec = {features.TEXT: raw_spec[features.TEXT]}
    # The Transform graph as a tracked layer, so its tables and assets are saved.
    model.tft_layer = tf_transform_output.transform_features_layer()
    labels = tf.constant(list(label_names))

    def predict(raw_features):
        transformed = model.tft_layer(raw_features)
        ids, mask = pad_to_dense(transformed[features.INPUT_IDS], pad_id)
        outputs = model({"input_ids": ids, "attention_mask": mask,
                         "token_type_ids": tf.zeros_like(ids)}, training=False)
        probabilities = tf.nn.softmax(tf.cast(outputs.logits, tf.float32), axis=-1)
        class_id = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
        return {features.PROBABILITIES: probabilities, features.CLASS_ID: class_id,
                features.LABEL_NAME: tf.gather(labels, class_id)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=features.EXAMPLES_INPUT)])
    def serve_examples(examples):
        return predict(tf.io.parse_example(examples, text_spec))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=features.TEXT_INPUT)])
    def serve_text(text):
        return predict({features.TEXT: _text_feature(text, raw_spec[features.TEXT])})

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=features.EXAMPLES_INPUT)])
    def transform_features(examples):
        transformed = model.tft_layer(tf.io.parse_example(examples, raw_spec))
        return {k: transformed[k] for k in (features.LABEL_ID, features.LENGTH_BUCKET)}

    signatures = {
        features.SERVING_EXAMPLES_SIGNATURE: serve_examples.get_concrete_function(),
        features.SERVING_TEXT_SIGNATURE: serve_text.get_concrete_function(),
        features.TRANSFORM_SIGNATURE: transform_features.get_concrete_function(),
    }
    model.save(output_dir, save_format="tf", signatures=signatures, include_optimizer=False)
    extra = os.path.join(output_dir, "assets.extra")
    tf.io.gfile.makedirs(extra)
    with tf.io.gfile.GFile(os.path.join(extra, LABELS_FILE), "w") as f:
        f.write("".join(f"{name}\n" for name in label_names))
    with tf.io.gfile.GFile(os.path.join(extra, MODEL_INFO_FILE), "w") as f:
        json.dump(dict(model_info, labels=list(label_names)), f, indent=2, sort_keys=True)


def read_label_names(vocab_file: str) -> list[str]:
    with tf.io.gfile.GFile(vocab_file) as f:
        return [line.rstrip("\n") for line in f]
