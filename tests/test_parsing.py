"""TextExampleGen's reader: every format, and bad input named by file and line."""
import csv
import json
import os

import pytest

from components.text_example_gen.parsing import (InputDataError, ReaderConfig, parse,
                                                  read_file, split_buckets)
from tests.conftest import SHARED_DATA

CONFIG = ReaderConfig(text_column="sentence", label_column="label")


def test_tsv_with_multiline_quoted_fields():
    path = os.path.join(SHARED_DATA, "amazon_books", "train.tsv")
    records = read_file(path, CONFIG)
    with open(path, newline="", encoding="utf-8") as f:
        expected = list(csv.reader(f, delimiter="\t"))[1:]
    assert len(records) == len(expected) == 1700
    assert [(r.text, r.label) for r in records] == [tuple(row) for row in expected]
    assert any("\n" in r.text for r in records) and any("\t" in r.text for r in records)
    assert records[1].line == 6  # record 1 spans lines 2-5


def test_csv_with_bom_crlf_quotes_tabs_and_newlines():
    data = ('\ufeffid,sentence,label\r\n'
            '1,"He said ""wow"",\tthen\r\nleft",pos\r\n'
            '2,plain text,neg\r\n'
            '3,"中文，文本 😀",neutral\r\n').encode("utf-8")
    records = parse("x.csv", data, CONFIG)
    assert [(r.line, r.text, r.label) for r in records] == [
        (2, 'He said "wow",\tthen\r\nleft', "pos"), (4, "plain text", "neg"),
        (5, "中文，文本 😀", "neutral")]


def test_jsonl_with_integer_and_string_labels():
    lines = [{"review": "good", "stars": 5}, {"review": "bad", "stars": "1"}, {},
             {"review": "多行\n文本", "stars": 3}]
    data = "\n".join(json.dumps(x, ensure_ascii=False) if x else "" for x in lines)
    records = parse("x.jsonl", data.encode(), ReaderConfig("review", "stars"))
    assert [(r.line, r.text, r.label) for r in records] == [
        (1, "good", "5"), (2, "bad", "1"), (4, "多行\n文本", "3")]


def test_explicit_format_overrides_extension():
    records = parse("data.txt", b"sentence\tlabel\na\t1\n",
                    ReaderConfig("sentence", "label", file_format="tsv"))
    assert [(r.text, r.label) for r in records] == [("a", "1")]


@pytest.mark.parametrize("name,data,message", [
    ("bad.tsv", b"sentence\tlabel\ngood\t1\nno label here\n", "bad.tsv: 1 bad row.*line 3: expected 2 fields, found 1"),
    ("bad.csv", b'sentence,label\n"unterminated,1\nnext,0\n', "bad.csv: .*line 2: malformed row"),
    ("bad.tsv", b"sentence\tlabel\n \t1\nok\t0\n", "bad.tsv: .*line 2: empty text in 'sentence'"),
    ("bad.tsv", b"sentence\tlabel\nok\t\n", "bad.tsv: .*line 2: missing label in 'label'"),
    ("bad.tsv", b"sentence\tlabel\nok\t1\ncaf\xe9\t0\n", r"bad.tsv: line 3: invalid UTF-8 \(byte 0xe9"),
    ("bad.tsv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "bad.tsv: not a text file"),
    ("bad.tsv", b"sentence\tlabel\n", "bad.tsv: no data rows"),
    ("bad.tsv", b"", "bad.tsv: no data rows"),
    ("bad.tsv", b"text\tlabel\nok\t1\n", r"bad.tsv: columns \['sentence'\] not in the header"),
    ("bad.jsonl", b'{"sentence": "a", "label": 1}\n{"sentence": "b",\n', "bad.jsonl: .*line 2: invalid JSON"),
    ("bad.jsonl", b'{"sentence": "a", "label": 0.5}\n', "line 1: 'label' must be a string or an integer"),
    ("bad.parquet", b"PAR1", "cannot tell the format"),
])
def test_bad_input_names_file_and_line(name, data, message):
    with pytest.raises(InputDataError, match=f"(?s){message}"):
        parse(name, data, CONFIG)


def test_many_bad_rows_are_all_counted():
    data = b"sentence\tlabel\n" + b"\t1\n" * 30
    with pytest.raises(InputDataError, match=r"30 bad row\(s\)[\s\S]*and 10 more"):
        parse("x.tsv", data, CONFIG)


def test_split_buckets():
    assert split_buckets(0.1) == (90, 10)
    with pytest.raises(ValueError):
        split_buckets(1.0)
