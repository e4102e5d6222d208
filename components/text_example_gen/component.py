"""TextExampleGen component: a FileBasedExampleGen with a strict text reader.

Tested end to end: tests/e2e/test_text_example_gen.py.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2, range_config_pb2

from components.text_example_gen import executor
from components.text_example_gen.parsing import ReaderConfig


class TextExampleGen(FileBasedExampleGen):
    """Ingests labelled text files (CSV, TSV, JSON Lines) as tf.Examples.

    Every output example has two string features, ``text`` and ``label``,
    whatever the source columns are called. Splits come from ``input_config``
    (pre-split folders) or are cut from one input split as ``output_config`` says: each
    class by its own share (``split_method`` stratified, single-label data) or by hashing
    whole rows (hash, TFX's own). With ``{SPAN}``
    in the patterns, TFX's driver picks the newest span and records it on the output.
    With ``privacy``, texts are redacted before examples are written, and the counts per
    split and type are recorded on the output as the custom property ``redactions``.
    """

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(self, input_base: str, reader_config: ReaderConfig,
                 input_config: Optional[example_gen_pb2.Input] = None,
                 output_config: Optional[example_gen_pb2.Output] = None,
                 range_config: Optional[range_config_pb2.RangeConfig] = None,
                 span_pattern: str = "", window_spans: int = 1,
                 privacy: Optional[dict] = None, split_method: str = "hash",
                 excerpt_patterns: Sequence[Tuple[str, str]] = ()):
        """``span_pattern`` (a folder name with {SPAN}) and ``window_spans``: the newest
        span is split as configured; the ``window_spans - 1`` spans before it are added
        whole to the train split. ``privacy``: redaction settings
        (``models.redaction.from_settings``); None: texts are written as read.
        ``split_method``: stratified or hash (``executor.stratified_fraction``).
        ``excerpt_patterns``: (name, RE2) pairs, the run's custom types, that an error's
        quote of a row replaces as it does the built-in ones, whether or not ``privacy``
        redacts the examples."""
        window = None
        if span_pattern and window_spans > 1:
            window = {"spans": window_spans, "span_pattern": span_pattern,
                      "patterns": [s.pattern for s in input_config.splits]}
        super().__init__(input_base=input_base, input_config=input_config,
                         output_config=output_config,
                         custom_config=executor.reader_config_to_proto(
                             reader_config, window, privacy, split_method,
                             excerpt_patterns),
                         range_config=range_config)
