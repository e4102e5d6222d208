"""The push in a real run: a run pushing to a full disk fails naming it and says what is
served (a small tmpfs; ``mount`` needs root)."""
import os

import pytest

from components.atomic_pusher.publish import STAGING_PREFIX
from pipeline.config import load_config
from tests.support.push_models import tmpfs, tree


@pytest.mark.serving  # its serving check starts the model server
def test_a_run_pushing_to_a_full_disk_fails_naming_it_and_says_what_is_served(
        tmp_path, tiny_checkpoint, capsys):
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    from cli.main import main
    from tests.support.paths import CURATED_SCHEMA
    from tests.support.pipeline_runs import cli_args, sample_rows, tiny_overrides
    from tests.support.serving_models import export_half_plus_two

    data = tmp_path / "data"
    data.mkdir()
    (data / "reviews.tsv").write_text("sentence\tlabel\n" + "".join(
        f"{text}\t{label}\n" for text, label in sample_rows(200)))
    # 3 MiB: the served version (kilobytes) fits, the tiny BERT (4 MiB of weights) does not
    with tmpfs(tmp_path / "disk", "3m") as disk:
        base = os.path.join(disk, "bert_classifier")
        export_half_plus_two(base, 1)
        before = tree(base)
        overrides = tiny_overrides(tmp_path, tiny_checkpoint, str(data), **{
            "data.schema_path": CURATED_SCHEMA, "output.serving_dir": disk})

        assert main(cli_args(overrides)) == 1
        out = capsys.readouterr().out
        assert "Gate: BLESSED" in out and "Serving check: PASSED" in out, out[-3000:]
        assert "FAILED: PushError: pushing version " in out and \
            f"to {base} failed: {base}/{STAGING_PREFIX}" in out, out[-3000:]
        assert "No space left on device; the partial copy " in out
        assert f"Nothing was pushed. Serving folder {base}: version 1; nothing else" in out
        assert sorted(os.listdir(base)) == ["1"] and tree(base) == before
        assert os.statvfs(disk).f_bavail > 0.9 * os.statvfs(disk).f_blocks

    config = load_config(None, overrides)
    store = metadata_store.MetadataStore(metadata_store_pb2.ConnectionConfig(
        sqlite=metadata_store_pb2.SqliteMetadataSourceConfig(
            filename_uri=config.metadata_path)))
    [pusher] = [e for e in store.get_executions()
                if "Pusher" in store.get_execution_types_by_id([e.type_id])[0].name]
    assert pusher.last_known_state == metadata_store_pb2.Execution.FAILED
    assert not [a for a in store.get_artifacts_by_type("PushedModel")
                if a.custom_properties["pushed"].int_value == 1]
