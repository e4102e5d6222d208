"""Redaction at ingestion: texts of tf.Examples redacted in Beam, counted per split and type.

Tested end to end: tests/e2e/test_text_example_gen.py.

The texts go through the same in-graph ``models.redaction.Redactor`` as Transform and
the served model, in batches; counts are Beam counters (namespace ``NAMESPACE``, named
``<split>/<type>``), read back from the pipeline result once it has run.
"""
from __future__ import annotations

import json
from typing import Dict, List, Mapping

import apache_beam as beam
import tensorflow as tf
from apache_beam.metrics.metric import MetricsFilter

from models import redaction
from serving import contract

NAMESPACE = "redaction"
PROPERTY = "redactions"  # the examples artifact's custom property: JSON {split: {type: n}}
TEXT_FEATURES = (contract.TEXT_FEATURE, contract.TEXT_PAIR_FEATURE)
MAX_BATCH = 256


class _RedactExamples(beam.DoFn):
    """Batches of tf.Examples -> the same examples with ``text``/``text_pair`` redacted."""

    def __init__(self, privacy: Mapping, split: str):
        self._privacy, self._split = dict(privacy), split

    def setup(self):
        redactor = redaction.from_settings(self._privacy)
        self._redact = tf.function(redactor, input_signature=[
            tf.TensorSpec([None], tf.string)], autograph=False)
        self._counters = {name: beam.metrics.Metrics.counter(
            NAMESPACE, f"{self._split}/{name}") for name in redactor.names}

    def process(self, batch: List[tf.train.Example]):
        batch = [_copy(example) for example in batch]  # Beam inputs are not to be changed
        values = [(example, name) for example in batch for name in TEXT_FEATURES
                  if name in example.features.feature]  # (never [] on a missing key)
        if values:
            texts, counts = self._redact(tf.constant(
                [b"\n".join(example.features.feature[name].bytes_list.value)
                 for example, name in values]))
            for (example, name), text in zip(values, texts.numpy()):
                example.features.feature[name].bytes_list.value[:] = [text]
            for name, per_text in counts.items():
                self._counters[name].inc(int(per_text.numpy().sum()))
        yield from batch


def _copy(example: tf.train.Example) -> tf.train.Example:
    copy = tf.train.Example()
    copy.CopyFrom(example)
    return copy


@beam.ptransform_fn
def RedactTexts(examples: beam.PCollection, privacy: Mapping, split: str) -> beam.PCollection:
    """``examples`` (tf.train.Example) with their texts redacted; counters per type."""
    return (examples
            | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=MAX_BATCH)
            | "Redact" >> beam.ParDo(_RedactExamples(privacy, split)))


def enabled(privacy) -> bool:
    """Whether ``privacy`` settings redact anything."""
    return bool(privacy) and bool(redaction.from_settings(privacy).names)


def counts(result, privacy: Mapping, splits: List[str]) -> Dict[str, Dict[str, int]]:
    """{split: {type: redactions}} from a finished pipeline's counters (zeros included)."""
    names = redaction.from_settings(privacy).names
    found = {split: {name: 0 for name in names} for split in splits}
    query = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))
    for counter in query["counters"]:
        split, _, name = counter.key.metric.name.partition("/")
        value = counter.committed if counter.committed is not None else counter.attempted
        if split in found and name in found[split]:
            found[split][name] += int(value or 0)
    return found


def to_property(found: Dict[str, Dict[str, int]]) -> str:
    return json.dumps(found, sort_keys=True)
