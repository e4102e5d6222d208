"""Exporting the trained classifier as a SavedModel for TF Serving and TFMA.

Serving contract (clients and tests rely on these names):
  * ``serving_default``: input ``examples`` (serialized tf.Example with a ``text`` feature,
    and ``text_pair`` for sentence-pair models; TFMA reads the eval split through it)
  * ``predict_text``: input ``text`` (raw strings; pair models also ``text_pair``); a
    model trained on several text columns (``data.text_column`` "subject,body") takes one
    input per column instead (``features.text_inputs``) and joins them in its graph as
    the reader did: the non-empty parts, in order, with ``data.text_separator``
  both returning ``probabilities`` [batch, classes] float32, ``class_id`` [batch]
  int64 and ``label`` [batch] string. Tokenizer and label names are in the graph.
  Multi-label models: ``probabilities`` are independent sigmoid scores, ``class_id`` and
  ``label`` the top-scoring label, and ``label_set`` [batch, classes] string holds the
  predicted labels (score >= the decision threshold), best first, padded with "".
  * ``classify`` (TF Serving's Classify API, method ``tensorflow/serving/classify``):
    input ``inputs`` (serialized tf.Example with the features ``predict_text`` takes as
    inputs) -> ``classes`` (every label name) and ``scores`` (their probabilities), both
    [batch, classes].
  * ``redact_text``: input ``text`` (raw strings) -> ``text``, redacted with the run's
    ``privacy`` settings (the same Redactor the Transform graph, and so every signature
    above, runs before tokenizing); the model server stores feedback through it.
  * ``transform_features`` (for TFMA only): serialized examples with labels ->
    ``label_id`` (multi-hot [batch, classes] float for multi-label models) and
    ``text_length_bucket``.
``assets.extra/model_info.json`` writes this input contract down (``input_contract``).
"""
from __future__ import annotations

import json
import os
from typing import Mapping, Optional, Sequence

import tensorflow as tf

from models import features, redaction
from models.hparams import Task
from models.tokenizer import pad_to_dense, segment_ids
from serving import contract
# tf-text ops linked into TF Serving 2.12-2.19 (tf-text 2.12) that BertTokenizer may use;
# every other op of the exported model must be core TensorFlow.
TF_SERVING_TF_TEXT_OPS = frozenset({"CaseFoldUTF8", "NormalizeUTF8", "RegexSplitWithOffsets",
                                    "WordpieceTokenizeWithOffsets"})
# Texts TF Serving runs through both signatures at load, so the first real request is
# not the one that pays for lazy initialisation (empty, short, long; batch 1 and 8).
WARMUP_TEXTS = ("", "a short text",
                "a much longer text, with punctuation and numbers like 42, to exercise "
                "the tokenizer and a longer padded batch " * 4)
# The second texts of the warmup pairs (sentence-pair models).
WARMUP_PAIRS = ("an answer", "", "and its pair, also long enough to be truncated " * 8)


def _text_feature(texts: tf.Tensor, spec) -> tf.Tensor:
    """Raw strings shaped like the raw ``text`` feature Transform expects."""
    if isinstance(spec, tf.io.VarLenFeature):  # one value per row, empty strings kept
        count = tf.size(texts, out_type=tf.int64)
        rows = tf.range(count)
        return tf.SparseTensor(indices=tf.stack([rows, tf.zeros_like(rows)], axis=1),
                               values=tf.reshape(texts, [-1]),
                               dense_shape=tf.stack([count, 1]))
    return tf.reshape(texts, [-1] + list(spec.shape))


def join_parts(parts: Sequence[tf.Tensor], separator: str) -> tf.Tensor:
    """The reader's join of several text columns (components/text_example_gen/parsing.py),
    in the graph: each row's non-empty parts, in order, joined by ``separator``."""
    joined = parts[0]
    for part in parts[1:]:
        both = (tf.strings.length(joined) > 0) & (tf.strings.length(part) > 0)
        joined = tf.where(both, tf.strings.join([joined, part], separator),
                          tf.strings.join([joined, part]))
    return joined


def join_values(values: Sequence[str], separator: str) -> str:
    """``join_parts`` for one row in Python (the warmup requests' joined ``text``)."""
    return separator.join(value for value in values if value)


def input_contract(task: Task, privacy: Optional[Mapping]) -> dict:
    """What callers send, as ``model_info.json`` and the model card state it."""
    served = features.served_inputs(task)
    return {"text_columns": list(task.text_columns),
            "text_pair_columns": list(task.text_pair_columns),
            "text_separator": task.text_separator, "empty_parts": "left out",
            "signatures": {contract.TEXT_SIGNATURE: served,
                           contract.CLASSIFY_SIGNATURE: served,
                           contract.EXAMPLES_SIGNATURE: list(
                               features.text_inputs(task))},
            "privacy": dict(privacy) if privacy else {"redact": "none"}}


