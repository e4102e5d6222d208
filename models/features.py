"""Feature names shared by ingestion, Transform, training and serving.

Names a served model's callers also use live in ``serving/contract.py`` (imported
here), so each is declared once.
"""
from serving.contract import (CLASSIFY_CLASSES, CLASSIFY_INPUT,  # noqa: F401  re-exported
                              CLASSIFY_SCORES, CLASSIFY_SIGNATURE, CLASS_ID, EXAMPLES_INPUT,
                              LABEL_NAME, PROBABILITIES, TEXT_INPUT,
                              TEXT_PAIR_INPUT)
from serving.contract import EXAMPLES_SIGNATURE as SERVING_EXAMPLES_SIGNATURE
from serving.contract import LABEL_FEATURE as LABEL
from serving.contract import TEXT_FEATURE as TEXT
from serving.contract import TEXT_PAIR_FEATURE as TEXT_PAIR
from serving.contract import TEXT_SIGNATURE as SERVING_TEXT_SIGNATURE

# Features produced by the Transform graph.
INPUT_IDS = "input_ids"
LABEL_ID = "label_id"
LENGTH_BUCKET = "text_length_bucket"

# Vocabulary file of label names computed by Transform.
LABEL_VOCAB = "label_vocab"

# Upper bounds (in word pieces, [CLS]/[SEP] included) of the text-length slices.
LENGTH_BUCKET_BOUNDARIES = (16, 32, 64, 128, 256)

# The signature TFMA calls to turn raw eval examples into labels and slices.
TRANSFORM_SIGNATURE = "transform_features"
