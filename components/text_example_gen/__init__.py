"""TextExampleGen: labelled text in CSV, TSV or JSON Lines -> tf.Examples."""
from components.text_example_gen.component import TextExampleGen
from components.text_example_gen.parsing import InputDataError, ReaderConfig

__all__ = ["TextExampleGen", "InputDataError", "ReaderConfig"]