def export_serving_model(model, tf_transform_output, label_names: Sequence[str],
                         pad_id: int, output_dir: str, model_info: Mapping,
                         sep_id: int = -1, task: Task = Task(),
                         threshold: float = 0.5, privacy: Optional[Mapping] = None) -> None:
    """Saves ``model`` with the tokenizer and label names baked into its signatures.

    Args:
      model: the fine-tuned Keras classifier (token ids in, logits out).
      tf_transform_output: Transform's output, whose graph (redaction, tokenizer) every
        signature runs first.
      label_names: the class names, in class-id order (served as ``classes``).
      pad_id: the vocabulary's padding id.
      output_dir: the SavedModel folder to write.
      model_info: what the run knew of the model (checkpoint, settings), saved in
        ``assets.extra/model_info.json`` with the labels and the input contract.
      sep_id: the [SEP] id, which gives sentence pairs their token types.
      task: text pairs, multi-label.
      threshold: multi-label models predict every label whose sigmoid score is at
        least this.
      privacy: the run's redaction settings, for ``redact_text`` (the Transform graph
        has its own).

    Returns:
      None. ``output_dir`` holds the signatures ``serving.contract`` names, the label
      names and the warmup requests.
    """
    raw_spec = tf_transform_output.raw_feature_spec()
    text_inputs = features.text_inputs(task)  # raw feature -> the served inputs it joins
    served = features.served_inputs(task)
    text_spec = {name: raw_spec[name] for name in text_inputs}
    joins = served != list(text_spec)  # trained on several columns: served as columns
    # The Transform graph as a tracked layer, so its tables and assets are saved.
    model.tft_layer = tf_transform_output.transform_features_layer()
    labels = tf.constant(list(label_names))

    def predict(raw_features):
        transformed = model.tft_layer(raw_features)
        ids, mask = pad_to_dense(transformed[contract.INPUT_IDS], pad_id)
        types = segment_ids(ids, sep_id, mask) if task.text_pair else tf.zeros_like(ids)
        outputs = model({"input_ids": ids, "attention_mask": mask, "token_type_ids": types},
                        training=False)
        logits = tf.cast(outputs.logits, tf.float32)
        if task.multi_label:
            probabilities = tf.sigmoid(logits)
        else:
            probabilities = tf.nn.softmax(logits, axis=-1)
        class_id = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
        result = {contract.PROBABILITIES: probabilities, contract.CLASS_ID: class_id,
                  contract.LABEL_NAME: tf.gather(labels, class_id)}
        if task.multi_label:
            result[contract.LABEL_SET] = label_set(probabilities, labels, threshold)
        return result

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=contract.EXAMPLES_INPUT)],
                 autograph=False)
    def serve_examples(examples):
        return predict(tf.io.parse_example(examples, text_spec))

    def predict_inputs(inputs):
        """The served inputs joined into the raw text features, as the reader joined them."""
        return predict({name: _text_feature(
            join_parts([inputs[i] for i in text_inputs[name]], task.text_separator),
            raw_spec[name]) for name in text_inputs})

    @tf.function(input_signature=[{name: tf.TensorSpec([None], tf.string, name=name)
                                   for name in served}], autograph=False)
    def serve_text(inputs):
        return predict_inputs(inputs)

    column_spec = {name: tf.io.FixedLenFeature([], tf.string) for name in served}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=contract.CLASSIFY_INPUT)],
                 autograph=False)
    def classify(inputs):
        if joins:  # tf.Examples with the columns, as predict_text takes them
            outputs = predict_inputs(tf.io.parse_example(inputs, column_spec))
        else:
            outputs = serve_examples(inputs)
        probabilities = outputs[contract.PROBABILITIES]
        classes = tf.tile(labels[tf.newaxis], [tf.shape(probabilities)[0], 1])
        return {contract.CLASSIFY_CLASSES: classes, contract.CLASSIFY_SCORES: probabilities}

    redactor = redaction.from_settings(privacy)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=contract.TEXT_INPUT)],
                 autograph=False)
    def redact_text(text):
        return {contract.TEXT_INPUT: redactor(text)[0]}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=contract.EXAMPLES_INPUT)],
                 autograph=False)
    def transform_features(examples):
        transformed = model.tft_layer(tf.io.parse_example(examples, raw_spec))
        label_id = transformed[contract.LABEL_ID]
        if task.multi_label:  # TFMA compares multi-hot labels with the sigmoid scores
            hot = tf.math.unsorted_segment_sum(
                tf.one_hot(label_id.values, len(label_names)), label_id.indices[:, 0],
                label_id.dense_shape[0])
            label_id = tf.minimum(hot, 1.0)
        return {contract.LABEL_ID: label_id,
                contract.LENGTH_BUCKET: transformed[contract.LENGTH_BUCKET]}

    signatures = {
        contract.EXAMPLES_SIGNATURE: serve_examples.get_concrete_function(),
        contract.TEXT_SIGNATURE: serve_text.get_concrete_function(),
        contract.CLASSIFY_SIGNATURE: classify.get_concrete_function(),
        contract.TRANSFORM_SIGNATURE: transform_features.get_concrete_function(),
        contract.REDACT_SIGNATURE: redact_text.get_concrete_function(),
    }
    # save_traces=False: no Keras traces of every layer's call (the largest part of the
    # export's time and of the model's load time); everything loads the model through its
    # signatures (tf.saved_model.load), never as a Keras model.
    model.save(output_dir, save_format="tf", signatures=signatures, include_optimizer=False,
               save_traces=False)
    set_method_name(output_dir, contract.CLASSIFY_SIGNATURE, contract.CLASSIFY_METHOD)
    extra = os.path.join(output_dir, contract.ASSETS_EXTRA)
    tf.io.gfile.makedirs(extra)
    with tf.io.gfile.GFile(os.path.join(extra, contract.LABELS_FILE), "w") as f:
        f.write("".join(f"{name}\n" for name in label_names))
    with tf.io.gfile.GFile(os.path.join(extra, contract.MODEL_INFO_FILE), "w") as f:
        json.dump(dict(model_info, labels=list(label_names),
                       **{contract.INPUT_CONTRACT: input_contract(task, privacy)}),
                  f, indent=2, sort_keys=True, ensure_ascii=False)
    write_warmup_requests(os.path.join(extra, contract.WARMUP_FILE), task)


