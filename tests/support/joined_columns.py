"""Rows of two text columns (subject, body) as CSV, and a model that joins them in the graph
and answers by the joined length."""
import csv
import io

import tensorflow as tf

from models import export

# subject, body: empty parts, unicode, the separator and quotes inside a part, spaces.
ROWS = [("Refund", "I was charged twice."), ("", "No subject here"), ("Only subject", ""),
        ("Grüße aus Köln", "Ça marche ? 日本語のテキスト 🙂"), ("a. b", "c. d"),
        (" ", "space subject"), ('He said "no"', "tab\there")]


def _csv(rows) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["subject", "body", "label"])
    writer.writerows([(*row, "x") for row in rows])
    return out.getvalue().encode("utf-8")


class JoinedLength(tf.Module):
    """A column model in this project's shape: predict_text and classify take subject and
    body, joined in the graph with ". "; 'long' or 'short' by the joined length."""

    def _scores(self, columns):
        text = export.join_parts([columns["subject"], columns["body"]], ". ")
        p_long = tf.sigmoid(tf.cast(tf.strings.length(text), tf.float32) - 10.0)
        return tf.stack([1.0 - p_long, p_long], axis=1)

    @tf.function(input_signature=[{n: tf.TensorSpec([None], tf.string, name=n)
                                   for n in ("subject", "body")}])
    def predict_text(self, columns):
        return {"probabilities": self._scores(columns)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify(self, inputs):
        columns = tf.io.parse_example(inputs, {n: tf.io.FixedLenFeature([], tf.string)
                                               for n in ("subject", "body")})
        scores = self._scores(columns)
        return {"scores": scores,
                "classes": tf.tile(tf.constant([["short", "long"]]), [tf.shape(scores)[0], 1])}
