"""Length-aware batches (serving/lengths.py): groups of similar length, answers in order,
and `score` running its batches by length."""
import threading

import numpy as np
import pytest

from serving.batching import Batcher, BatchingParameters
from serving.lengths import length_groups, map_by_length, row_lengths, run_by_length
from tests.support.length_texts import TEXTS, _expected


def test_row_lengths_count_bytes_of_every_string_input():
    inputs = {"text": np.array([b"abc", "é", b""], object),
              "text_pair": np.array(["xy", "z", "12345"], object),
              "weight": np.array([1.0, 2.0, 3.0])}
    assert row_lengths(inputs).tolist() == [5, 3, 5]
    assert row_lengths({"x": np.zeros(3)}) is None  # nothing to group by
    assert row_lengths({"a": np.array(["x"], object), "b": np.array(["y", "z"], object)}) \
        is None  # rows disagree: left for the signature check to refuse
    assert row_lengths({"text": np.array([["ab", "c"], ["", "d"]], object)}).tolist() == [3, 1]


def test_groups_cover_every_row_once_shortest_first_and_cut_long_from_short():
    lengths = [10, 300, 12, 280, 11, 290, 9, 310]
    groups = length_groups(lengths)
    assert sorted(np.concatenate(groups).tolist()) == list(range(len(lengths)))
    assert [sorted(g.tolist()) for g in groups] == [[0, 2, 4, 6], [1, 3, 5, 7]]
    assert [g.tolist() for g in length_groups([20] * 10)] == [list(range(10))]
    assert max(len(g) for g in length_groups(list(range(1, 500)), max_rows=16)) <= 16
    assert length_groups([]) == []


def test_a_small_batch_of_sentence_lengths_runs_as_one_call():
    """With the default overhead per call (512 padded bytes, chosen on bench/call_cost.py's
    measurements), nine sentences of 20-180 bytes, what 32 clients make of the server's
    batching, are not worth a second call (with 256 they were cut in two)."""
    lengths = [20, 40, 60, 80, 100, 120, 140, 160, 180]
    assert len(length_groups(lengths)) == 1
    assert len(length_groups(lengths, overhead=256)) == 2
    assert len(length_groups([20] * 8 + [600] * 8)) == 2  # long rows still go apart


def _echo_recording(calls):
    """A stand-in signature that answers each row with its own text and notes the lengths of
    each call's rows."""
    def fn(inputs):
        calls.append(sorted(len(t) for t in inputs["text"]))
        return {"echo": np.array(list(inputs["text"]), object),
                "length": np.array([len(t) for t in inputs["text"]], np.int64)}
    return fn


def test_run_by_length_answers_in_the_callers_order():
    calls = []
    texts = np.array([b"s" * 5, b"L" * 400, b"t" * 7, b"M" * 390, b"u" * 6], object)
    out = run_by_length(_echo_recording(calls), {"text": texts}, row_lengths({"text": texts}))
    assert out["echo"].tolist() == texts.tolist()
    assert out["length"].tolist() == [5, 400, 7, 390, 6]
    assert calls == [[5, 6, 7], [390, 400]]  # two calls, each padded only to its own kind


def test_concurrent_callers_of_a_length_aware_batcher_get_their_own_rows_in_order():
    calls = []
    echo = _echo_recording(calls)

    def by_length(inputs):
        return run_by_length(echo, inputs, row_lengths(inputs))
    callers = 8
    requests = [np.array([(b"%d-" % k) + b"x" * (5 if (k + i) % 2 else 500) for i in range(3)],
                         object) for k in range(callers)]
    # one batch of every caller's rows: it closes when max_batch_size rows are queued
    batcher = Batcher(by_length, BatchingParameters(
        max_batch_size=3 * callers, batch_timeout_micros=60_000_000, num_batch_threads=1))
    answers = [None] * callers

    def call(k):
        answers[k] = batcher({"text": requests[k]})
    threads = [threading.Thread(target=call, args=(k,)) for k in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    batcher.close()
    for k in range(callers):
        assert answers[k]["echo"].tolist() == requests[k].tolist()
    assert len(calls) == 2 and all(max(c) < 2 * min(c) for c in calls), calls


def test_score_runs_batches_by_length_and_keeps_the_file_order(tmp_path, capsys):
    import json
    import os

    from cli.main import main
    from tests.support.serving_models import export_length_classifier
    export_length_classifier(str(tmp_path / "m" / "1"), redacting=True)
    texts = [f"{t} 7" for t in TEXTS]  # a digit each: the stand-in redaction's data
    data = tmp_path / "dev.tsv"
    data.write_text("sentence\tlabel\n" + "".join(f"{t}\t{_expected(t)}\n" for t in texts))
    out = tmp_path / "predictions.jsonl"
    out.write_text("an older run's rows\n")
    os.chmod(out, 0o644)
    assert main(["score", "--model", str(tmp_path / "m"), "--data", str(data),
                 "--batch_size", "3", "--predictions", str(out)]) == 0
    assert "8 examples, accuracy 1.0000" in capsys.readouterr().out
    # The texts as the model's redact_text writes them (raw, they were stored as given),
    # in a file only its owner reads
    assert os.stat(out).st_mode & 0o777 == 0o600
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["text"] for r in rows] == [f"{t} #" for t in TEXTS]
    assert [r["predicted"] for r in rows] == [[_expected(t)] for t in texts]
    # Each probability named by its label (labels.txt's order is not sorted).
    assert all(set(r["probabilities"]) == {"short", "long"} for r in rows)
    assert all((r["probabilities"]["long"] > 0.5) == (_expected(r["text"]) == "long")
               for r in rows)


