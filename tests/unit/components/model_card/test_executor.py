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


def test_sources_name_the_windows_spans_and_whose_files_are_counted():
    """The card said "N file(s), M bytes" of the newest span (TFX's fingerprint) as if of
    everything the model trained on."""
    from tfx.types import standard_artifacts
    examples = standard_artifacts.Examples()
    examples.set_int_custom_property("span", 7)
    examples.set_string_custom_property("window_spans_read", "[5, 6]")
    examples.set_string_custom_property(
        "input_fingerprint", "split:single_split,num_files:2,total_bytes:1234,xor_checksum:1")
    lines = executor.sources(examples, "/data", ["span-{SPAN}/*"])
    assert lines[1:] == ["span 7 (the newest; older spans of the window: 5, 6)",
                         "2 file(s), 1234 bytes in the newest span"]
