"""Training on several replicas: TF_CONFIG, the local replica launcher (real
``tfx.scripts.run_executor`` processes) and whole pipeline runs with two workers."""
import base64
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
from components.distributed_trainer import executor as distributed, local_workers
from models import distribution
from tests.support.paths import REPO
from tests.support.pipeline_runs import cli_args, tiny_overrides

CHIEF_AND_WORKER = {"cluster": {"chief": ["a:1"], "worker": ["b:2"]},
                    "task": {"type": "chief", "index": 0}}


def test_tf_config_of_each_replica_names_one_chief(monkeypatch):
    configs = local_workers.tf_configs([1000, 1001, 1002])
    assert configs[0]["cluster"] == {"chief": ["127.0.0.1:1000"],
                                     "worker": ["127.0.0.1:1001", "127.0.0.1:1002"]}
    seen = []
    for config in configs:
        monkeypatch.setenv("TF_CONFIG", json.dumps(config))
        cluster = distribution.cluster_config()
        seen.append((distribution.task_name(cluster), distribution.is_chief(cluster)))
    assert seen == [("chief", True), ("worker-0", False), ("worker-1", False)]
    # Without a chief task, worker 0 is the chief (TensorFlow's rule).
    workers = {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}}
    assert distribution.is_chief(workers)
    assert not distribution.is_chief(dict(workers, task={"type": "worker", "index": 1}))
    # One task (Vertex AI sets TF_CONFIG for a single replica too) is no cluster.
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"chief": ["a:1"]},
                                                "task": {"type": "chief", "index": 0}}))
    assert distribution.cluster_config() is None
    monkeypatch.setenv("TF_CONFIG", "{broken")
    with pytest.raises(ValueError, match="TF_CONFIG is not JSON"):
        distribution.cluster_config()


def test_only_the_chief_writes_where_the_model_goes(tmp_path):
    target = str(tmp_path / "model" / "Format-Serving")
    worker = dict(CHIEF_AND_WORKER, task={"type": "worker", "index": 0})
    assert distribution.write_dir(target, CHIEF_AND_WORKER) == target
    temporary = distribution.write_dir(target, worker)
    assert temporary != target and os.path.dirname(temporary) == os.path.dirname(target)
    os.makedirs(temporary)
    distribution.remove_temporary(temporary, worker)
    assert not os.path.exists(temporary)


def test_replica_arguments_carry_this_steps_artifacts_and_properties():
    from tfx.scripts import run_executor
    from tfx.types import artifact_utils, standard_artifacts

    examples, model = standard_artifacts.Examples(), standard_artifacts.Model()
    examples.uri, model.uri = "/root/Transform/examples/3", "/root/Trainer/model/4"
    properties = {"custom_config": json.dumps({"distribution": {"workers": 2}}),
                  "run_fn": "models.trainer.run_fn"}
    args = distributed.executor_args({"examples": [examples]}, {"model": [model]},
                                      properties)
    parsed, _ = run_executor.parse_flags(["run_executor", *args])
    assert parsed.executor_class_path == "tfx.components.trainer.executor.GenericExecutor"
    inputs = artifact_utils.parse_artifact_dict(base64.b64decode(parsed.inputs_base64))
    outputs = artifact_utils.parse_artifact_dict(base64.b64decode(parsed.outputs_base64))
    assert inputs["examples"][0].uri == examples.uri and outputs["model"][0].uri == model.uri
    assert json.loads(base64.b64decode(parsed.exec_properties_base64)) == properties
    assert distributed.distribution_of(properties) == {"workers": 2}
    assert distributed.replica_log_dir("/root/p/Trainer/model_run/7") == \
        "/root/p/Trainer/replica_logs/7"


def test_the_model_artifact_keeps_only_the_chiefs_model(tmp_path):
    """A worker stopped between its export and its clean-up leaves a copy beside the
    chief's: the executor removes it."""
    chief = str(tmp_path / "model" / "Format-Serving")
    worker = distribution.write_dir(chief, dict(CHIEF_AND_WORKER,
                                                task={"type": "worker", "index": 0}))
    for folder in (chief, worker):
        os.makedirs(os.path.join(folder, "variables"))
    distributed.remove_worker_copies(chief)
    assert os.listdir(tmp_path / "model") == ["Format-Serving"]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_a_replica_that_keeps_failing_fails_the_step_and_stops_the_others(tmp_path):
    """Real replica processes: worker-0 raises at every start; after trainer.max_restarts
    (1) the step fails naming it, with its log, and the chief is stopped."""
    args = _replica_args("WorkerFails")
    with pytest.raises(RuntimeError) as failure:
        local_workers.run_replicas(args, {"workers": 2, "max_restarts": 1},
                                   log_dir=str(tmp_path))
    message = str(failure.value)
    assert "replica worker-0 failed (exit 1)" in message and "1 restarts" in message
    assert "worker 0 broke on purpose" in message
    worker_log = (tmp_path / "worker-0.log").read_text()
    assert worker_log.count("--- worker-0 start") == 2  # started, restarted once
    chief_log = (tmp_path / "chief.log").read_text()
    assert chief_log.count("--- chief start") == 2  # restarted with it: the whole cluster
    chiefs = [int(pid) for pid in re.findall(r"chief waiting, pid (\d+)", chief_log)]
    assert chiefs and not any(map(_alive, chiefs))


def _replica_args(executor: str) -> list:
    return ["--executor_class_path", f"tests.support.replica_executors.{executor}",
            "--inputs", "{}", "--outputs", "{}", "--exec-properties", "{}"]


def test_replicas_past_the_deadline_are_stopped_and_fail_the_step(tmp_path):
    with pytest.raises(RuntimeError, match="ran past trainer.deadline_minutes"):
        local_workers.run_replicas(_replica_args("Waits"),
                                   {"workers": 2, "max_restarts": 1,
                                    "deadline_minutes": 0.25}, log_dir=str(tmp_path))
    pids = [int(p) for p in re.findall(r"waiting, pid (\d+)", "".join(
        (tmp_path / name).read_text() for name in ("chief.log", "worker-0.log")))]
    assert len(pids) == 2 and not any(map(_alive, pids))


def test_a_replica_failing_after_another_ended_well_is_not_restarted(tmp_path, monkeypatch):
    """A restarted replica would wait forever for a cluster that cannot form again: the
    step fails at once, whatever restarts are left. (The chief fails only once the worker's
    process is gone: in a busy CI run it once failed first and was restarted.)"""
    os.mkfifo(tmp_path / "order")
    monkeypatch.setenv("REPLICA_ORDER_FIFO", str(tmp_path / "order"))
    args = _replica_args("ChiefFailsWorkerEnds")
    with pytest.raises(RuntimeError, match=r"replica chief failed \(exit 1\) after "
                                           r"worker-0 ended"):
        local_workers.run_replicas(args, {"workers": 2, "max_restarts": 3},
                                   log_dir=str(tmp_path))
    assert (tmp_path / "worker-0.log").read_text().count("--- worker-0 start") == 1


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


@pytest.mark.e2e
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


@pytest.mark.e2e
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
