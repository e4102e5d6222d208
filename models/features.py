"""Feature names shared by ingestion, Transform, training and serving."""

# Raw features written by TextExampleGen (whatever the source columns are called).
TEXT = "text"
LABEL = "label"

# Features produced by the Transform graph.
INPUT_IDS = "input_ids"
LABEL_ID = "label_id"
LENGTH_BUCKET = "text_length_bucket"

# Vocabulary file of label names computed by Transform.
LABEL_VOCAB = "label_vocab"

# Upper bounds (in word pieces, [CLS]/[SEP] included) of the text-length slices.
LENGTH_BUCKET_BOUNDARIES = (16, 32, 64, 128, 256)

# Serving contract: signature names, their inputs and outputs.
SERVING_EXAMPLES_SIGNATURE = "serving_default"
SERVING_TEXT_SIGNATURE = "predict_text"
CLASSIFY_SIGNATURE = "classify"
TRANSFORM_SIGNATURE = "transform_features"
EXAMPLES_INPUT = "examples"
TEXT_INPUT = "text"
PROBABILITIES = "probabilities"
CLASS_ID = "class_id"
LABEL_NAME = "label"
# TF Serving's Classify API fixes these names: input "inputs", outputs "classes"/"scores".
CLASSIFY_INPUT = "inputs"
CLASSIFY_CLASSES = "classes"
CLASSIFY_SCORES = "scores"
