"""The ModelCard executor's file copy (components/model_card/executor.py)."""
import os

from components.model_card import executor


def test_copy_tree_copies_every_file(tmp_path):
    source = tmp_path / "model" / "Format-Serving"
    (source / "variables").mkdir(parents=True)
    (source / "saved_model.pb").write_bytes(b"\x00graph")
    (source / "variables" / "variables.index").write_bytes(b"index")
    executor.copy_tree(str(tmp_path / "model"), str(tmp_path / "copy"))
    copied = {os.path.relpath(os.path.join(d, f), tmp_path / "copy")
              for d, _, files in os.walk(tmp_path / "copy") for f in files}
    assert copied == {"Format-Serving/saved_model.pb",
                      "Format-Serving/variables/variables.index"}
    assert (tmp_path / "copy" / "Format-Serving" / "saved_model.pb").read_bytes() == \
        b"\x00graph"
