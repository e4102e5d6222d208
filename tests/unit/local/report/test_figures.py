"""The run report's figures (local/report/figures.py): calibration and the most wrong
predictions, single- and multi-label."""
from tests.support.report_pages import EXTERNAL


def test_calibration_and_most_wrong_for_single_and_multi_label():
    import numpy as np

    from local.report import figures
    from local.report.scoring import Scored

    labels = ["a", "b", "c"]
    single = Scored(texts=["t0", "t1", "t2", "t3"],
                    truth=np.eye(3)[[0, 1, 2, 0]],
                    probabilities=np.array([[0.9, 0.05, 0.05], [0.72, 0.18, 0.1],
                                            [0.1, 0.15, 0.75], [0.3, 0.66, 0.04]]),
                    multi_label=False, threshold=0.5)
    # Top-class confidences 0.9, 0.72, 0.75, 0.66: right, wrong, right, wrong.
    assert [(round(lo, 1), n, round(acc, 2)) for lo, _, n, _, acc in single.reliability()] == \
        [(0.6, 1, 0.0), (0.7, 2, 0.5), (0.9, 1, 1.0)]
    # |confidence - accuracy| per bin, weighted by rows: 0.66, |0.735 - 0.5|, 0.1.
    assert abs(single.expected_calibration_error() - (0.66 + 2 * 0.235 + 0.1) / 4) < 1e-9
    assert [(*row[:3], round(row[3], 6)) for row in single.most_wrong(labels)] == \
        [("t1", "b", "a (0.72)", 0.82), ("t3", "a", "b (0.66)", 0.7)]

    multi = Scored(texts=["m0", "m1"], truth=np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]),
                   probabilities=np.array([[0.9, 0.3, 0.1], [0.2, 0.6, 0.95]]),
                   multi_label=True, threshold=0.5)
    # Every (row, label) pair counts: 6 scores, 3 of them for true labels.
    assert sum(n for _, _, n, _, _ in multi.reliability()) == 6
    assert [(text, truth, predicted) for text, truth, predicted, _ in
            multi.most_wrong(labels)] == [("m0", "a, b", "a (0.90)"),  # |1 - 0.3| = 0.7
                                          ("m1", "c", "b (0.60), c (0.95)")]  # |0 - 0.6|
    for scored in (single, multi):
        svg = figures.reliability(scored.reliability(), scored.multi_label)
        assert svg.startswith("<svg ") and EXTERNAL.findall(svg) == []
