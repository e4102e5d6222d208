"""The run report's scoring (local/report/scoring.py): redacted spans shown by type name."""


def test_redacted_spans_show_by_type_name_in_the_report():
    """The examples hold redaction's placeholders ([unused1], the word pieces the model
    reads); the report names them as their types, custom ones as the run named them."""
    from local.report.scoring import placeholder_names, readable

    names = placeholder_names({"redact": "all", "custom_patterns": [["ticket", "TCK-[0-9]{6}"]]})
    assert readable("mail [unused1], call [unused3] about [unused10]; [unused99] [x]",
                    names) == "mail [EMAIL], call [PHONE] about [TICKET]; [unused99] [x]"
    assert readable("[unused6] [unused7] [unused2]", placeholder_names(None)) == \
        "[CARD] [IBAN] [URL]"


def test_the_most_wrong_texts_are_shown_as_the_model_redacts_them(tmp_path):
    """With privacy.at_ingestion false the examples hold raw text: the report showed it
    as it came. The model's redact_text (the run's settings) runs first."""
    import tensorflow as tf

    from local.report.scoring import score

    class Model(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def serve(self, examples):
            parsed = tf.io.parse_example(examples, {"text": tf.io.FixedLenFeature([], tf.string)})
            n = tf.shape(parsed["text"])[0]
            return {"probabilities": tf.tile([[0.9, 0.1]], [n, 1])}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        def redact_text(self, text):
            return {"text": tf.strings.regex_replace(text, r"\S+@\S+", "[unused1]")}

    model = Model()
    tf.saved_model.save(model, str(tmp_path / "model" / "Format-Serving"), signatures={
        "serving_default": model.serve.get_concrete_function(),
        "redact_text": model.redact_text.get_concrete_function()})
    (tmp_path / "examples" / "Split-eval").mkdir(parents=True)
    with tf.io.TFRecordWriter(str(tmp_path / "examples" / "Split-eval" / "data.gz"),
                              options="GZIP") as writer:
        for text, label in [("mail jane.roe@example.com now", "b"), ("fine", "a")]:
            example = tf.train.Example()
            example.features.feature["text"].bytes_list.value.append(text.encode())
            example.features.feature["label"].bytes_list.value.append(label.encode())
            writer.write(example.SerializeToString())
    scored = score(str(tmp_path / "model"), str(tmp_path / "examples"), ["a", "b"])
    assert scored.texts == ["mail [EMAIL] now", "fine"]


def test_top_text_values_are_shown_redacted():
    """With privacy.at_ingestion false the statistics hold raw texts: the report's top
    values of the text showed them as they came."""
    from tensorflow_metadata.proto.v0 import statistics_pb2

    from local.report.data import feature_stats

    string = statistics_pb2.FeatureNameStatistics.STRING
    feature = statistics_pb2.FeatureNameStatistics(name="text", type=string)
    feature.string_stats.top_values.add(value="call +44 20 7946 0958 now", frequency=3)
    label = statistics_pb2.FeatureNameStatistics(name="label", type=string)
    label.string_stats.top_values.add(value="billing", frequency=9)
    assert feature_stats(feature).top == [("call [unused3] now", 3)]
    assert feature_stats(label).top == [("billing", 9)]


def test_top_values_and_anomalies_are_shown_with_the_runs_custom_patterns(tmp_path):
    """The top values were redacted of the built-in types only, and an anomaly's
    description (TFDV lists values missing from an inferred schema) not at all."""
    from tensorflow_metadata.proto.v0 import anomalies_pb2, statistics_pb2

    from local.report.data import anomalies, feature_stats
    from models.redaction import text_redactor

    shown = text_redactor({"custom_patterns": [["ticket", "TCK-[0-9]{6}"]]})
    feature = statistics_pb2.FeatureNameStatistics(
        name="text", type=statistics_pb2.FeatureNameStatistics.STRING)
    feature.string_stats.top_values.add(value="ticket TCK-123456 from bob@example.com",
                                        frequency=3)
    [(text, frequency)] = feature_stats(feature, shown).top
    assert frequency == 3
    assert "TCK-123456" not in text and "bob@example.com" not in text
    found = anomalies_pb2.Anomalies()
    found.anomaly_info["text"].short_description = "Unexpected string values"
    found.anomaly_info["text"].description = (
        "Examples contain values missing from the schema: mail me at john.doe@example.com "
        "please (~50%).")
    (tmp_path / "Split-eval").mkdir()
    (tmp_path / "Split-eval" / "SchemaDiff.pb").write_bytes(found.SerializeToString())
    [(split, name, short, description)] = anomalies(str(tmp_path), shown)
    assert (split, name, short) == ("eval", "text", "Unexpected string values")
    assert "john.doe@example.com" not in description and "missing from the schema" in \
        description
