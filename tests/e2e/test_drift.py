"""Span drift in a real run: checked with an inferred schema."""
import os

from tests.support.pipeline_runs import write_span


def test_drift_is_checked_with_an_inferred_schema(tmp_path, tiny_checkpoint, capsys):
    """The README's setting for your own data (data.schema_path ""): the schema SchemaGen
    infers has no drift comparators; the config's limits apply, and the summary shows
    them. A span whose label mix moved from 8 % to 65 % positive stops before training."""
    from cli.main import main
    from tests.support.pipeline_runs import cli_args, sample_rows, tiny_overrides

    rows = sample_rows(1200)
    positive = [r for r in rows if r[1] == "1"]
    negative = [r for r in rows if r[1] == "0"]
    data = str(tmp_path / "data")
    write_span(data, 1, positive[:16] + negative[:184])  # 8 % positive
    write_span(data, 2, positive[16:146] + negative[184:254])  # 65 % positive
    overrides = tiny_overrides(tmp_path, tiny_checkpoint, data, **{
        "data.schema_path": "", "data.span_pattern": "span-{SPAN}"})
    assert main(cli_args(overrides)) == 1
    out = capsys.readouterr().out
    assert "Drift: span 2 vs span 1: label distribution (L-infinity distance) 0.5700 " \
           "exceeds 0.2500" in out
    assert "Drift limits: label_l_infinity<=0.2500 (data.max_label_l_infinity), " \
           "length_js_divergence<=0.2500 (data.max_length_js_divergence)" in out
    assert "Trainer" in out and "Pushed" not in out
    assert not os.path.exists(overrides["output.serving_dir"])
