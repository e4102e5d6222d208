"""Training on several replicas, whole pipeline runs with two workers: as good as one at
the same global batch, and a killed worker restarts from the backup."""
import glob
import json
import os
import re
import signal
import subprocess
import sys
import threading

import pytest

from cli.main import main
from models import distribution
from tests.support.paths import REPO
from tests.support.pipeline_runs import cli_args, tiny_overrides

# Two classes a tiny BERT tells apart in a few dozen steps: the comparison of one and
# two workers is about training, not about a model that cannot learn.
POSITIVE = "excellent wonderful delightful superb charming brilliant lovely".split()
NEGATIVE = "terrible awful dreadful boring horrible tedious ugly".split()
FILLER = "the movie film story plot was is and a of it with".split()


@pytest.fixture(scope="module")
def separable_data(tmp_path_factory):
    import random
    rng = random.Random(0)
    folder = tmp_path_factory.mktemp("separable")
    with open(folder / "reviews.tsv", "w", encoding="utf-8") as f:
        f.write("sentence\tlabel\n")
        for i in range(2000):
            words = rng.sample(FILLER, 5) + rng.sample(POSITIVE if i % 2 else NEGATIVE, 2)
            rng.shuffle(words)
            f.write(f"{' '.join(words)}\t{i % 2}\n")
    return str(folder)


def _settings(tmp_path, checkpoint, data, **extra):
    return tiny_overrides(tmp_path, checkpoint, data, **{
        "data.schema_path": "", "model.max_seq_length": 32, "model.learning_rate": 0.001,
        "model.progress_every_steps": 10, **extra})


def _train_stats(root) -> dict:
    [path] = glob.glob(os.path.join(root, "*", "Trainer", "model_run", "*",
                                    "train_stats.json"))
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _accuracy(out: str) -> float:
    return float(re.search(r"overall .*sparse_categorical_accuracy=([\d.]+)", out).group(1))


def test_two_workers_train_a_model_as_good_as_one_at_the_same_global_batch(
        tmp_path, tiny_checkpoint, separable_data, capsys):
    """Same data, same steps, same global batch (32): one worker at batch 32, two
    workers at 16 each. Both models are gated and pushed, and score alike."""
    runs = {}
    for workers in (1, 2):
        folder = tmp_path / f"workers-{workers}"
        settings = _settings(folder, tiny_checkpoint, separable_data, **{
            "model.train_steps": 100, "model.batch_size": 32 // workers,
            "model.class_weight": "balanced", "trainer.workers": workers})
        assert main(cli_args(settings)) == 0
        out = capsys.readouterr()
        assert "Gate: BLESSED" in out.out and "Pushed: version" in out.out
        runs[workers] = (_accuracy(out.out), _train_stats(settings["output.root"]), out.err)
    (one, one_stats, _), (two, two_stats, two_err) = runs[1], runs[2]
    assert (one_stats["replicas"], two_stats["replicas"]) == (1, 2)
    assert one_stats["global_batch"] == two_stats["global_batch"] == 32
    assert one_stats["steps"] == two_stats["steps"]
    assert one >= 0.95 and two >= 0.95 and abs(one - two) <= 0.03, (one, two)
    # The loss in the progress lines is the mean over the replicas, not their sum.
    losses = [float(v) for v in re.findall(r"Trainer step \d+/\d+ .*loss ([\d.]+)", two_err)]
    assert losses and losses[0] < 0.8, losses
    root = tmp_path / "workers-2" / "pipeline_output"
    [run_dir] = glob.glob(str(root / "*" / "Trainer" / "model_run" / "*"))
    assert not os.path.exists(os.path.join(run_dir, distribution.BACKUP_DIR))
    assert len(glob.glob(os.path.join(run_dir, "tensorboard", "train", "events.*"))) == 1
    [model_dir] = glob.glob(str(root / "*" / "Trainer" / "model" / "*"))
    assert os.listdir(model_dir) == ["Format-Serving"]  # no worker's copy left
    logs = glob.glob(str(root / "*" / "Trainer" / "replica_logs" / "*" / "*.log"))
    assert sorted(map(os.path.basename, logs)) == ["chief.log", "worker-0.log"]


def test_a_killed_worker_is_restarted_and_training_resumes_from_the_backup(
        tmp_path, tiny_checkpoint, separable_data):
    """kill -9 of worker-0 mid-epoch: the cluster is restarted (one restart), both
    replicas resume from the last backup, and the run pushes one model."""
    settings = _settings(tmp_path, tiny_checkpoint, separable_data, **{
        "model.train_steps": 300, "trainer.workers": 2, "trainer.backup_every_steps": 10})
    command = [sys.executable, "-m", "cli.main", *cli_args(settings)]
    run = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    watchdog = threading.Timer(1200, run.kill)  # a hang fails the test, not the suite
    watchdog.start()
    lines, worker, killed = [], None, None
    for line in run.stdout:
        lines.append(line)
        started = re.search(r"replica worker-0 started \(pid (\d+)\)", line)
        worker = int(started.group(1)) if started else worker
        if killed is None and re.search(r"Trainer step 20/\d+", line):
            os.kill(worker, signal.SIGKILL)
            killed = worker
    code = run.wait(60)
    watchdog.cancel()
    assert code == 0, "".join(lines[-60:])
    out = "".join(lines)
    assert killed and "replica worker-0 ended with killed by SIGKILL: restarting all 2 " \
        "replicas (restart 1 of 3)" in out, out[-5000:]
    assert "restart 2 of 3" not in out  # one incident, one restart
    resumed = [int(n) for n in re.findall(r"Trainer resumes at step (\d+)/", out)]
    assert resumed and resumed[-1] >= 20 and resumed[-1] % 10 == 0, resumed
    assert _train_stats(settings["output.root"])["resumed_from_step"] == resumed[-1]
    assert "Gate: BLESSED" in out and "Pushed: version" in out
    assert len(os.listdir(tmp_path / "serving_model" / "bert_classifier")) == 1
