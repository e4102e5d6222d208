"""`bert-pipeline schema` writes a curated schema that validates the same data."""
from cli.main import main


def test_schema_command_curates_label_domain_and_presence(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.csv").write_text("body,queue\nprinter on fire,it\nrefund please,billing\n")
    (data / "b.jsonl").write_text('{"body": "new badge", "queue": "facilities"}\n')
    out = tmp_path / "schema.pbtxt"
    assert main(["schema", "--data.input_dir", str(data), "--data.text_column", "body",
                 "--data.label_column", "queue", "--out", str(out)]) == 0
    assert "3 rows; label domain: ['billing', 'facilities', 'it']" in capsys.readouterr().out
    text = out.read_text()
    assert text.count("min_fraction: 1.0") == 2
    # Three texts: TFDV gave the text a domain of its values, which was removed (they are
    # data) but still named by the feature: a schema TFDV cannot use.
    assert text.count("domain:") == 1 and 'domain: "label"' in text
    import tensorflow_data_validation as tfdv
    assert [f.name for f in tfdv.load_schema_text(str(out)).feature
            if f.WhichOneof("domain_info")] == ["label"]
    assert 'value: "billing"\n  value: "facilities"\n  value: "it"' in text
    assert "infinity_norm {\n      threshold: 0.25" in text
    assert "jensen_shannon_divergence {\n      threshold: 0.25" in text
    # the drift limits are the configuration's (defaults above)
    assert main(["schema", "--data.input_dir", str(data), "--data.text_column", "body",
                 "--data.label_column", "queue", "--data.max_label_l_infinity", "0.1",
                 "--data.max_length_js_divergence", "0.3", "--out", str(out)]) == 0
    assert "drift limits: label L-infinity 0.1, text-length Jensen-Shannon divergence 0.3" \
        in capsys.readouterr().out
    text = out.read_text()
    assert "infinity_norm {\n      threshold: 0.1\n" in text
    assert "jensen_shannon_divergence {\n      threshold: 0.3\n" in text


def test_schema_for_pairs_and_several_labels(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.tsv").write_text('q\ta\ttags\nwhy " so\tbecause\tx|y\nhow\tlike this\tz\n')
    out = tmp_path / "schema.pbtxt"
    assert main(["schema", "--data.input_dir", str(data), "--data.text_column", "q",
                 "--data.text_pair_column", "a", "--data.label_column", "tags",
                 "--data.quoting", "none", "--data.label_delimiter", "|",
                 "--out", str(out)]) == 0
    assert "label domain: ['x', 'y', 'z']" in capsys.readouterr().out
    from tensorflow_metadata.proto.v0 import schema_pb2
    from tfx.utils import io_utils
    schema = io_utils.parse_pbtxt_file(str(out), schema_pb2.Schema())
    by_name = {f.name: f for f in schema.feature}
    assert set(by_name) == {"text", "text_pair", "label"}
    assert by_name["label"].value_count.min == 1 and not by_name["label"].HasField("shape")
    assert [d.size for d in by_name["text_pair"].shape.dim] == [1]


def test_schema_reads_the_files_the_pipeline_reads(tmp_path, capsys, caplog):
    """With data.presplit it read */* (an old/ folder, notebook checkpoints) and with
    data.span_pattern it found no file: its labels must be the pipeline's."""
    presplit = tmp_path / "presplit"
    for folder, label in (("train", "a"), ("eval", "b"), ("old", "stale"),
                          (".ipynb_checkpoints", "draft")):
        (presplit / folder).mkdir(parents=True)
        (presplit / folder / "x.csv").write_text(f"sentence,label\ntext,{label}\n")
    out = str(tmp_path / "schema.pbtxt")
    (presplit / "train" / "2024").mkdir()
    (presplit / "train" / "2024" / "y.csv").write_text("sentence,label\ntext,c\n")
    assert main(["schema", "--data.input_dir", str(presplit), "--data.presplit", "true",
                 "--out", out]) == 0
    assert "from 2 rows; label domain: ['a', 'b']" in capsys.readouterr().out
    # the skipped folder is named with presplit's own rule, not data.file_pattern
    assert "data.presplit reads the files in train/ and eval/, not their subfolders" \
        in caplog.text and "data.file_pattern" not in caplog.text
    spans = tmp_path / "spans"
    for span, label in ((1, "old"), (2, "a"), (3, "b")):
        (spans / f"span-{span}").mkdir(parents=True)
        (spans / f"span-{span}" / "x.csv").write_text(f"sentence,label\ntext,{label}\n")
    assert main(["schema", "--data.input_dir", str(spans), "--data.span_pattern",
                 "span-{SPAN}", "--data.window_spans", "2", "--out", out]) == 0
    assert "from 2 rows; label domain: ['a', 'b']" in capsys.readouterr().out


def test_a_row_an_error_quotes_has_the_configs_own_types_replaced(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.csv").write_text("see TCK-482913 again,it\nrefund please,billing\n")
    assert main(["schema", "--data.input_dir", str(data), "--data.text_column", "body",
                 "--data.label_column", "queue", "--privacy.custom_patterns",
                 "ticket=TCK-[0-9]{6}", "--out", str(tmp_path / "schema.pbtxt")]) == 1
    err = capsys.readouterr().err
    assert "'see [unused10] again, it'" in err and "4829" not in err, err
