"""How the classifier reads the encoder: BERT's pooler on [CLS], or the mean of the tokens.

``TFBertForSequenceClassification`` classifies BERT's pooler output (a dense layer on
the [CLS] vector), as BERT was pre-trained. Sentence-embedding checkpoints, such as the
offline default all-MiniLM-L6-v2, were trained on the mean of the token vectors: their
[CLS] vector was never trained to sum up a text, and the pooler was not trained at all
(its bias is all zeros). ``model.pooling`` picks the head; ``auto`` follows the
checkpoint's own sentence-transformers pooling file (``1_Pooling/config.json``).

Tested in tests/unit/models/test_pooling.py.
"""
from __future__ import annotations

import json
import logging
import os

import tensorflow as tf
from transformers import TFBertForSequenceClassification
from transformers.modeling_tf_outputs import TFSequenceClassifierOutput
from transformers.modeling_tf_utils import unpack_inputs

SENTENCE_TRANSFORMERS_POOLING = os.path.join("1_Pooling", "config.json")


def checkpoint_pooling(checkpoint_dir: str) -> str:
    """``mean`` when the checkpoint's sentence-transformers pooling file says it was trained
    on the mean of the token vectors, else ``cls`` (BERT's own pooler; a warning when the
    file names a pooling this project does not offer, such as max)."""
    path = os.path.join(checkpoint_dir, SENTENCE_TRANSFORMERS_POOLING)
    if not os.path.exists(path):
        return "cls"
    with open(path, encoding="utf-8") as f:
        modes = json.load(f)
    if modes.get("pooling_mode_mean_tokens"):
        return "mean"
    others = [mode for mode, on in modes.items() if on is True and mode.startswith(
        "pooling_mode_") and mode != "pooling_mode_cls_token"]
    if others:
        logging.warning("%s names %s, which model.pooling does not offer: the classifier "
                        "reads BERT's pooler on [CLS] (set model.pooling mean or cls to "
                        "choose)", path, ", ".join(others))
    return "cls"


def resolve_pooling(pooling: str, checkpoint_dir: str) -> str:
    """``model.pooling`` as the classifier is built: ``auto`` asks the checkpoint."""
    return checkpoint_pooling(checkpoint_dir) if pooling == "auto" else pooling


def classifier_class(pooling: str):
    """The Keras model class for a resolved pooling (``cls`` or ``mean``)."""
    return TFBertMeanPooledForSequenceClassification if pooling == "mean" \
        else TFBertForSequenceClassification


def pooling_of(classifier) -> str:
    """The pooling a built classifier reads: ``mean`` or ``cls``."""
    return "mean" if isinstance(classifier, TFBertMeanPooledForSequenceClassification) \
        else "cls"


class TFBertMeanPooledForSequenceClassification(TFBertForSequenceClassification):
    """``TFBertForSequenceClassification`` whose dropout and classifier read the mean of
    the last layer's token vectors (padding left out by the attention mask), in float32
    under a mixed precision policy. Same weights and names; the pooler is kept (a
    checkpoint or a warm start still loads) but not trained, as nothing reads it."""

    def __init__(self, config, *inputs, **kwargs):
        super().__init__(config, *inputs, **kwargs)
        self.bert.pooler.trainable = False

    @unpack_inputs
    def call(self, input_ids=None, attention_mask=None, token_type_ids=None,
             position_ids=None, head_mask=None, inputs_embeds=None, output_attentions=None,
             output_hidden_states=None, return_dict=None, labels=None, training=False):
        outputs = self.bert(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
            position_ids=position_ids, head_mask=head_mask, inputs_embeds=inputs_embeds,
            output_attentions=output_attentions, output_hidden_states=output_hidden_states,
            return_dict=return_dict, training=training)
        logits = self.classifier(inputs=self.dropout(
            inputs=mean_of_tokens(outputs[0], attention_mask), training=training))
        loss = None if labels is None else self.hf_compute_loss(labels=labels, logits=logits)
        if not return_dict:
            output = (logits,) + tuple(outputs[2:])
            return ((loss,) + output) if loss is not None else output
        return TFSequenceClassifierOutput(loss=loss, logits=logits,
                                          hidden_states=outputs.hidden_states,
                                          attentions=outputs.attentions)


def mean_of_tokens(hidden: tf.Tensor, attention_mask) -> tf.Tensor:
    """[batch, length, width] -> [batch, width]: each text's mean over its real tokens (all
    of them without a mask), summed in float32."""
    hidden = tf.cast(hidden, tf.float32)
    if attention_mask is None:
        return tf.reduce_mean(hidden, axis=1)
    mask = tf.cast(attention_mask, tf.float32)[:, :, tf.newaxis]
    return tf.reduce_sum(hidden * mask, axis=1) / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)
