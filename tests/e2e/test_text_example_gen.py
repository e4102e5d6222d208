"""TextExampleGen as a real TFX component under LocalDagRunner and Beam: formats, splits,
redaction."""
import glob
import json
import os

import tensorflow as tf
from ml_metadata.metadata_store import metadata_store
from tfx import v1 as tfx

from pipeline.config import load_config
from pipeline.pipeline import example_gen
from tests.support.pipeline_runs import write_labelled_tsv
from tests.support.tickets import _per_class, _tickets


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


def test_hash_split_keeps_every_row_once(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    rows = [(f"review number {i}", "pos" if i % 2 else "neg") for i in range(200)]
    write_labelled_tsv(data / "reviews.tsv", rows)
    splits = _run_example_gen(tmp_path, **{"data.input_dir": str(data),
                                           "data.eval_fraction": "0.25", "data.split": "hash"})
    assert sorted(splits["train"] + splits["eval"]) == sorted(rows)
    assert 25 <= len(splits["eval"]) <= 75  # about a quarter, by hash


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


def test_no_eval_text_is_trained_on_whatever_its_label_case_spaces_or_span(tmp_path):
    """The split hashed whole rows per label: the same text under another label, with a
    trailing space or in capitals landed in both splits (13 of 32 eval texts), and an
    older span in the training window repeated the newest one's eval rows. Train rows
    whose text is in eval, as the model reads it, are dropped now, and counted."""
    from ml_metadata.metadata_store import metadata_store

    from components.text_example_gen.split import TRAIN_ROWS_IN_EVAL, text_key

    data = tmp_path / "data"
    texts = [f"review number {i} was fine" for i in range(40)]
    rows = ([(t, "pos") for t in texts] + [(t, "neg") for t in texts[:20]] +
            [(t + " ", "pos") for t in texts[20:]] + [(t.upper(), "pos") for t in texts[:10]])
    write_labelled_tsv(data / "span-2" / "reviews.tsv", rows)
    write_labelled_tsv(data / "span-1" / "reviews.tsv", [(t, "pos") for t in texts])
    splits = _run_example_gen(tmp_path, **{
        "data.input_dir": str(data), "data.span_pattern": "span-{SPAN}",
        "data.window_spans": "2", "data.eval_fraction": "0.2"})

    def key(text):
        example = tf.train.Example()
        example.features.feature["text"].bytes_list.value.append(text.encode())
        return text_key(example)
    in_eval = {key(text) for text, _ in splits["eval"]}
    assert splits["eval"] and not [t for t, _ in splits["train"] if key(t) in in_eval]
    store = metadata_store.MetadataStore(tfx.orchestration.metadata.sqlite_metadata_connection_config(
        str(tmp_path / "metadata.sqlite")))
    [artifact] = store.get_artifacts_by_type("Examples")
    dropped = artifact.custom_properties[TRAIN_ROWS_IN_EVAL].int_value
    assert dropped > 0
    assert len(splits["train"]) + len(splits["eval"]) + dropped == len(rows) + len(texts)
