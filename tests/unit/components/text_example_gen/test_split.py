"""TextExampleGen's split (components/text_example_gen/split.py): eval rows per class,
stratified and the same on every run, duplicates kept together."""
import glob
import json

import apache_beam as beam
import tensorflow as tf

from components.text_example_gen import executor, parsing
from tests.support.tickets import TICKET_CLASSES, _per_class, _tickets


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
