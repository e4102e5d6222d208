"""The contract: names the exported model, its callers and the pipeline's steps agree on.

Tested through tests/unit/models/test_export.py; end to end: tests/e2e/test_tasks.py.

Features, signatures, assets and artifact files, each declared here once and imported
under this name by every layer (the server and clients in ``serving/``, ``models/``,
the components, the pipeline, the runners and ``bert-pipeline``), never renamed.
It imports nothing, so ``serving/`` stays free of pipeline and training code.
"""

# Raw tf.Example features the model reads (whatever the source columns are called).
TEXT_FEATURE = "text"
TEXT_PAIR_FEATURE = "text_pair"  # the second text of a sentence pair (pair models only)
LABEL_FEATURE = "label"  # one value per label (several in multi-label data)

# Features the Transform graph makes of them (the Trainer's input, TFMA's labels and slices).
INPUT_IDS = "input_ids"  # word-piece ids, variable length
LABEL_ID = "label_id"  # one id, or a variable-length list of ids (multi-label)
LENGTH_BUCKET = "text_length_bucket"  # the slice of a text's length in word pieces
LABEL_VOCAB = "label_vocab"  # Transform's vocabulary file of label names

# Signatures of the pushed SavedModel and their inputs and outputs.
EXAMPLES_SIGNATURE = "serving_default"  # Predict on serialized tf.Examples
TEXT_SIGNATURE = "predict_text"  # Predict on raw strings
CLASSIFY_SIGNATURE = "classify"  # TF Serving's Classify API
# Strings in ("text"), the same strings redacted as the model's own graph redacts them out
# ("text"): the server stores feedback through it (serving/feedback.py).
REDACT_SIGNATURE = "redact_text"
TRANSFORM_SIGNATURE = "transform_features"  # raw eval examples -> labels and slices (TFMA)
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
MODEL_CARD_FILE = "model_card.md"  # the pipeline's model card (components/model_card)

# Files in the pipeline's artifacts, as TFX and the Trainer write them.
SERVING_MODEL_DIR = "Format-Serving"  # a Model artifact's SavedModel (TFX's path_constants)
STATISTICS_FILE = "FeatureStats.pb"  # StatisticsGen's statistics, one per Split-<name>/
ANOMALIES_FILE = "SchemaDiff.pb"  # ExampleValidator's anomalies, one per Split-<name>/
DRIFT_REPORT_FILE = "drift.json"  # DriftCheck's verdict and figures, in its report artifact
TRAIN_STATS_FILE = "train_stats.json"  # the Trainer's figures, in its model_run artifact
