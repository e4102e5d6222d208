"""Bad input stops the real pipeline before training, says why, and pushes nothing."""
import hashlib
import os

import pytest

from cli.main import main
from tests.support.files import files_holding
from tests.support.paths import CURATED_SCHEMA
from tests.support.pipeline_runs import cli_args, sample_rows, tiny_overrides

GOOD = "".join(f"{text}\t{label}\n" for text, label in sample_rows(60))
HEADER = "sentence\tlabel\n"


def _tree_digest(root) -> str:
    digest = hashlib.sha256()
    for folder, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            path = os.path.join(folder, name)
            digest.update(path.encode())
            with open(path, "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()


def _train_only(label: str, count: int) -> list:
    """``count`` distinct texts of ``label`` that TFX's hash split sends to 'train'
    (eval_fraction 0.1), found with TextExampleGen's own example and TFX's partition
    function."""
    from tfx.components.example_gen.base_example_gen_executor import _PartitionFn
    from tfx.proto import example_gen_pb2

    from components.text_example_gen.executor import _to_example
    from components.text_example_gen.parsing import Record

    texts, i = [], 0
    while len(texts) < count:
        text = f"a review of class {label}, number {i}"
        example = _to_example(Record(1, text, label, None, (label,)))
        if _PartitionFn(example, 2, [90, 100], example_gen_pb2.SplitConfig()) == 0:
            texts.append(text)
        i += 1
    return texts


# 120 rows, only 4 distinct texts (30 copies each): every copy hashes like the others.
DUPLICATES = "".join(f"{t}\t{label}\n" for label, t in
                     [("0", t) for t in _train_only("0", 2)] + [("1", t) for t in
                                                                 _train_only("1", 2)]) * 30
# A class whose 8 rows are 1 text repeated: it never reaches the eval split.
RARE = "".join(f"{t}\t0\n" for t, _ in sample_rows(120)) + f"{_train_only('1', 1)[0]}\t1\n" * 8

CASES = {
    "malformed_row": (HEADER + GOOD + "an unquoted\ttab\t1\n" + GOOD,
                      r"data.tsv: 1 bad row.*line 62: expected 2 fields, found 3"),
    "empty_text": (HEADER + GOOD + "   \t1\n", r"data.tsv: .*line 62: empty text"),
    "missing_label": (HEADER + GOOD + "fine text\t\n", r"data.tsv: .*line 62: missing label"),
    "unknown_label": (HEADER + GOOD + "a new kind of label\t7\n",
                      r"split '(train|eval)', feature 'label': Unexpected string values"),
    "invalid_utf8": ((HEADER + GOOD).encode() + b"caf\xe9\t1\n", r"data.tsv: line 62: invalid UTF-8"),
    "not_text": (b"\x7fELF\x02\x01\x01\x00\x00\x00\x00", r"data.tsv: not a text file"),
    "header_only": (HEADER, r"data.tsv: no data rows"),
    "empty_eval_split": (HEADER + DUPLICATES,
                         r"split 'eval' is empty: all 120 rows went to 'train', only 4 "
                         r"distinct texts\. The split keeps identical rows on one side"
                         r".*data.eval_fraction.*data.presplit"),
    "eval_lacks_a_class": (HEADER + RARE,
                           r"split 'eval' has no rows of class\(es\) \['1'\] that split "
                           r"'train' has \(rows there: 1: 8\).*data.presplit"),
    "one_class": (HEADER + "".join(f"{t}\t1\n" for t, _ in sample_rows(60)),
                  r"split 'train', feature 'label': only 1 class\(es\) \['1'\]"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_stops_the_run(case, tmp_path, tiny_checkpoint, capsys, caplog):
    content, message = CASES[case]
    data = tmp_path / "data"
    data.mkdir()
    (data / "data.tsv").write_bytes(content if isinstance(content, bytes) else content.encode())
    served = tmp_path / "serving_model" / "bert_classifier" / "1"
    served.mkdir(parents=True)
    (served / "saved_model.pb").write_bytes(b"an earlier model")
    before = _tree_digest(tmp_path / "serving_model")

    overrides = tiny_overrides(tmp_path, tiny_checkpoint, str(data),
                               **{"data.schema_path": CURATED_SCHEMA})
    assert main(cli_args(overrides)) == 1
    out = capsys.readouterr().out
    import re
    assert re.search(message, out, re.S), out[-3000:]
    assert re.search(r"Transform\s+not run", out) and re.search(r"Trainer\s+not run", out)
    assert "Nothing was pushed" in out
    assert _tree_digest(tmp_path / "serving_model") == before
    # the summary says it all: no Beam traceback of the same error (it shows with --verbose)
    assert not [r for r in caplog.records
                if r.name == "apache_beam.runners.common" and r.exc_info], caplog.text[-2000:]


def test_a_quoted_row_has_the_runs_own_types_replaced(tmp_path, tiny_checkpoint, capfd,
                                                      caplog):
    """A headerless file's first row is quoted in the error, which the run's summary,
    history and report keep: with redaction after ingestion (privacy.at_ingestion false)
    the run's custom pattern is replaced there all the same, as the built-in types are."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "data.tsv").write_text("order TCK-482913 came late, mail jo@example.org\t1\n"
                                   + GOOD)
    overrides = tiny_overrides(tmp_path, tiny_checkpoint, str(data), **{
        "data.schema_path": CURATED_SCHEMA, "privacy.at_ingestion": "false",
        "privacy.custom_patterns": "ticket=TCK-[0-9]{6}"})
    assert main(cli_args(overrides)) == 1
    out, err = capfd.readouterr()
    assert "'order [unused10] came late, mail [unuse…'" in out, out[-3000:]
    logs = out + err + caplog.text
    needles = ["TCK-4", "482913", "jo@example"]
    assert [n for n in needles if n in logs] == []
    assert files_holding(str(tmp_path / "pipeline_output"), needles) == []
    assert files_holding(str(data), needles)  # the scan finds what is there
