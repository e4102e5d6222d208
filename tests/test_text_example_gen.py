"""TextExampleGen as a real TFX component under LocalDagRunner and Beam (e2e), and how it
finds its input files."""
import glob
import json
import os

import apache_beam as beam
import pytest
import tensorflow as tf
from google.protobuf import json_format, struct_pb2
from ml_metadata.metadata_store import metadata_store
from tfx import v1 as tfx
from tfx.proto import example_gen_pb2

from components.text_example_gen import executor, parsing
from components.text_example_gen.parsing import InputDataError, ReaderConfig
from pipeline.config import load_config
from pipeline.pipeline import example_gen

e2e = pytest.mark.e2e  # a real (one-component) pipeline run


def _run_example_gen(tmp_path, privacy=False, **overrides) -> dict:
    """{split: sorted (text, label)}; with ``privacy``, also {"redactions": ...}: the
    output artifact's custom property, as ML Metadata recorded it."""
    config = load_config(None, dict({"output.root": str(tmp_path / "out")}, **overrides))
    component = example_gen(config.data, config.data.input_dir,
                            config.privacy if privacy else None)
    tfx.orchestration.LocalDagRunner().run(tfx.dsl.Pipeline(
        pipeline_name="ingest-test", pipeline_root=str(tmp_path / "out"),
        components=[component],
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            str(tmp_path / "metadata.sqlite"))))
    splits = {}
    for split_dir in glob.glob(str(tmp_path / "out" / "TextExampleGen" / "examples" / "*" / "Split-*")):
        records = tf.data.TFRecordDataset(glob.glob(os.path.join(split_dir, "*")),
                                          compression_type="GZIP")
        examples = [tf.train.Example.FromString(r.numpy()) for r in records]
        splits[os.path.basename(split_dir)[6:]] = sorted(
            (e.features.feature["text"].bytes_list.value[0].decode(),
             e.features.feature["label"].bytes_list.value[0].decode()) for e in examples)
        if privacy:
            assert not any("text_pair" in e.features.feature for e in examples)
    if privacy:
        store = metadata_store.MetadataStore(
            tfx.orchestration.metadata.sqlite_metadata_connection_config(
                str(tmp_path / "metadata.sqlite")))
        [artifact] = store.get_artifacts_by_type("Examples")
        splits["redactions"] = json.loads(
            artifact.custom_properties["redactions"].string_value)
    return splits


@e2e
def test_presplit_folders_with_mixed_formats(tmp_path):
    data = tmp_path / "data"
    (data / "train").mkdir(parents=True)
    (data / "eval").mkdir()
    (data / "train" / "a.csv").write_bytes(
        '\ufeffbody,queue\r\n"line one\r\nline two, with ""quotes""",billing\r\n'.encode())
    (data / "train" / "b.jsonl").write_text(
        json.dumps({"body": "中文 text", "queue": 3}, ensure_ascii=False) + "\n")
    (data / "eval" / "c.tsv").write_text('body\tqueue\textra\nx\tit\t1\n"a\ttab"\tit\t2\n')
    splits = _run_example_gen(tmp_path, **{
        "data.input_dir": str(data), "data.presplit": "true",
        "data.text_column": "body", "data.label_column": "queue"})
    assert splits == {
        "train": [('line one\r\nline two, with "quotes"', "billing"), ("中文 text", "3")],
        "eval": [("a\ttab", "it"), ("x", "it")]}