def test_score_predictions_fail_early_and_never_leave_a_torn_file(tmp_path, small_disk,
                                                                    capsys):
    """--predictions in a folder that does not exist failed after the whole file was
    scored; a full disk left the older file truncated to a torn line."""
    import os

    from cli.main import main
    from tests.support.feedback_disks import fill
    from tests.support.serving_models import export_length_classifier
    export_length_classifier(str(tmp_path / "m" / "1"))
    data = tmp_path / "dev.tsv"
    data.write_text("sentence\tlabel\n" + "".join(f"{t}\t{_expected(t)}\n" for t in TEXTS))
    score = ["score", "--model", str(tmp_path / "m"), "--data", str(data), "--predictions"]
    assert main(score + [str(tmp_path / "no" / "p.jsonl")]) == 1
    out, err = capsys.readouterr()
    assert f"cannot write in {tmp_path / 'no'}" in err and "accuracy" not in out
    assert main(score + [str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert f"--predictions {tmp_path} is a folder" in err and "accuracy" not in out
    # through a symlink: its target is written, the link stays
    target, link = tmp_path / "target.jsonl", tmp_path / "link.jsonl"
    target.write_text("old\n")
    link.symlink_to(target)
    assert main(score + [str(link)]) == 0
    capsys.readouterr()
    assert link.is_symlink() and len(target.read_text().splitlines()) == len(TEXTS)
    older = small_disk / "p.jsonl"
    older.write_text("an older run's rows\n")
    fill(small_disk)
    assert main(score + [str(older)]) == 1
    assert "No space left on device" in capsys.readouterr().err
    assert older.read_text() == "an older run's rows\n"
    assert sorted(os.listdir(small_disk)) == ["filler", "p.jsonl"]  # nothing left aside


def test_score_refuses_labels_the_model_does_not_have(tmp_path, capsys):
    """A file labelled pos/neg against a model of long/short scored 0% with exit 0."""
    from cli.main import main
    from tests.support.serving_models import export_length_classifier
    export_length_classifier(str(tmp_path / "m" / "1"))
    data = tmp_path / "data.tsv"  # a name with "data." in it: the flags' rewrite left it
    data.write_text("sentence\tlabel\n" + "".join(
        f"{t}\t{'pos' if _expected(t) == 'long' else 'short'}\n" for t in TEXTS[:4]))
    assert main(["score", "--model", str(tmp_path / "m"), "--data", str(data)]) == 1
    err = capsys.readouterr().err
    assert "labels the model does not have: pos" in err and "(its labels: short, long)" in err
    assert "--allow_unknown_labels" in err
    assert main(["score", "--model", str(tmp_path / "m"), "--data", str(data),
                 "--allow_unknown_labels"]) == 0
    assert "label pos: 0/" in capsys.readouterr().out
    data.write_text("sentence\tlabel\nx\n")
    assert main(["score", "--model", str(tmp_path / "m"), "--data", str(data)]) == 1
    assert f"{data}: 1 bad row" in capsys.readouterr().err  # the file name as it is


def test_inputs_that_are_not_all_batch_major_are_not_grouped():
    """A scalar beside a batch of texts (TensorFlow broadcasts it) has no rows to pick:
    such a call runs whole, as before (it raised IndexError, an INTERNAL answer)."""
    inputs = {"a": np.array([b"x", b"y" * 400], object), "b": np.array(b"z", object)}
    assert row_lengths(inputs) is None
    assert row_lengths({"a": np.array([b"x", b"y"], object),
                        "b": np.zeros((3, 2))}) is None


def test_map_by_length_refuses_an_answer_of_the_wrong_size():
    with pytest.raises(ValueError, match="3 rows in, 2 answers out"):
        map_by_length(lambda batch: batch[:2], ["a", "bb", "c" * 900, "d"],
                      [1, 2, 900, 1], max_rows=3)
