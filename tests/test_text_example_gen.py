"""TextExampleGen as a real TFX component under LocalDagRunner and Beam."""
import glob
import json
import os

import pytest
import tensorflow as tf
from tfx import v1 as tfx

from pipeline.config import load_config
from pipeline.pipeline import example_gen

pytestmark = pytest.mark.e2e  # real (one-component) pipeline runs


def _run_example_gen(tmp_path, **overrides) -> dict:
    config = load_config(None, dict({"output.root": str(tmp_path / "out")}, **overrides))
    component = example_gen(config.data, config.data.input_dir)
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
    (data / "reviews.tsv").write_text("sentence\tlabel\n" + "".join(f"{t}\t{l}\n" for t, l in rows))
    splits = _run_example_gen(tmp_path, **{"data.input_dir": str(data),
                                           "data.eval_fraction": "0.25"})
    assert sorted(splits["train"] + splits["eval"]) == sorted(rows)
    assert 25 <= len(splits["eval"]) <= 75  # about a quarter, by hash

