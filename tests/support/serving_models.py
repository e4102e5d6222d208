"""Small SavedModels, not this project's, that any TF Serving must serve."""
import os

import tensorflow as tf

from models.export import set_method_name

CLASSIFY = "tensorflow/serving/classify"
REGRESS = "tensorflow/serving/regress"


def write_model_config(path, models: dict) -> str:
    """A ``--model_config_file`` serving each model name's base path (TF Serving's default
    policy: the latest version), written whole before it appears (a running server may
    read it at any time); its path."""
    text = "model_config_list {\n" + "".join(
        f'  config {{ name: "{name}" base_path: "{base}" model_platform: "tensorflow" }}\n'
        for name, base in models.items()) + "}\n"
    staging = f"{path}.new"
    with open(staging, "w") as f:
        f.write(text)
    os.replace(staging, path)
    return str(path)


class HalfPlusTwo(tf.Module):
    """y = x / 2 + 2 (times ``scale``) behind predict, classify and regress signatures,
    plus a two-input signature with a ``_bytes`` string output."""

    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.scale = tf.Variable(scale)

    def y(self, x):
        return (x / 2.0 + 2.0) * self.scale

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def predict(self, x):
        return {"y": self.y(x)}

    def _from_examples(self, inputs):
        return self.y(tf.io.parse_example(inputs, {"x": tf.io.FixedLenFeature([], tf.float32)})["x"])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify(self, inputs):
        y = self._from_examples(inputs)
        return {"scores": tf.stack([y, -y], axis=1),
                "classes": tf.tile(tf.constant([["high", "low"]]), [tf.shape(y)[0], 1])}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def regress(self, inputs):
        return {"outputs": self._from_examples(inputs)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="a"),
                                  tf.TensorSpec([None, 2], tf.int64, name="b")])
    def two_inputs(self, a, b):
        total = a + tf.cast(tf.reduce_sum(b, axis=1), tf.float32)
        return {"sum": total, "echo_bytes": tf.strings.as_string(total)}


def save_version(base_path: str, version: int, module: tf.Module, signatures: dict,
                 methods: dict = None, warmup: tuple = None) -> str:
    """Writes ``<base_path>/<version>/``, complete before it appears (atomic rename);
    ``methods`` maps signatures to the method name they get; ``warmup`` is a
    ``(signature, inputs)`` its load replays (``write_predict_warmup``)."""
    final = os.path.join(base_path, str(version))
    staging = os.path.join(base_path, f".staging-{version}")
    tf.saved_model.save(module, staging, signatures=signatures)
    for signature, method in (methods or {}).items():
        set_method_name(staging, signature, method)
    if warmup:
        write_predict_warmup(staging, *warmup)
    os.rename(staging, final)
    return final


def export_half_plus_two(base_path: str, version: int, scale: float = 1.0) -> str:
    """HalfPlusTwo as ``<base_path>/<version>/`` (``save_version``)."""
    module = HalfPlusTwo(scale)
    return save_version(base_path, version, module, signatures={
        "serving_default": module.predict.get_concrete_function(),
        "classify": module.classify.get_concrete_function(),
        "regress": module.regress.get_concrete_function(),
        "two_inputs": module.two_inputs.get_concrete_function()},
        methods={"classify": CLASSIFY, "regress": REGRESS})


def write_predict_warmup(saved_model_dir: str, signature: str, inputs: dict) -> None:
    """assets.extra/tf_serving_warmup_requests with one PredictRequest."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(
        signature_name=signature))
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    write_warmup(saved_model_dir, prediction_log_pb2.PredictionLog(
        predict_log=prediction_log_pb2.PredictLog(request=request)))


def write_warmup(saved_model_dir: str, *logs) -> None:
    """assets.extra/tf_serving_warmup_requests holding these ``PredictionLog``s."""
    os.makedirs(os.path.join(saved_model_dir, "assets.extra"), exist_ok=True)
    with tf.io.TFRecordWriter(os.path.join(saved_model_dir, "assets.extra",
                                           "tf_serving_warmup_requests")) as writer:
        for log in logs:
            writer.write(log.SerializeToString())


class TextLength(tf.Module):
    """A text classifier in TF Serving's Classify shape: 'long' or 'short' by length."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify(self, inputs):
        text = tf.io.parse_example(inputs, {"text": tf.io.FixedLenFeature([], tf.string)})["text"]
        p_long = tf.sigmoid(tf.cast(tf.strings.length(text, unit="UTF8_CHAR"), tf.float32) - 10.0)
        return {"scores": tf.stack([1.0 - p_long, p_long], axis=1),
                "classes": tf.tile(tf.constant([["short", "long"]]), [tf.shape(text)[0], 1])}


def export_text_length(base_path: str, version: int = 1) -> str:
    module = TextLength()
    path = os.path.join(base_path, str(version))
    tf.saved_model.save(module, path, signatures={
        "classify": module.classify.get_concrete_function()})
    set_method_name(path, "classify", CLASSIFY)
    return path


class LengthClassifier(tf.Module):
    """A text model in this project's shape: 'long' when a text has more than 10 bytes.
    predict_text takes ``text`` (probabilities, label); classify takes tf.Examples with a
    ``text`` feature."""

    labels = ("short", "long")

    def _probabilities(self, text):
        p_long = tf.sigmoid(tf.cast(tf.strings.length(text), tf.float32) - 10.5)
        return tf.stack([1.0 - p_long, p_long], axis=1)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def predict_text(self, text):
        probabilities = self._probabilities(text)
        return {"probabilities": probabilities,
                "label": tf.gather(tf.constant(self.labels), tf.argmax(probabilities, 1))}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify(self, inputs):
        text = tf.io.parse_example(inputs, {"text": tf.io.FixedLenFeature([], tf.string)})
        scores = self._probabilities(text["text"])
        return {"scores": scores, "classes": tf.tile(tf.constant([list(self.labels)]),
                                                     [tf.shape(scores)[0], 1])}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def redact_text(self, text):
        """Digits as '#': a stand-in for the project's redaction."""
        return {"text": tf.strings.regex_replace(text, "[0-9]", "#")}


def export_length_classifier(version_dir: str, redacting: bool = False) -> str:
    """LengthClassifier, with its labels in assets.extra/labels.txt as the project's (and
    with ``redacting``, its redact_text signature)."""
    module = LengthClassifier()
    tf.saved_model.save(module, version_dir, signatures={
        "predict_text": module.predict_text.get_concrete_function(),
        "classify": module.classify.get_concrete_function(),
        **({"redact_text": module.redact_text.get_concrete_function()} if redacting
           else {})})
    set_method_name(version_dir, "classify", CLASSIFY)
    os.makedirs(os.path.join(version_dir, "assets.extra"), exist_ok=True)
    with open(os.path.join(version_dir, "assets.extra", "labels.txt"), "w") as f:
        f.write("".join(f"{label}\n" for label in module.labels))
    return version_dir


class FileReader(tf.Module):
    """The byte count of each file named: a request for a named pipe holds its thread
    until something opens the pipe for writing (then it fails: a pipe cannot seek)."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="path")])
    def read(self, path):
        contents = tf.map_fn(tf.io.read_file, path, fn_output_signature=tf.string)
        return {"size": tf.strings.length(contents)}


def export_file_reader(base_path: str, version: int) -> str:
    """FileReader as ``serving_default`` of ``<base_path>/<version>/`` (``save_version``)."""
    module = FileReader()
    return save_version(base_path, version, module,
                        {"serving_default": module.read.get_concrete_function()})
