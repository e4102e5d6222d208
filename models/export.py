"""Exporting the trained classifier as a SavedModel for TF Serving and TFMA.

Serving contract (clients and tests rely on these names):
  * ``serving_default``: input ``examples`` (serialized tf.Example with a ``text`` feature)
  * ``predict_text``: input ``text`` (raw strings)
  both returning ``probabilities`` [batch, classes] float32, ``class_id`` [batch]
  int64 and ``label`` [batch] string. Tokenizer and label names are in the graph.
  * ``classify`` (TF Serving's Classify API, method ``tensorflow/serving/classify``):
    input ``inputs`` (serialized tf.Example) -> ``classes`` (every label name) and
    ``scores`` (their probabilities), both [batch, classes].
  * ``transform_features`` (for TFMA only): serialized examples with labels ->
    ``label_id`` and ``text_length_bucket``.
"""
from __future__ import annotations

import json
import os
from typing import Mapping, Sequence

import tensorflow as tf

from models import features
from models.tokenizer import pad_to_dense
from serving.contract import (ASSETS_EXTRA, CLASSIFY_METHOD, LABELS_FILE, MODEL_INFO_FILE,
                              WARMUP_FILE)
# tf-text ops linked into TF Serving 2.12-2.19 (tf-text 2.12) that BertTokenizer may use;
# every other op of the exported model must be core TensorFlow.
TF_SERVING_TF_TEXT_OPS = frozenset({"CaseFoldUTF8", "NormalizeUTF8", "RegexSplitWithOffsets",
                                    "WordpieceTokenizeWithOffsets"})
# Texts TF Serving runs through both signatures at load, so the first real request is
# not the one that pays for lazy initialisation (empty, short, long; batch 1 and 8).
WARMUP_TEXTS = ("", "a short text",
                "a much longer text, with punctuation and numbers like 42, to exercise "
                "the tokenizer and a longer padded batch " * 4)


def _text_feature(texts: tf.Tensor, spec) -> tf.Tensor:
    """Raw strings shaped like the raw ``text`` feature Transform expects."""
    if isinstance(spec, tf.io.VarLenFeature):  # one value per row, empty strings kept
        count = tf.size(texts, out_type=tf.int64)
        rows = tf.range(count)
        return tf.SparseTensor(indices=tf.stack([rows, tf.zeros_like(rows)], axis=1),
                               values=tf.reshape(texts, [-1]),
                               dense_shape=tf.stack([count, 1]))
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

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=features.CLASSIFY_INPUT)])
    def classify(inputs):
        probabilities = serve_examples(inputs)[features.PROBABILITIES]
        classes = tf.tile(labels[tf.newaxis], [tf.shape(probabilities)[0], 1])
        return {features.CLASSIFY_CLASSES: classes, features.CLASSIFY_SCORES: probabilities}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=features.EXAMPLES_INPUT)])
    def transform_features(examples):
        transformed = model.tft_layer(tf.io.parse_example(examples, raw_spec))
        return {k: transformed[k] for k in (features.LABEL_ID, features.LENGTH_BUCKET)}

    signatures = {
        features.SERVING_EXAMPLES_SIGNATURE: serve_examples.get_concrete_function(),
        features.SERVING_TEXT_SIGNATURE: serve_text.get_concrete_function(),
        features.CLASSIFY_SIGNATURE: classify.get_concrete_function(),
        features.TRANSFORM_SIGNATURE: transform_features.get_concrete_function(),
    }
    model.save(output_dir, save_format="tf", signatures=signatures, include_optimizer=False)
    set_method_name(output_dir, features.CLASSIFY_SIGNATURE, CLASSIFY_METHOD)
    extra = os.path.join(output_dir, ASSETS_EXTRA)
    tf.io.gfile.makedirs(extra)
    with tf.io.gfile.GFile(os.path.join(extra, LABELS_FILE), "w") as f:
        f.write("".join(f"{name}\n" for name in label_names))
    with tf.io.gfile.GFile(os.path.join(extra, MODEL_INFO_FILE), "w") as f:
        json.dump(dict(model_info, labels=list(label_names)), f, indent=2, sort_keys=True)
    write_warmup_requests(os.path.join(extra, WARMUP_FILE))


def set_method_name(saved_model_dir: str, signature: str, method_name: str) -> None:
    """TF2 saves every signature as 'predict'; TF Serving's Classify needs 'classify'."""
    from tensorflow.core.protobuf import saved_model_pb2

    path = os.path.join(saved_model_dir, "saved_model.pb")
    with tf.io.gfile.GFile(path, "rb") as f:
        saved_model = saved_model_pb2.SavedModel.FromString(f.read())
    for meta_graph in saved_model.meta_graphs:
        meta_graph.signature_def[signature].method_name = method_name
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(saved_model.SerializeToString())


def _serialized_example(text: str) -> bytes:
    return tf.train.Example(features=tf.train.Features(feature={features.TEXT: tf.train.Feature(
        bytes_list=tf.train.BytesList(value=[text.encode("utf-8")]))})).SerializeToString()


def write_warmup_requests(path: str) -> None:
    """TF Serving's warmup file: a TFRecord of PredictionLog for the serving signatures."""
    from tensorflow_serving.apis import (classification_pb2, input_pb2, model_pb2,
                                         predict_pb2, prediction_log_pb2)

    batches = [[WARMUP_TEXTS[1]], [WARMUP_TEXTS[i % len(WARMUP_TEXTS)] for i in range(8)]]
    with tf.io.TFRecordWriter(path) as writer:
        for texts in batches:
            for signature, name, values in (
                    (features.SERVING_TEXT_SIGNATURE, features.TEXT_INPUT,
                     [t.encode("utf-8") for t in texts]),
                    (features.SERVING_EXAMPLES_SIGNATURE, features.EXAMPLES_INPUT,
                     [_serialized_example(t) for t in texts])):
                request = predict_pb2.PredictRequest(
                    model_spec=model_pb2.ModelSpec(signature_name=signature))
                request.inputs[name].CopyFrom(tf.make_tensor_proto(values, dtype=tf.string))
                log = prediction_log_pb2.PredictionLog(
                    predict_log=prediction_log_pb2.PredictLog(request=request))
                writer.write(log.SerializeToString())
            request = classification_pb2.ClassificationRequest(
                model_spec=model_pb2.ModelSpec(signature_name=features.CLASSIFY_SIGNATURE),
                input=input_pb2.Input(example_list=input_pb2.ExampleList(
                    examples=[tf.train.Example.FromString(_serialized_example(t))
                              for t in texts])))
            log = prediction_log_pb2.PredictionLog(
                classify_log=prediction_log_pb2.ClassifyLog(request=request))
            writer.write(log.SerializeToString())


def saved_model_ops(saved_model_dir: str) -> set[str]:
    """Every op type in the SavedModel's graph and in all of its functions."""
    from tensorflow.core.protobuf import saved_model_pb2

    with tf.io.gfile.GFile(os.path.join(saved_model_dir, "saved_model.pb"), "rb") as f:
        saved_model = saved_model_pb2.SavedModel.FromString(f.read())
    ops, functions = set(), set()
    for graph in saved_model.meta_graphs:
        ops |= {node.op for node in graph.graph_def.node}
        for function in graph.graph_def.library.function:
            functions.add(function.signature.name)
            ops |= {node.op for node in function.node_def}
    return ops - functions  # calls to the model's own functions are not ops


def read_label_names(vocab_file: str) -> list[str]:
    with tf.io.gfile.GFile(vocab_file) as f:
        return [line.rstrip("\n") for line in f]