def label_set(probabilities: tf.Tensor, labels: tf.Tensor, threshold: float) -> tf.Tensor:
    """Names of the labels scoring at least ``threshold``, best first, padded with ""."""
    order = tf.argsort(probabilities, axis=-1, direction="DESCENDING")
    names = tf.gather(labels, order)
    chosen = tf.gather(probabilities, order, batch_dims=1) >= threshold
    return tf.where(chosen, names, tf.zeros_like(names))


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


def _example(values: Mapping[str, str]) -> tf.train.Example:
    return tf.train.Example(features=tf.train.Features(feature={
        name: tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode("utf-8")]))
        for name, value in values.items()}))


def write_warmup_requests(path: str, task: Task = Task()) -> None:
    """TF Serving's warmup file: a TFRecord of PredictionLog for the serving signatures,
    each with the inputs it takes (``task``: sentence pairs, several text columns)."""
    from tensorflow_serving.apis import (classification_pb2, input_pb2, model_pb2,
                                         predict_pb2, prediction_log_pb2)

    text_inputs = features.text_inputs(task)

    def row(i: int) -> dict:  # served input -> value; the k-th column shifts the texts
        values = {}
        for name, inputs in text_inputs.items():
            pool = WARMUP_TEXTS if name == contract.TEXT_FEATURE else WARMUP_PAIRS
            for k, input_name in enumerate(inputs):
                values.setdefault(input_name, pool[(i + k) % len(pool)])
        return values

    def joined(values: dict) -> dict:  # the raw text features serving_default reads
        return {name: join_values([values[i] for i in inputs], task.text_separator)
                for name, inputs in text_inputs.items()}

    with tf.io.TFRecordWriter(path) as writer:
        for batch in ([row(1)], [row(i) for i in range(8)]):
            texts = {name: [values[name] for values in batch] for name in batch[0]}
            examples = {contract.EXAMPLES_INPUT: [_example(joined(values)).SerializeToString()
                                                  for values in batch]}
            for signature, inputs in ((contract.TEXT_SIGNATURE, texts),
                                      (contract.EXAMPLES_SIGNATURE, examples)):
                request = predict_pb2.PredictRequest(
                    model_spec=model_pb2.ModelSpec(signature_name=signature))
                for name, values in inputs.items():
                    request.inputs[name].CopyFrom(tf.make_tensor_proto(
                        [v if isinstance(v, bytes) else v.encode("utf-8") for v in values],
                        dtype=tf.string))
                log = prediction_log_pb2.PredictionLog(
                    predict_log=prediction_log_pb2.PredictLog(request=request))
                writer.write(log.SerializeToString())
            request = classification_pb2.ClassificationRequest(
                model_spec=model_pb2.ModelSpec(signature_name=contract.CLASSIFY_SIGNATURE),
                input=input_pb2.Input(example_list=input_pb2.ExampleList(
                    examples=[_example(values) for values in batch])))
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


def redact_texts(model, texts: Sequence, batch_size: int = 64) -> Optional[list]:
    """``texts`` (str or bytes) as a loaded SavedModel's ``redact_text`` signature redacts
    them (its run's privacy settings), as bytes, ``batch_size`` at a time; None for a
    model without that signature."""
    redact = model.signatures.get(contract.REDACT_SIGNATURE)
    if redact is None:
        return None
    return [value for start in range(0, len(texts), batch_size)
            for value in redact(**{contract.TEXT_INPUT: tf.constant(
                list(texts[start:start + batch_size]))})[contract.TEXT_INPUT].numpy()]


def read_label_names(vocab_file: str) -> list[str]:
    with tf.io.gfile.GFile(vocab_file) as f:
        return [line.rstrip("\n") for line in f]