@e2e
def test_hash_split_keeps_every_row_once(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    rows = [(f"review number {i}", "pos" if i % 2 else "neg") for i in range(200)]
    (data / "reviews.tsv").write_text("sentence\tlabel\n" + "".join(f"{t}\t{l}\n" for t, l in rows))
    splits = _run_example_gen(tmp_path, **{"data.input_dir": str(data),
                                           "data.eval_fraction": "0.25", "data.split": "hash"})
    assert sorted(splits["train"] + splits["eval"]) == sorted(rows)
    assert 25 <= len(splits["eval"]) <= 75  # about a quarter, by hash


@e2e
def test_default_split_is_stratified_by_label(tmp_path):
    """360 tickets in 5 classes: every class gets its 10 % in eval (the hash split gave
    one class 2 eval rows of 35, and may give a small class none)."""
    from components.text_example_gen.split import eval_rows

    data = tmp_path / "data"
    data.mkdir()
    sizes = {"billing": 140, "login": 100, "shipping": 60, "refund": 42, "legal": 18}
    rows = _tickets(sizes)
    (data / "tickets.csv").write_text("sentence,label\n" + "".join(f"{t},{l}\n" for t, l in rows))
    splits = _run_example_gen(tmp_path, **{"data.input_dir": str(data)})
    assert sorted(splits["train"] + splits["eval"]) == sorted(rows)
    assert _per_class(splits["eval"]) == {label: eval_rows(n, 0.1) for label, n in sizes.items()}


def _examples(tmp_path) -> dict:
    """Every output example as {feature: [values]}, by split."""
    splits = {}
    for split_dir in glob.glob(str(tmp_path / "out" / "TextExampleGen" / "examples" / "*"
                                   / "Split-*")):
        records = tf.data.TFRecordDataset(glob.glob(os.path.join(split_dir, "*")),
                                          compression_type="GZIP")
        splits[os.path.basename(split_dir)[6:]] = [
            {name: [v.decode() for v in feature.bytes_list.value]
             for name, feature in tf.train.Example.FromString(r.numpy()).features.feature.items()}
            for r in records]
    return splits


@e2e
def test_headerless_quoting_none_pairs_and_several_labels(tmp_path):
    """A GLUE-style file without a header: columns named in the config, quotes as text,
    a text pair, and several labels per row."""
    data = tmp_path / "data"
    data.mkdir()
    rows = [(f"tag{i % 3}|tag{i % 2}", f'question " {i}', f"answer {i}") for i in range(40)]
    (data / "pairs.tsv").write_text("".join("\t".join(row) + "\n" for row in rows))
    _run_example_gen(tmp_path, **{
        "data.input_dir": str(data), "data.column_names": "tags q a",
        "data.text_column": "q", "data.text_pair_column": "2", "data.label_column": "0",
        "data.quoting": "none", "data.label_delimiter": "|", "data.eval_fraction": "0.25"})
    examples = [e for split in _examples(tmp_path).values() for e in split]
    expected = [{"text": [q], "text_pair": [a], "label": sorted(set(tags.split("|")),
                                                                 key=tags.index)}
                for tags, q, a in rows]
    key = lambda e: e["text"]  # noqa: E731
    assert sorted(examples, key=key) == sorted(expected, key=key)


@e2e
def test_texts_are_redacted_before_examples_are_written_and_counted_per_split(tmp_path):
    data = tmp_path / "data"
    (data / "train").mkdir(parents=True)
    (data / "eval").mkdir()
    (data / "train" / "a.tsv").write_text(
        "text\tlabel\n"
        "écrivez à jean.dupont@exemple.fr ou au +33 6 12 34 56 78\tfr\n"
        "card 4111 1111 1111 1111, ticket TCK-123456\tbilling\n"
        "order 1234567812345678 is not a card\tbilling\n")
    (data / "eval" / "b.tsv").write_text("text\tlabel\nfrom 192.168.0.1 and 2001:db8::1\tit\n")
    splits = _run_example_gen(tmp_path, privacy=True, **{
        "data.input_dir": str(data), "data.presplit": "true", "data.text_column": "text",
        "privacy.custom_patterns": ["ticket=TCK-[0-9]{6}"]})
    assert splits["train"] == [
        ("card [unused6], ticket [unused10]", "billing"),
        ("order 1234567812345678 is not a card", "billing"),
        ("écrivez à [unused1] ou au [unused3]", "fr")]
    assert splits["eval"] == [("from [unused4] and [unused5]", "it")]
    zero = dict.fromkeys(["email", "url", "phone", "ipv4", "ipv6", "card", "iban", "ticket"], 0)
    assert splits["redactions"] == {
        "train": dict(zero, email=1, phone=1, card=1, ticket=1),
        "eval": dict(zero, ipv4=1, ipv6=1)}


def test_hidden_files_are_skipped_unless_the_pattern_names_them(tmp_path):
    (tmp_path / "a.csv").write_text("sentence,label\nx,1\n")
    (tmp_path / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (tmp_path / ".~lock.a.csv#").write_text("x")
    (tmp_path / "sub").mkdir()
    assert executor.input_files(str(tmp_path), "*") == [str(tmp_path / "a.csv")]
    assert executor.input_files(str(tmp_path), ".DS*") == [str(tmp_path / ".DS_Store")]
    # the transform the executor builds checks every file's format before Beam starts
    read = executor.Executor().GetInputSourceToExamplePTransform()
    properties = {"input_base": str(tmp_path), "custom_config": json_format.MessageToJson(
        executor.reader_config_to_proto(ReaderConfig("sentence", "label")))}
    assert isinstance(beam.Pipeline() | read(properties, "*"), beam.PCollection)


def test_the_custom_config_carries_the_reader_settings_as_to_json_writes_them():
    """TextExampleGen takes the reader settings in the format DriftCheck takes them:
    ``ReaderConfig.to_json()``, beside the split method, window and privacy settings."""
    reader = ReaderConfig("q", "l", text_pair_column="a", label_delimiter="|")
    properties = {"custom_config": json_format.MessageToJson(executor.reader_config_to_proto(
        reader, privacy={"redact": "all", "custom_patterns": []}, split_method="stratified"))}
    assert executor._custom_config(properties)[executor.READER_KEY] == reader.to_json()
    assert executor.reader_config_from_exec_properties(properties) == reader


def test_a_spec_compiled_with_reader_settings_as_separate_keys_is_refused():
    """Specs compiled before the one wire format held the settings as separate keys; read
    as defaults they would misread quoting or columns without a word."""
    struct = struct_pb2.Struct()
    struct.update({"text_column": "review", "quoting": "none", "split": "hash"})
    custom = example_gen_pb2.CustomConfig()
    custom.custom_config.Pack(struct)
    properties = {"custom_config": json_format.MessageToJson(custom)}
    with pytest.raises(ValueError,
                       match=r"separate keys \(quoting, text_column\).*compile it again"):
        executor.reader_config_from_exec_properties(properties)


def test_no_input_files_names_the_setting_to_change(tmp_path):
    missing = str(tmp_path / "nonexistent_dir")
    with pytest.raises(InputDataError, match=f"^input folder {missing} does not exist; set "
                                             f"data.input_dir to the folder that holds the "
                                             f"data files$"):
        executor.input_files(missing, "*")
    (tmp_path / ".DS_Store").write_text("x")
    with pytest.raises(InputDataError, match=r"no input files match .*\*.csv \(hidden files "
                                             r"are skipped\); set data.file_pattern to a glob"):
        executor.input_files(str(tmp_path), "*.csv")
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "a.tsv").write_text("sentence\tlabel\nx\t1\n")
    read = executor.Executor().GetInputSourceToExamplePTransform()
    properties = {"input_base": str(tmp_path), "input_config": json.dumps({"splits": [
        {"name": "train", "pattern": "train/*"}, {"name": "eval", "pattern": "eval/*"}]})}
    with pytest.raises(InputDataError, match=r"no input files match .*eval/\* .*data.presplit "
                                             r"reads the data files in the train/ and eval/"):
        _ = beam.Pipeline() | read(properties, "eval/*")


# --- the stratified split (components/text_example_gen/split.py) ------------------------


def _example(text: str, label: str) -> tf.train.Example:
    return executor._to_example(parsing.Record(1, text, label, None, (label,)))


def _stratified(tmp_path, rows, fraction=0.1, name="run") -> dict:
    """{split: sorted (text, label)} of ``rows`` cut by a real Beam pipeline."""
    from components.text_example_gen.split import StratifiedSplit

    out = tmp_path / name
    with beam.Pipeline() as pipeline:
        splits = (pipeline | beam.Create([_example(t, l) for t, l in rows])
                  | StratifiedSplit(fraction))
        for split_name, examples in splits.items():
            (examples
             | f"Line[{split_name}]" >> beam.Map(lambda e: json.dumps(
                 [e.features.feature[k].bytes_list.value[0].decode() for k in ("text", "label")]))
             | f"Write[{split_name}]" >> beam.io.WriteToText(str(out / split_name)))
    found = {}
    for split_name in ("train", "eval"):
        lines = [line for path in glob.glob(str(out / split_name) + "*")
                 for line in open(path, encoding="utf-8").read().splitlines()]
        found[split_name] = sorted(tuple(json.loads(line)) for line in lines)
    return found


def _per_class(rows) -> dict:
    counts = {}
    for _, label in rows:
        counts[label] = counts.get(label, 0) + 1
    return counts


TICKET_CLASSES = {"billing": 150, "login": 100, "shipping": 60, "refund": 35, "legal": 15,
                  "pair": 2, "single": 1}


def _tickets(sizes=TICKET_CLASSES, start=0) -> list:
    return [(f"{label} ticket number {i}", label)
            for label, size in sizes.items() for i in range(start, start + size)]


def test_eval_rows_per_class():
    from components.text_example_gen.split import eval_rows

    assert [eval_rows(n, 0.1) for n in (0, 1, 2, 3, 14, 15, 16, 100, 1000)] == \
        [0, 0, 1, 1, 1, 2, 2, 10, 100]
    assert [eval_rows(n, 0.9) for n in (2, 10, 11)] == [1, 9, 10]  # one row stays in train


def test_stratified_split_gives_every_class_its_share_the_same_on_every_run(tmp_path):
    from components.text_example_gen.split import eval_rows

    rows = _tickets()
    first = _stratified(tmp_path, rows)
    assert sorted(first["train"] + first["eval"]) == sorted(rows)  # every row once
    evaluated, trained = _per_class(first["eval"]), _per_class(first["train"])
    assert evaluated == {label: eval_rows(n, 0.1) for label, n in TICKET_CLASSES.items()
                         if n > 1}  # legal: 2 of 15 (the hash split gave such a class 0-2)
    assert all(trained[label] >= 1 for label in TICKET_CLASSES)
    # The same rows in another order (other files, other Beam bundles): the same split.
    again = _stratified(tmp_path, list(reversed(rows)), name="again")
    assert again == first
    # Rows added later move few of the others (a hash threshold per class, not a rank).
    more = _stratified(tmp_path, rows + _tickets({"billing": 30}, start=150), name="more")
    moved = set(first["eval"]) ^ {row for row in more["eval"] if row in set(rows)}
    assert len(moved) <= 6, moved


def test_stratified_split_keeps_duplicates_together_and_hashes_big_classes(tmp_path,
                                                                         monkeypatch):
    from components.text_example_gen import split

    rows = _tickets({"small": 20}) + [("the same text", "dup")] * 6 + \
        [(f"dup {i}", "dup") for i in range(14)] + _tickets({"big": 400})
    monkeypatch.setattr(split, "EXACT_ROWS", 100)  # "big" is over it: hash within the class
    found = _stratified(tmp_path, rows, fraction=0.25)
    # Six copies never fit in the 5 eval rows "dup" gets: they all train.
    assert found["train"].count(("the same text", "dup")) == 6
    evaluated = _per_class(found["eval"])
    assert evaluated["small"] == 5 and evaluated["dup"] == 5
    assert 70 <= evaluated["big"] <= 130  # about a quarter of 400, by hash


def test_eval_hashes_take_whole_groups_of_copies_that_fit_never_the_last():
    from components.text_example_gen.split import eval_hashes

    assert eval_hashes(3, [(1, 1), (2, 1), (3, 1)], 0.5) == {1, 2}
    assert eval_hashes(2, [(7, 1), (9, 1)], 0.1) == {7}
    assert eval_hashes(8, [(5, 8)], 0.5) == set()  # one text repeated: it trains
    assert eval_hashes(60, [(1, 30), (2, 1), (3, 29)], 0.1) == {2}  # 30 copies > 6 wanted
    # Only the smallest hashes are known (more rows than groups): the last one may go.
    assert eval_hashes(100, [(1, 1), (2, 1)], 0.02) == {1, 2}
