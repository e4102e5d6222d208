"""TextExampleGen's reader: every format, and bad input named by file and line."""
import csv
import dataclasses
import json
import os
import re

import pytest

from components.text_example_gen import parsing
from components.text_example_gen.parsing import (InputDataError, ReaderConfig, iter_file,
                                                  parse, read_file, split_buckets)
from tests.support.paths import SHARED_DATA

CONFIG = ReaderConfig(text_column="sentence", label_column="label")


@pytest.fixture(autouse=True, params=["256KiB", "5B"])
def chunk_bytes(request, monkeypatch):
    """Every test reads its file in 256 KiB chunks, as files are read, and again in chunks of
    5 bytes (after the 64 bytes the reader looks at first), so that line ends, characters
    and quotes are cut at every place a chunk can end."""
    if request.param == "5B":
        monkeypatch.setattr(parsing, "CHUNK_BYTES", 5)


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
    # Transform's vocabulary drops a token with a line break: its rows trained as id -1
    ("bad.jsonl", b'{"sentence": "a", "label": "mixed\\nfeelings"}\n',
     "bad.jsonl: .*line 1: a label in 'label' holds a line break"),
    ("bad.csv", b'sentence,label\nok,"mixed\r\nfeelings"\n', "line 2: a label in 'label' holds"),
    ("bad.tsv", b"sentence\tlabel\nok\t1\ncaf\xe9\t0\n", r"bad.tsv: line 3: invalid UTF-8 \(byte 0xe9"),
    # after a BOM: the byte and offset in the file, not in the text after the BOM
    ("bad.tsv", b"\xef\xbb\xbfsentence\tlabel\ncaf\xe9\t0\n",
     r"bad.tsv: line 2: invalid UTF-8 \(byte 0xe9 at offset 21\)"),
    ("bad.tsv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "bad.tsv: not a text file"),
    ("bad.tsv", b"sentence\tlabel\n", "bad.tsv: no data rows"),
    ("bad.tsv", b"", "bad.tsv: no data rows"),
    ("bad.tsv", b"text\tlabel\nok\t1\n", r"bad.tsv: columns \['sentence'\] not in the header"),
    ("bad.jsonl", b'{"sentence": "a", "label": 1}\n{"sentence": "b",\n', "bad.jsonl: .*line 2: invalid JSON"),
    ("bad.jsonl", b'{"sentence": "a", "label": 0.5}\n', "line 1: 'label' must be a string, an integer or true/false"),
    ("bad.parquet", b"PAR1", "cannot tell the format from the extension '.parquet'.*data.file_pattern"),
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


def test_the_stratified_split_gets_the_exact_fraction_and_the_hash_split_two_sides():
    """0.125 reached the stratified split as 0.12 (100 buckets), 0.004 as buckets (100,
    0), which TFX refused inside TextExampleGen; multi-label data splits by hash."""
    from components.text_example_gen.executor import stratified_fraction
    from pipeline.config import load_config
    from pipeline.pipeline import example_gen

    def fraction(**overrides):
        config = load_config(None, overrides)
        component = example_gen(config.data, config.data.input_dir)
        return stratified_fraction({k: v for k, v in component.exec_properties.items()})
    assert fraction(**{"data.eval_fraction": 0.125}) == 0.125
    assert fraction(**{"data.eval_fraction": 0.004}) == 0.004
    assert fraction(**{"data.eval_fraction": 0.125, "data.split": "hash"}) is None
    with pytest.raises(ValueError, match=r"0.004 leaves one split empty with 100 hash buckets"
                                         r".*several labels per text"):
        load_config(None, {"data.eval_fraction": 0.004, "data.label_delimiter": "|"})


# Reading files as they come: no header, columns by position, several text columns,
# GLUE-style quoting, sentence pairs, several labels per text.

NEWS = (b'"3","Fears for T N pension after talks","Unions representing workers at Turner '
        b'Newall say they are ""disappointed"" after talks."\n'
        b'"4","The Race is On","SPACE.com - TORONTO, Canada -- A second team of rocketeers"\n')


def test_headerless_csv_by_names_joins_text_columns():
    config = ReaderConfig(text_column="title,description", label_column="class",
                          column_names=("class", "title", "description"),
                          text_separator=". ")
    records = parse("news.csv", NEWS, config)
    assert [(r.line, r.label) for r in records] == [(1, "3"), (2, "4")]
    assert records[0].text == ('Fears for T N pension after talks. Unions representing '
                               'workers at Turner Newall say they are "disappointed" after '
                               'talks.')
    by_position = parse("news.csv", NEWS, ReaderConfig(
        text_column="1, 2", label_column="0", column_names=("a", "b", "c"),
        text_separator=". "))
    assert by_position == records


def test_rows_swallowed_by_a_quote_that_is_text_are_refused_not_merged():
    """GLUE-style text quotes under data.quoting csv: the quote opening row 1 closed on
    row 3, and three rows became one record with row 3's label, with no error."""
    data = (b'sentence\tlabel\n" the film is bad\t0\nreally good\t1\nplain ending "\t1\n'
            b'ok\t0\n')
    with pytest.raises(InputDataError, match=r"line 2: a quoted field runs over lines 2-4, "
                                             r"which read as rows of their own.*data.quoting "
                                             r"none"):
        parse("glue.tsv", data, CONFIG)
    records = parse("glue.tsv", data, dataclasses.replace(CONFIG, quoting="none"))
    assert [r.label for r in records] == ["0", "1", "1", "0"]
    # a text over lines that do not read as rows stays one text
    multi = b'sentence\tlabel\n"line one\nline\ttwo\nline three"\t1\n'
    assert parse("multi.tsv", multi, CONFIG)[0].text == "line one\nline\ttwo\nline three"
    # in CSV a text's line with one comma is common: never taken for a row
    letter = b'sentence,label\n"Hi John,\nthe product broke,\nsadly",negative\n'
    assert parse("mail.csv", letter, CONFIG)[0].text == "Hi John,\nthe product broke,\nsadly"


def test_headerless_file_read_with_a_header_says_which_setting_to_use():
    with pytest.raises(InputDataError, match=r"news.csv: columns \['sentence'\] not in the "
                       r"header \(3 columns: '3, Fears for T N pension after talks, .*set "
                       r"data.text_column .*name its columns with data.column_names"):
        parse("news.csv", NEWS, CONFIG)


def test_mrpc_as_shipped_with_quoting_none_and_a_pair():
    path = os.path.join(SHARED_DATA, "mrpc", "train.tsv")
    config = ReaderConfig(text_column="#1 String", text_pair_column="#2 String",
                          label_column="Quality", quoting="none")
    records = read_file(path, config)
    assert len(records) == 3667
    assert (records[0].text, records[0].text_pair, records[0].label) == (
        'Amrozi accused his brother , whom he called " the witness " , of deliberately '
        'distorting his evidence .',
        'Referring to him as only " the witness " , Amrozi accused his brother of '
        'deliberately distorting his evidence .', "1")
    assert {r.label for r in records} == {"0", "1"}
    assert read_file(path, ReaderConfig(text_column="3", text_pair_column="4",
                                        label_column="0", quoting="none")) == records
    with pytest.raises(InputDataError, match=r"(?s)train.tsv: 1 bad row.*line 15: malformed "
                                             r"row: .*set data.quoting none"):
        read_file(path, ReaderConfig(text_column="#1 String", text_pair_column="#2 String",
                                     label_column="Quality"))


def test_several_labels_per_text():
    data = b"text\ttags\nmy card was charged twice\tbilling| refund |billing\nhi\tgreeting\n"
    records = parse("t.tsv", data, ReaderConfig("text", "tags", label_delimiter="|"))
    assert [r.labels for r in records] == [("billing", "refund"), ("greeting",)]
    lines = b'{"t": "a", "tags": ["x", 2]}\n{"t": "b", "tags": "y|z"}\n'
    records = parse("t.jsonl", lines, ReaderConfig("t", "tags", label_delimiter="|"))
    assert [r.labels for r in records] == [("x", "2"), ("y", "z")]


def test_a_json_list_label_holding_the_delimiter_is_refused():
    """["a|b", "c"] would be one label "a|b" here and two ("a", "b") once written with
    data.label_delimiter, as a CSV export or the feedback span writes it."""
    lines = b'{"t": "a", "tags": ["x", "y"]}\n{"t": "b", "tags": ["a|b", "c"]}\n'
    with pytest.raises(InputDataError, match=r"line 2: 'tags' item 'a\|b' holds "
                                             r"data.label_delimiter '\|'"):
        parse("t.jsonl", lines, ReaderConfig("t", "tags", label_delimiter="|"))


def test_jsonl_pairs_and_joined_keys():
    lines = b'{"q": "why?", "title": "A", "body": "because", "rel": 1}\n'
    records = parse("qa.jsonl", lines, ReaderConfig(
        "q", "rel", text_pair_column="title,body", text_separator=": "))
    assert [(r.text, r.text_pair, r.label) for r in records] == [("why?", "A: because", "1")]


@pytest.mark.parametrize("name,data,config,message", [
    ("n.csv", b"1,a,b\n2,c\n", ReaderConfig("1", "0", column_names=("l", "t", "d")),
     r"n.csv: 1 bad row.*line 2: expected 3 fields \(data.column_names\), found 2"),
    ("n.csv", b"1,a\n", ReaderConfig("5", "0", column_names=("l", "t")),
     r"n.csv: columns \['5'\] not in data.column_names \['l', 't'\]; set data.text_column"),
    ("n.tsv", b"s\tp\tl\na\t\t1\n", ReaderConfig("s", "l", text_pair_column="p"),
     r"line 2: empty text pair in 'p'"),
    ("n.tsv", b"s\tl\na\t1\n", ReaderConfig("s", "l", text_pair_column="q"),
     r"columns \['q'\] not in the header \(2 columns: 's, l'\); set data.text_pair_column"),
    ("n.tsv", b"s\tl\na\tb\t1\n", ReaderConfig("s", "l", quoting="none"),
     r"line 2: expected 2 fields, found 3 \(a field holds the delimiter\? .*data.quoting csv"),
    ("n.jsonl", b'{"s": "a", "l": 1}\n', ReaderConfig("s", "l", column_names=("s", "l")),
     r"data.column_names is for CSV/TSV files without a header"),
    ("n.jsonl", b'{"s": "a", "l": ["x", "y"]}\n', ReaderConfig("s", "l"),
     r"line 1: 'l' must be .*a list of labels needs data.label_delimiter"),
    ("n.tsv", b"s\tl\na\t | \n", ReaderConfig("s", "l", label_delimiter="|"),
     r"line 2: missing label in 'l'"),
])
def test_bad_reader_settings_name_the_setting(name, data, config, message):
    with pytest.raises(InputDataError, match=f"(?s){message}"):
        parse(name, data, config)


def test_quotes_escaped_with_a_backslash_get_a_hint_that_reads_them():
    """Spark and MySQL write a quote inside a quoted field as \\"; RFC 4180 doubles it.
    data.quoting none (the generic hint) would keep every quote and backslash as text."""
    data = b'text,label\n"He said \\"hi\\", then left",1\n"fine",0\n'
    with pytest.raises(InputDataError) as error:
        parse("spark.csv", data, ReaderConfig("text", "label"))
    message = str(error.value)
    assert "line 2: malformed row" in message and "escaped with a backslash" in message
    assert "doubled" in message and "data.quoting none" not in message
    for line_end in (b"\r\n", b"\r"):  # old Mac line ends: the record's lines too
        with pytest.raises(InputDataError, match="escaped with a backslash"):
            parse("spark.csv", data.replace(b"\n", line_end), ReaderConfig("text", "label"))
    fixed = data.replace(b'\\"', b'""')
    assert [r.text for r in parse("spark.csv", fixed, ReaderConfig("text", "label"))] == [
        'He said "hi", then left', "fine"]


def test_a_backslash_before_a_closing_quote_elsewhere_does_not_change_the_hint():
    """A valid field ending in a backslash ("C:\\temp\\") on one line; a bare quote
    breaks another: the hint is about that row, not the Spark one."""
    data = b'text,label\n"C:\\temp\\",1\n"hi" to all,0\n'
    with pytest.raises(InputDataError) as error:
        parse("paths.csv", data, ReaderConfig("text", "label"))
    assert "line 3: malformed row" in str(error.value)
    assert "set data.quoting none" in str(error.value)
    assert "backslash" not in str(error.value)


def test_a_headerless_first_row_is_quoted_once_and_short():
    """The first row of a file without a header is data: each of its fields was quoted
    (40 characters each), so a name and a postal address came through whole."""
    row = "Jane Roe,12 Baker Street London NW1 6XE,a long and lovely review of it,1"
    with pytest.raises(InputDataError) as error:
        parse("n.csv", (row + "\n").encode(), ReaderConfig("review", "label"))
    message = str(error.value)
    assert "not in the header (4 columns: 'Jane Roe, 12 Baker Street London NW1 6X…')" in message
    assert "lovely" not in message


def test_unknown_quoting_is_refused():
    with pytest.raises(ValueError, match="data.quoting must be one of"):
        ReaderConfig(quoting="single")


def test_errors_quote_rows_only_as_short_redacted_excerpts():
    first_row = ("Write to anna.svensson@example.se or call +46 70 123 45 67 about order "
                 "4111 1111 1111 1111, nothing else")
    with pytest.raises(InputDataError) as headerless:
        parse("tickets.csv", f"{first_row},billing\n".encode(), CONFIG)
    with pytest.raises(InputDataError) as bad_label:
        parse("tickets.jsonl", json.dumps({"sentence": "x", "label": {
            "from": "anna.svensson@example.se"}}).encode(), CONFIG)
    assert "'Write to [unused1] or call [unused3] ab…'" in str(headerless.value)
    assert 'found {"from": "[unused1]"}' in str(bad_label.value)
    for message in (str(headerless.value), str(bad_label.value)):
        for secret in ("anna.svensson", "example.se", "70 123", "4111"):
            assert secret not in message


# Files as they come, found in acceptance testing: wrong keys, odd line separators,
# duplicated columns, UTF-16, booleans, many bad rows.

def _jsonl(*objects) -> bytes:
    return "".join(json.dumps(obj, ensure_ascii=False) + "\n" for obj in objects).encode()


def test_jsonl_key_in_no_object_is_one_error_naming_the_setting():
    news = _jsonl({"title": "Stocks rise", "description": "Markets rallied", "label": 3},
                  {"title": "Team wins", "description": "Striker scored", "label": 2})
    with pytest.raises(InputDataError, match=r"^a.jsonl: none of the 2 JSON objects has the "
                       r"key 'descripton' \(data.text_column\); their keys: \['title', "
                       r"'description', 'label'\]; set data.text_column to the keys of the "
                       r"text$"):
        parse("a.jsonl", news, ReaderConfig("title,descripton", "label"))
    rows = _jsonl(*({"text": f"row {i}", "lable": "a"} for i in range(200)))
    with pytest.raises(InputDataError) as error:
        parse("b.jsonl", rows, CONFIG)
    message = str(error.value)
    assert message == (
        "b.jsonl: none of the 200 JSON objects has the key 'sentence' (data.text_column); "
        "none of the 200 JSON objects has the key 'label' (data.label_column); their "
        "keys: ['text', 'lable']; set data.text_column to the key of the text, "
        "data.label_column to the key of the label")
    with pytest.raises(InputDataError, match=r"key 'second' \(data.text_pair_column\)"):
        parse("c.jsonl", _jsonl({"sentence": "a", "label": 1}),
              ReaderConfig("sentence", "label", text_pair_column="second"))


def test_jsonl_key_missing_from_some_objects_is_named_per_row():
    rows = _jsonl({"sentence": "a", "label": 1}, {"sentence": "b", "lable": 0},
                  {"sentence": None, "label": 1}, {"sentence": "", "label": 1})
    with pytest.raises(InputDataError, match=(
            r"^x.jsonl: 3 bad row\(s\):\n  line 2: no key 'label' \(data.label_column\); "
            r"the object's keys: \['sentence', 'lable'\]\n  line 3: empty text in "
            r"'sentence'\n  line 4: empty text in 'sentence'$")):
        parse("x.jsonl", rows, CONFIG)


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85", "\x0c", "\x0b", "\x1e"])
def test_unicode_line_separators_inside_texts_are_text(separator):
    """str.splitlines() splits at these; a JSON Lines file is split at LF only (CRLF kept
    working), and the line numbers after such a text stay right."""
    texts = [f"first{separator}part", "second", f"third{separator}"]
    rows = "".join(f'{{"sentence": "{text}", "label": {i}}}\r\n'  # raw, as written
                   for i, text in enumerate(texts))
    records = parse("x.jsonl", rows.encode(), CONFIG)
    assert [(r.line, r.text) for r in records] == [(1, texts[0]), (2, "second"),
                                                   (3, texts[2])]
    with pytest.raises(InputDataError, match=r"1 bad row\(s\):\n  line 4: 'label' must"):
        parse("x.jsonl", (rows + '{"sentence": "x", "label": 0.5}\n').encode(), CONFIG)
    for name, delimiter in (("x.csv", ","), ("x.tsv", "\t")):
        data = f"sentence{delimiter}label\r\n" + "".join(
            f"{text}{delimiter}{i}\r\n" for i, text in enumerate(texts))
        records = parse(name, data.encode(), CONFIG)
        assert [(r.line, r.text) for r in records] == [(2, texts[0]), (3, "second"),
                                                       (4, texts[2])]
        with pytest.raises(InputDataError, match=r"1 bad row\(s\):\n  line 5: empty text"):
            parse(name, (data + f"{delimiter}1\n").encode(), CONFIG)


@pytest.mark.parametrize("data", [
    b'3,"Title","Description"\n2,"Other","More"\n',  # a numeric label cell
    b'pos,a sentence of five words,x\nneg,another one,y\n',  # a sentence-long text cell
])
def test_a_first_row_that_reads_like_data_is_not_taken_as_a_header(data):
    with pytest.raises(InputDataError, match=r"h.csv: line 1 is taken as the header .*reads "
                                             r"like data .*data.column_names"):
        parse("h.csv", data, ReaderConfig("1", "0"))
    named = parse("h.csv", data, ReaderConfig("1", "0", column_names=("l", "t", "n")))
    assert len(named) == 2  # with data.column_names nothing is lost
    header = b"label,text,n\n" + data  # a real header: positions read every data row
    assert len(parse("h.csv", header, ReaderConfig("1", "0"))) == 2


@pytest.mark.parametrize("data,config,message", [
    (b"text,label,text\nhello,1,world\n", ReaderConfig("text", "label"),
     r"^d.csv: the header has 2 columns named 'text' \(0-based positions \[0, 2\]\), which "
     r"data.text_column uses; rename them, or set data.text_column to a 0-based position$"),
    (b"text,label,label\nhello,1,0\n", ReaderConfig("text", "label"),
     r"the header has 2 columns named 'label' .*which data.label_column uses"),
    (b"a,1,b\n", ReaderConfig("t", "l", column_names=("t", "l", "t")),
     r"^d.csv: data.column_names has 2 columns named 't' .*data.text_column"),
])
def test_a_duplicated_column_the_settings_use_is_refused(data, config, message):
    with pytest.raises(InputDataError, match=message):
        parse("d.csv", data, config)


def test_duplicated_columns_the_settings_do_not_use_or_pick_by_position_are_read():
    data = b"text,label,note,note\nhello,1,x,y\n"
    assert [(r.text, r.label) for r in parse("d.csv", data, ReaderConfig("text", "label"))] \
        == [("hello", "1")]
    by_position = parse("d.csv", b"text,label,text\nhello,1,world\n",
                        ReaderConfig("0,2", "label"))
    assert [r.text for r in by_position] == ["hello world"]


@pytest.mark.parametrize("label_column,message", [
    ("label,text", r"data.label_column names one column, not \['label', 'text'\]; several "
                   r"labels per row go in that one field, split by data.label_delimiter"),
    (" , ", r"data.label_column is empty"),
])
def test_label_column_names_exactly_one_column(label_column, message):
    with pytest.raises(ValueError, match=message):
        ReaderConfig("text", label_column)


TSV = "sentence\tlabel\r\nhello\t1\r\n"


@pytest.mark.parametrize("data,message", [
    (TSV.encode("utf-16"), r"UTF-16 text \(byte order mark FF FE, as in Excel's 'Unicode "
                           r"text'\); "),
    (b"\xfe\xff" + TSV.encode("utf-16-be"), r"UTF-16 text \(byte order mark FE FF"),
    (TSV.encode("utf-32"), r"UTF-32 text \(byte order mark FF FE 00 00"),
    (TSV.encode("utf-16-le"), r"not a text file \(NUL byte at offset 1, line 1\); it looks "
                              r"like UTF-16 text without a byte order mark: "),
], ids=["utf-16-le-bom", "utf-16-be-bom", "utf-32", "utf-16-no-bom"])
def test_utf16_and_utf32_files_are_named_as_such(data, message):
    with pytest.raises(InputDataError, match=f"^u.tsv: {message}.*re-encode the file as "
                                             f"UTF-8$"):
        parse("u.tsv", data, CONFIG)


def test_json_booleans_are_labels_true_and_false_alone_or_in_a_list():
    rows = _jsonl({"sentence": "good", "label": True}, {"sentence": "bad", "label": False},
                  {"sentence": "meh", "label": [True, "unsure"]})
    records = parse("b.jsonl", rows, ReaderConfig("sentence", "label", label_delimiter="|"))
    assert [(r.label, r.labels) for r in records] == [
        ("true", ("true",)), ("false", ("false",)), ("true|unsure", ("true", "unsure"))]
    single = parse("b.jsonl", rows.rsplit(b"\n", 2)[0] + b"\n", CONFIG)
    assert [r.labels for r in single] == [("true",), ("false",)]
    with pytest.raises(InputDataError, match=r"line 3: 'label' must be .*found \[true, "
                                             r"\"unsure\"\]; a list of labels needs"):
        parse("b.jsonl", rows, CONFIG)


def test_bad_rows_are_listed_in_line_order():
    """Some problems are found while framing rows, others while checking them: the list
    (and the first 20 shown) follows the file."""
    data = (b"sentence\tlabel\n" + b"\t1\n" * 24 + b"too\tmany\tfields\n"
            + b"ok\t1\n" + b"\t1\n")
    with pytest.raises(InputDataError) as error:
        parse("x.tsv", data, CONFIG)
    lines = [int(line.split(":")[0].split()[1]) for line in
             str(error.value).splitlines()[1:] if line.strip().startswith("line ")]
    assert str(error.value).startswith("x.tsv: 26 bad row(s):")
    assert lines == list(range(2, 22)) and str(error.value).endswith("... and 6 more")
    jsonl = _jsonl({"sentence": "", "label": 1}) + b"{oops\n" + _jsonl(
        {"sentence": "", "label": 1})
    with pytest.raises(InputDataError, match=r"line 1: empty text.*\n  line 2: invalid JSON"
                                             r".*\n  line 3: empty text"):
        parse("x.jsonl", jsonl, CONFIG)


def test_the_reader_settings_travel_as_one_json_text():
    """``to_json``/``from_json``: the one wire format of the reader settings (TextExampleGen's
    custom config, DriftCheck's parameter); a bad setting is refused on arrival too."""
    config = ReaderConfig("q", "l", column_names=("q", "a", "l"), quoting="none",
                          text_pair_column="a", label_delimiter="|")
    assert json.loads(config.to_json()) == {
        "file_format": "auto", "text_column": "q", "label_column": "l",
        "column_names": ["q", "a", "l"], "quoting": "none", "text_separator": " ",
        "text_pair_column": "a", "label_delimiter": "|"}
    assert ReaderConfig.from_json(config.to_json()) == config
    with pytest.raises(ValueError, match="data.quoting must be one of"):
        ReaderConfig.from_json('{"quoting": "single"}')


# -- columns read twice, a header read as data, what the probes of stop 35 got through ------
@pytest.mark.parametrize("text,label,pair,message", [
    ("sentence,label", "label", "", r"data.label_column 'label' is also read as text "
                                    r"\(data.text_column\)"),
    ("s", "l", "s", r"'s' is read as both data.text_column and data.text_pair_column"),
    ("s", "l", "p,l", r"data.label_column 'l' is also read as text \(data.text_pair_column\)"),
    ("a,a", "l", "", r"data.text_column names 'a' twice: its text would be joined to itself"),
])
def test_a_column_named_twice_by_the_settings_is_refused(text, label, pair, message):
    """The label read as text too: the model trains on its own answer, and passes the gate."""
    with pytest.raises(ValueError, match=message):
        ReaderConfig(text, label, text_pair_column=pair)


@pytest.mark.parametrize("name,data,config,message", [
    ("o.csv", b"sentence,label\nhello,1\n", ReaderConfig("1", "label"),
     r"^o.csv: data.text_column and data.label_column both pick the column 'label' "
     r"\(0-based position 1\)"),
    ("o.tsv", b"s\tp\tl\na\tb\t1\n", ReaderConfig("s", "l", text_pair_column="0"),
     r"data.text_column and data.text_pair_column both pick the column 's' \(0-based "
     r"position 0\)"),
    ("o.csv", b"sentence,label\nhello,1\n", ReaderConfig("sentence,0", "label"),
     r"data.text_column picks the column 'sentence' \(0-based position 0\) of the header"),
])
def test_a_column_picked_twice_by_name_and_position_is_refused(name, data, config, message):
    with pytest.raises(InputDataError, match=message):
        parse(name, data, config)


@pytest.mark.parametrize("data,config,message", [
    # two exports joined: the second one's header is a row
    (b"sentence,label\nhello,1\nsentence,label\nbye,0\n", CONFIG,
     r"line 3: the header row again \(files joined together\?\)"),
    (b"sentence,label\nhello,1\n\xef\xbb\xbfsentence,label\nbye,0\n", CONFIG,
     r"line 3: the header row again"),
    # data.column_names set on a file that has a header row
    (b"sentence,label\nhello,1\n", ReaderConfig("sentence", "label",
                                                column_names=("sentence", "label")),
     r"line 1: a header row, but data.column_names says the file has none: leave "
     r"data.column_names empty"),
])
def test_a_header_row_among_the_data_is_refused_not_a_class(data, config, message):
    """It became a row with the label 'label' (a class of its own under an inferred schema)."""
    with pytest.raises(InputDataError, match=f"(?s)^h.csv: 1 bad row.*{message}"):
        parse("h.csv", data, config)


def test_long_fields_are_read_whatever_their_length():
    """Python's csv refused fields over 131,072 characters, advising data.quoting none
    (which failed the same way); JSON Lines took them."""
    text = "word " * 60_000
    for name, data in (("l.csv", f"sentence,label\n{text},1\n"),
                       ("l.tsv", f"sentence\tlabel\n{text}\t1\n")):
        records = parse(name, data.encode(), CONFIG)
        assert [(len(r.text), r.label) for r in records] == [(len(text), "1")]


@pytest.mark.parametrize("row,where", [
    ({"sentence": "cut \ud83d", "label": 0}, "'sentence'"),
    ({"sentence": "fine", "label": "x\udc00"}, "'label'"),
])
def test_a_lone_surrogate_in_json_is_refused_with_its_line(row, where):
    """json.loads accepts "\\ud83d" (half an emoji); it failed later, in Beam, with no
    file or line, when the text was encoded as UTF-8."""
    data = _jsonl({"sentence": "ok", "label": 1}) + json.dumps(row).encode()
    with pytest.raises(InputDataError, match=f"(?s)^s.jsonl: 1 bad row.*line 2: a lone "
                                             f"UTF-16 surrogate .*in {where}"):
        parse("s.jsonl", data, CONFIG)


def test_a_json_key_the_settings_use_given_twice_is_refused():
    data = b'{"sentence": "a", "label": 1, "label": 0}\n{"sentence": "b", "note": 1, ' \
           b'"note": 2, "label": 1}\n'
    with pytest.raises(InputDataError, match=r"(?s)^d.jsonl: 1 bad row.*line 1: the key "
                                             r"'label' twice \(data.label_column\)"):
        parse("d.jsonl", data, CONFIG)


def test_one_number_written_two_ways_is_refused():
    """'1' and '1.0' (a float column written by pandas) became two classes."""
    data = b"sentence,label\na,1\nb,0\nc,1.0\n"
    with pytest.raises(InputDataError, match=r"line 4: label '1.0' is the number of label "
                                             r"'1' \(line 2\) written another way"):
        parse("n.csv", data, CONFIG)
    # Labels of their own, compared as text: zero-padded codes, versions, exponents,
    # identifiers past a double's precision, other scripts' digits.
    distinct = ["1", "01", "1.1", "1.10", "1e3", "1000", "12345678901234567",
                "12345678901234568", "\u0661", "-0", "0"]
    rows = "".join(f"t{i},{label}\n" for i, label in enumerate(distinct))
    records = parse("n.csv", f"sentence,label\n{rows}".encode(), CONFIG)
    assert [r.label for r in records] == distinct


def test_line_numbers_count_line_feeds_only():
    """A bare CR inside a quoted field counted as a line break: every later line number
    was off by one. One in an unquoted field split the row in two."""
    data = b'sentence,label\n"a\rb",1\n"c\r\nd",1\nbad\n'
    with pytest.raises(InputDataError, match=r"line 5: expected 2 fields, found 1"):
        parse("c.csv", data, CONFIG)
    with pytest.raises(InputDataError, match=r"line 2: malformed row: a carriage return "
                                             r"inside an unquoted field"):
        parse("c.tsv", b"sentence\tlabel\nhel\rlo\t1\n",
              ReaderConfig("sentence", "label", quoting="none"))
    old_mac = parse("m.csv", b"sentence,label\ra,1\rb,0\r", CONFIG)  # CR-only line ends
    assert [(r.line, r.text) for r in old_mac] == [(2, "a"), (3, "b")]
    # ... also with a LF inside a quoted field, or a last LF
    old_mac = parse("m.csv", b'sentence,label\r"a\nb",1\rc,0\r\n', CONFIG)
    assert [r.text for r in old_mac] == ["a\nb", "c"]
    # '\r\r\n' (Python's csv on Windows without newline=''), and a CR in a quoted field
    # of the first row, are LF files
    with pytest.raises(InputDataError, match=r"line 4: expected 2 fields, found 1"):
        parse("w.csv", b"sentence,label\r\r\na,1\r\r\nb,0\r\r\nbad\r\r\n", CONFIG)
    named = ReaderConfig("t", "l", column_names=("t", "l"))
    with pytest.raises(InputDataError, match=r"line 3: expected 2 fields \(data.column_names"
                                             r"\), found 3"):
        parse("q.csv", b'"a\rb",1\nc,0\nd,x,y\n', named)


def test_blank_lines_before_the_header_are_skipped():
    records = parse("b.csv", b"\n  \nsentence,label\na,1\n", CONFIG)
    assert [(r.line, r.text) for r in records] == [(4, "a")]
    with pytest.raises(InputDataError, match=r"no data rows"):
        parse("b.tsv", b"   \n\n", CONFIG)


@pytest.mark.parametrize("name,data,config", [
    ("d.csv.gz", b"\x1f\x8b\x08\x00", CONFIG),
    ("d.csv", b"\x1f\x8b\x08\x00\x00", CONFIG),
    ("d.zip", b"PK\x03\x04\x14\x00", ReaderConfig("sentence", "label", file_format="csv")),
    ("d.tsv", b"BZh91AY&SY\x00\x01", CONFIG),
])
def test_compressed_files_are_named_as_such(name, data, config):
    with pytest.raises(InputDataError, match=r"compressed .*decompress it"):
        parse(name, data, config)
    # text that merely starts like a magic number is text
    named = ReaderConfig("t", "l", column_names=("t", "l"))
    assert [r.text for r in parse("d.csv", b"BZh is how it starts,1\n", named)] == [
        "BZh is how it starts"]


def test_error_excerpts_also_replace_the_runs_custom_patterns():
    """A row quoted in an error reaches the run's error, history and report: the run's own
    types (privacy.custom_patterns) are replaced there too, before the cut, so no part of
    one is quoted (cut as it came, the second ticket here would show as 'TCK-7751…')."""
    tickets = [("ticket", "TCK-[0-9]{6}")]
    first_row = "about TCK-482913, call us, see TCK-775102,billing"
    with pytest.raises(InputDataError) as headerless:
        parse("t.csv", f"{first_row}\n".encode(), CONFIG, custom_patterns=tickets)
    with pytest.raises(InputDataError) as bad_label:
        parse("t.jsonl", json.dumps({"sentence": "x", "label": {"ref": "TCK-482913"}}).encode(),
              CONFIG, custom_patterns=tickets)
    assert "'about [unused10], call us, see [unused1…'" in str(headerless.value)
    assert 'found {"ref": "[unused10]"}' in str(bad_label.value)
    for message in (str(headerless.value), str(bad_label.value)):
        assert "TCK" not in message and "4829" not in message and "7751" not in message
    with pytest.raises(InputDataError) as without:  # the built-in types alone, as before
        parse("t.csv", f"{first_row}\n".encode(), CONFIG)
    assert "'about TCK-482913, call us, see TCK-7751…'" in str(without.value)
    # JSON keys, whose excerpts are cached: quoted without the patterns first, then with
    keyed = json.dumps({"sentence": "x", "lbl": 1, "TCK-482913": "y"}).encode()
    for patterns, shown in (((), "'TCK-482913'"), (tickets, "'[unused10]'")):
        with pytest.raises(InputDataError, match=r"their keys: \['sentence', 'lbl', "
                           + re.escape(shown)):
            parse("k.jsonl", keyed, CONFIG, custom_patterns=patterns)


class _CountingReads:
    """A binary file that counts the bytes read from it."""

    def __init__(self, path):
        self.file, self.read_bytes = open(path, "rb"), 0

    def read(self, size=-1):
        data = self.file.read(size)
        self.read_bytes += len(data)
        return data

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()


@pytest.mark.parametrize("name,row", [("big.csv", '"{i}: a review, ""quoted""",1\n'),
                                      ("big.jsonl", '{{"sentence": "{i}: a review", "label": 1}}\n')])
def test_a_file_is_read_a_chunk_at_a_time_and_its_bad_rows_named_at_the_end(
        tmp_path, name, row):
    """A file was read whole, then decoded, split and parsed whole: a worker held several
    times the file's size at once. Now the first record comes after one chunk, and the bad
    rows, found on the way, fail the file after its last good record."""
    path = tmp_path / name
    header = "sentence,label\n" if name.endswith(".csv") else ""
    rows = [row.format(i=i) for i in range(40_000)]
    rows[30_000] = rows[30_000].replace("1", "")  # a missing label, far into the file
    path.write_text(header + "".join(rows), encoding="utf-8")
    opened = []

    def opener(p):
        opened.append(_CountingReads(p))
        return opened[0]

    records = iter_file(str(path), CONFIG, opener)
    first = next(records)
    assert first.text == "0: a review" + (', "quoted"' if name.endswith(".csv") else "")
    assert opened[0].read_bytes <= 64 + parsing.CHUNK_BYTES < path.stat().st_size
    with pytest.raises(InputDataError, match=r"1 bad row\(s\):\n  line 3000\d: "):
        for count, record in enumerate(records, start=2):
            pass
    assert count == 39_999 and record.text.startswith("39999: ")
    assert opened[0].read_bytes == path.stat().st_size


def test_a_multibyte_character_or_a_crlf_cut_by_a_chunk_reads_whole(monkeypatch):
    """Chunk ends inside a character, between CR and LF, and inside a quoted field."""
    data = ("sentence,label\r\n" + "".join(f'"文 {i}\r\nzwei 😀",{i % 2}\r\n'
                                             for i in range(300))).encode("utf-8")
    expected = [(2 + 2 * i, f"文 {i}\r\nzwei 😀", str(i % 2)) for i in range(300)]
    for size in (1, 2, 3, 7, 64, 1000):
        monkeypatch.setattr(parsing, "CHUNK_BYTES", size)
        assert [(r.line, r.text, r.label) for r in parse("c.csv", data, CONFIG)] == expected
    bad = data[:5000] + b"\xe9" + data[5000:]
    line = data[:5000].count(b"\n") + 1
    for size in (1, 2, 3, 7, 64, 1000):
        monkeypatch.setattr(parsing, "CHUNK_BYTES", size)
        with pytest.raises(InputDataError, match=rf"line {line}: invalid UTF-8 \(byte 0xe9 at "
                                                 rf"offset 5000\)"):
            parse("c.csv", bad, CONFIG)
    cut = data + "é".encode("utf-8")[:1]  # the file ends inside a character
    with pytest.raises(InputDataError, match=rf"line 602: invalid UTF-8 \(byte 0xc3 at "
                                             rf"offset {len(data)}\)"):
        parse("c.csv", cut, CONFIG)


def test_a_json_error_names_the_column_of_its_own_line():
    """Lines kept their line feed: a line cut short was reported at column 1 (of the
    next line, as the JSON parser counts past the line feed)."""
    with pytest.raises(InputDataError, match=r"line 1: invalid JSON: Expecting ',' "
                                             r"delimiter \(column 26\)"):
        parse("x.jsonl", b'{"sentence":"a","label":1\n{"sentence":"b","label":0}\n', CONFIG)
    with pytest.raises(InputDataError, match=r"line 1: invalid JSON: Expecting property "
                                             r"name .*\(column 18\)"):
        parse("x.jsonl", b'{"sentence":"a",\r\n', CONFIG)


def test_a_quote_inside_a_field_of_the_first_line_opens_nothing(tmp_path):
    """Looking for the first line end, every quote opened or closed a quoted field, as
    only one that starts a field does (the csv module's reading): a first row like
    'a 12" pizza' made the reader read the whole file for the closing quote, and hold it,
    and a file with CR line ends was then read as one line."""
    named = ReaderConfig("t", "l", column_names=("t", "l"))
    rows = 'a 12" pizza,1\r' + "".join(f"text {i},{i % 2}\r" for i in range(50_000))
    assert [(r.line, r.text) for r in parse("p.csv", rows.encode(), named)][:2] == [
        (1, 'a 12" pizza'), (2, "text 0")]
    path = tmp_path / "p.csv"
    path.write_text(rows.replace("\r", "\n"), encoding="utf-8", newline="")
    opened = []

    def opener(p):
        opened.append(_CountingReads(p))
        return opened[0]

    first = next(iter_file(str(path), named, opener))
    assert first.text == 'a 12" pizza'
    assert opened[0].read_bytes <= 64 + parsing.CHUNK_BYTES < path.stat().st_size
    # a quote that opens a field still hides the line ends in it
    quoted = parse("q.csv", b'x,"q""a\r\nb",1\rc,0,1\r', ReaderConfig("1", "2", column_names=(
        "0", "1", "2")))
    assert [(r.text, r.label) for r in quoted] == [('q"a\r\nb', "1"), ("0", "1")]


def test_a_quote_left_open_is_named_without_a_second_copy_of_the_file():
    """A quote left open makes the rest of the file one field (the csv module holds it to
    the end, where it is named). The reader also kept every line of that record for the
    error's hint: a second copy of the file."""
    import tracemalloc

    rows = "".join(f"text number {i},{i % 2}\n" for i in range(100_000))  # 2.2 MB
    data = ('sentence,label\n"left open,1\n' + rows).encode()
    tracemalloc.start()
    try:
        with pytest.raises(InputDataError, match=r"line 2: malformed row: unexpected end of "
                                                 r"data; if quotes in this file are plain "
                                                 r"text, set data.quoting none"):
            parse("x.csv", data, CONFIG)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # the csv module's open field takes 4 bytes a character; the lines kept took 4 more
    assert peak < 7 * len(data), (peak, len(data))
    with pytest.raises(InputDataError, match=r"escaped with a backslash"):
        parse("x.csv", b'sentence,label\n"a \\"b\\" c,1\n' + rows.encode(), CONFIG)
