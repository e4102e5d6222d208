"""What AutoGraph converts (models/autograph.py): the model's, Keras's and tf.Transform's
code is traced as written."""
import json
import subprocess
import sys

import pytest
import tensorflow as tf
from tensorflow.python.autograph.pyct import transpiler

from models import autograph, model
from models.hparams import ModelHParams

# A tf.function's own Python function is always converted (Keras's train and test
# functions here); what it calls is converted unless AutoGraph's rules exclude it.
TOP_LEVEL = ("make_train_function.<locals>.train_function",
             "make_test_function.<locals>.test_function")


@pytest.fixture
def converted(monkeypatch):
    """Names of the functions AutoGraph converts while the test runs (cached or not)."""
    names = []
    transform = transpiler.PyToPy.transform_function

    def spy(self, fn, *args, **kwargs):
        names.append(f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', fn)}")
        return transform(self, fn, *args, **kwargs)

    monkeypatch.setattr(transpiler.PyToPy, "transform_function", spy)
    return names


def test_the_libraries_are_excluded_once_in_a_fresh_process():
    script = """
import json
from tensorflow.python.autograph.core import config
from tensorflow.python.autograph.impl import conversion
from tf_keras.src.engine import input_spec
from tensorflow_transform import tf2_utils
from models import autograph
functions = (input_spec.assert_input_compatibility, tf2_utils.supply_missing_inputs)
before = [conversion.is_allowlisted(f) for f in functions]
rules = len(config.CONVERSION_RULES)
added = [autograph.skip_library_conversion(), autograph.skip_library_conversion()]
print(json.dumps({"before": before, "after": [conversion.is_allowlisted(f) for f in functions],
                  "added": added, "new_rules": len(config.CONVERSION_RULES) - rules}))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert result == {"before": [False, False], "after": [True, True], "added": [True, True],
                      "new_rules": len(autograph.LIBRARIES)}


def test_training_and_evaluating_the_classifier_converts_nothing_it_calls(
        tiny_checkpoint, converted):
    autograph.skip_library_conversion()
    classifier = model.build_classifier(ModelHParams(precision="float32"), 2, total_steps=2,
                                        checkpoint_dir=tiny_checkpoint)
    inputs = {"input_ids": tf.constant([[101, 2307, 3185, 102]] * 4),
              "attention_mask": tf.ones([4, 4], tf.int32)}
    labels = tf.constant([0, 1, 0, 1])
    classifier.fit(inputs, labels, epochs=1, verbose=0)
    classifier.evaluate(inputs, labels, verbose=0)
    assert converted and all(name.endswith(TOP_LEVEL) for name in converted), converted


def test_without_autograph_leaves_the_call_and_the_steps_unconverted():
    from tensorflow.python.autograph.impl.api import is_autograph_artifact  # left as is

    class Classifier(tf.keras.Model):  # defined here: not in a library AutoGraph skips
        def call(self, inputs):
            return inputs

        def train_step(self, data):
            return {}

        def test_step(self, data):
            return {}

    classifier = Classifier()
    assert not any(is_autograph_artifact(getattr(classifier, name))
                   for name in autograph.NOT_CONVERTED)
    assert autograph.without_autograph(classifier) is classifier
    assert all(is_autograph_artifact(getattr(classifier, name))
               for name in autograph.NOT_CONVERTED)
