"""The run report's folders (local/report/): names safe on every file system."""


def test_report_folder_names_are_file_system_safe(tmp_path):
    from local import report
    from pipeline.config import load_config

    config = load_config(None, {"output.root": str(tmp_path)})
    assert report.path_for(config, "2026-11-24T23:21:19.566480") == str(
        tmp_path / "reports" / "2026-11-24T23-21-19.566480" / "index.html")
    assert report.run_folder_name("../../etc/passwd") == "etc-passwd"
    assert report.run_folder_name("") == "run"
