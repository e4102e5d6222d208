"""The serving contract: names the exported model and its callers agree on.

One module, imported by the export code (``models/export.py``), the server and
clients (``serving/``) and ``bert-pipeline score``, so a name is declared once.
It imports nothing, so ``serving/`` stays free of pipeline and training code.
"""

# Raw tf.Example features the model reads (whatever the source columns are called).
TEXT_FEATURE = "text"
TEXT_PAIR_FEATURE = "text_pair"  # the second text of a sentence pair (pair models only)
LABEL_FEATURE = "label"  # one value per label (several in multi-label data)

# Signatures of the pushed SavedModel and their inputs and outputs.
EXAMPLES_SIGNATURE = "serving_default"  # Predict on serialized tf.Examples
TEXT_SIGNATURE = "predict_text"  # Predict on raw strings
CLASSIFY_SIGNATURE = "classify"  # TF Serving's Classify API
# Strings in ("text"), the same strings redacted as the model's own graph redacts them out
# ("text"): the server stores feedback through it (serving/feedback.py).
REDACT_SIGNATURE = "redact_text"
EXAMPLES_INPUT = "examples"
TEXT_INPUT = "text"
TEXT_PAIR_INPUT = "text_pair"  # predict_text's second input (pair models only)
PROBABILITIES = "probabilities"
CLASS_ID = "class_id"
LABEL_NAME = "label"
LABEL_SET = "label_set"  # multi-label models: the predicted labels, best first, "" padded
# TF Serving's Classify API fixes these names: input "inputs", outputs "classes"/"scores".
CLASSIFY_INPUT = "inputs"
CLASSIFY_CLASSES = "classes"
CLASSIFY_SCORES = "scores"

# SignatureDef method names (tensorflow_serving/apis, signature_constants).
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"

# Files under <SavedModel>/assets.extra/ (TF Serving ignores the ones it does not know).
ASSETS_EXTRA = "assets.extra"
LABELS_FILE = "labels.txt"
MODEL_INFO_FILE = "model_info.json"
INPUT_CONTRACT = "input"  # model_info.json's key: the columns, separator, inputs, privacy
WARMUP_FILE = "tf_serving_warmup_requests"  # read by TF Serving at load
