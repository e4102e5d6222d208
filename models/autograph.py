"""What AutoGraph converts: none of the model's, Keras's or tf.Transform's code that a
traced function calls (a ``tf.function``'s own Python function is always converted).

AutoGraph rewrites the Python source of every function a ``tf.function`` traces, and of
everything that function calls, so that Python control flow on tensors becomes graph
ops. None of the code a run traces has such control flow (Keras's loss scaling uses
``tf.cond`` itself; the model's own functions branch on Python values only), so the
conversion changes no graph and only costs time: about half of a tiny model's tracing
CPU time, in the Trainer, the Evaluator's metrics and TextExampleGen's redaction.

Two ways it is turned off:

- ``without_autograph(classifier)`` and ``tf.function(..., autograph=False)`` for the
  project's own traced functions (training and eval steps, the export's signatures,
  the redaction, the dataset maps);
- ``skip_library_conversion()`` for the libraries a traced function calls into. TF's
  AutoGraph already leaves ``tensorflow`` and ``keras`` alone (its CONVERSION_RULES), but
  TF 2.16's Keras 2 is the package ``tf_keras``, which the rule misses; tf.Transform's
  own graph code is traced by tf.Transform without AutoGraph, so it needs none either.

Control flow on a tensor, were there any, fails the trace with an error; it never
changes what the graph computes.

Tested in tests/unit/models/test_autograph.py.
"""
from __future__ import annotations

import logging

import tensorflow as tf

NOT_CONVERTED = ("call", "train_step", "test_step")
# Libraries whose functions AutoGraph leaves as they are (besides TF's own rules).
LIBRARIES = ("tf_keras", "tensorflow_transform")


def without_autograph(classifier):
    """``classifier`` with its ``call``, ``train_step`` and ``test_step`` left out of
    AutoGraph's conversion, and so everything they run: every layer, Hugging Face's
    train step, Keras's loss, metrics and optimizer. Returns the classifier."""
    for name in NOT_CONVERTED:
        setattr(classifier, name,
                tf.autograph.experimental.do_not_convert(getattr(classifier, name)))
    return classifier


def skip_library_conversion() -> bool:
    """Adds ``LIBRARIES`` to AutoGraph's do-not-convert rules of this process (once).

    Returns whether the rules now hold them. AutoGraph's rules are not public API: where
    a TensorFlow version moved them, this logs a warning and changes nothing (runs are
    then slower, never different).
    """
    try:
        from tensorflow.python.autograph.core import config
        rules = tuple(config.CONVERSION_RULES)
        missing = tuple(config.DoNotConvert(name) for name in LIBRARIES if not any(
            isinstance(rule, config.DoNotConvert) and rule.matches(name) for rule in rules))
        config.CONVERSION_RULES = missing + rules
        return True
    except (ImportError, AttributeError, TypeError) as e:
        logging.warning("AutoGraph's conversion rules were not found (%s): tf_keras and "
                        "tf.Transform code will be converted on every trace (slower, "
                        "same results)", e)
        return False
