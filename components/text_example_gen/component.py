"""TextExampleGen component: a FileBasedExampleGen with a strict text reader."""
from __future__ import annotations

from typing import Optional

from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2, range_config_pb2

from components.text_example_gen import executor
from components.text_example_gen.parsing import ReaderConfig


class TextExampleGen(FileBasedExampleGen):
    """Ingests labelled text files (CSV, TSV, JSON Lines) as tf.Examples.

    Every output example has two string features, ``text`` and ``label``,
    whatever the source columns are called. Splits come from ``input_config``
    (pre-split folders) or are made by hashing (``output_config``).
    """

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(self, input_base: str, reader_config: ReaderConfig,
                 input_config: Optional[example_gen_pb2.Input] = None,
                 output_config: Optional[example_gen_pb2.Output] = None,
                 range_config: Optional[range_config_pb2.RangeConfig] = None):
        super().__init__(input_base=input_base, input_config=input_config,
                         output_config=output_config,
                         custom_config=executor.reader_config_to_proto(reader_config),
                         range_config=range_config)
