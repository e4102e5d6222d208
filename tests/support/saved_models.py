"""A script that lists the ops of a SavedModel core TensorFlow does not register."""

# Run with TensorFlow alone: which of the model's ops does core TF not register?
NON_CORE_OPS = """
import json, os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"
import tensorflow as tf
from tensorflow.python.framework import op_def_registry
print(json.dumps(sorted(op for op in json.loads(sys.argv[1]) if op_def_registry.get(op) is None)))
"""
