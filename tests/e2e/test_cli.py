"""The CLI's real `bert-pipeline run`, killed with SIGKILL: the history shows it as
interrupted."""
import os
import subprocess
import time

from tests.support.paths import BERT_PIPELINE, REPO, SAMPLE


def test_a_run_killed_with_sigkill_shows_in_the_history_as_interrupted(tmp_path,
                                                                        tiny_checkpoint):
    import json
    import signal

    from tests.support.pipeline_runs import cli_args, tiny_overrides
    overrides = tiny_overrides(tmp_path, tiny_checkpoint, os.path.dirname(SAMPLE))
    history_file = tmp_path / "pipeline_output" / "history.jsonl"
    run = subprocess.Popen([BERT_PIPELINE, *cli_args(overrides)], cwd=REPO,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (history_file.exists() and history_file.read_text().strip()):
            assert run.poll() is None and time.monotonic() < deadline, "no record at start"
            time.sleep(0.2)
        assert "running" in _cli_out(["history", "--output.root", overrides["output.root"]])
        run.send_signal(signal.SIGKILL)
        assert run.wait(timeout=30) == -signal.SIGKILL
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    table = _cli_out(["history", "--output.root", overrides["output.root"]])
    assert "interrupted" in table and f"pid {run.pid}" in table
    [entry] = [json.loads(line) for line in _cli_out(
        ["history", "--json", "--output.root", overrides["output.root"]]).splitlines()]
    assert entry["status"] == "interrupted" and entry["exit_code"] == 1
    assert "killed or interrupted" in entry["error"]


def _cli_out(args) -> str:
    done = subprocess.run([BERT_PIPELINE, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120, check=True)
    return done.stdout
