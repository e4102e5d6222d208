"""Multi-worker Trainer benchmark (issue 21): two Trainer replicas with one core each vs
one Trainer with both cores, same global batch and steps; the all-reduce of one step's
gradients between two processes; a projection of step time for 2-16 GPU workers.

  1. Transform once: `bert-pipeline run` on the main job's data (data/sample) with 2
     training steps into --root (skipped when --root already holds a Trainer run); the
     Trainer's inputs and properties are read back from that run's metadata.
  2. Rounds of: (a) TFX's Trainer executor (`python -m tfx.scripts.run_executor`), no
     TF_CONFIG, under `taskset -c 0,1`, model.batch_size = --global_batch; (b) the same
     executor as 2 replicas through components/distributed_trainer/local_workers.py
     (TF_CONFIG chief + worker on 127.0.0.1, MultiWorkerMirroredStrategy), replica i
     under `taskset -c i`, model.batch_size = --global_batch / 2. Examples/s and eval
     accuracy come from each run's model_run/train_stats.json.
  3. All-reduce: two processes (one core each, MultiWorkerMirroredStrategy) compute the
     model's gradients on one real batch, then time the replica-context all-reduce Keras'
     optimizer does (as computed: sparse embedding gradients included) and the same
     with every gradient dense (tensors shaped like the trainable variables).
  4. Projection (labelled projected): ring all-reduce of the dense fp32 gradients for
     N = 2, 4, 8, 16 GPU workers on 25 and 100 Gb/s links, plus an assumed compute time.

Usage: .venv/bin/python bench/multi_worker.py [--steps 50] [--rounds 2] [--root DIR]
Writes bench/results/multi_worker.json. The machine is shared: load averages are recorded.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
RESULTS = os.path.join(REPO, "bench", "results", "multi_worker.json")
DEFAULT_ROOT = os.path.join(tempfile.gettempdir(), "bert_pipeline_bench", "multi_worker")
PIPELINE = "bert-text-classifier"

# Projection assumptions (stated in the output; nothing here is measured).
LINKS_GBPS = (25, 100)
WORKER_COUNTS = (2, 4, 8, 16)
BANDWIDTH_EFFICIENCY = 0.8  # share of the link rate a ring all-reduce achieves
HOP_LATENCY_S = 50e-6  # per ring step (TCP between machines)
ASSUMED_GPU_COMPUTE_S = 0.025  # forward + backward of 32 sequences on one GPU, no overlap


def log(message: str) -> None:
    print(message, flush=True)


# ---- 1. Transform once, and the Trainer's inputs read back from the metadata --------

def metadata_path(root: str) -> str:
    return os.path.join(root, "pipeline_output", "metadata.sqlite")


def prepare(root: str) -> dict:
    """Runs the pipeline once (2 training steps: only Transform's output is used)."""
    os.makedirs(root, exist_ok=True)
    command = [os.path.join(REPO, ".venv", "bin", "bert-pipeline"), "run",
               "--output.root", os.path.join(root, "pipeline_output"),
               "--output.serving_dir", os.path.join(root, "serving_model"),
               "--model.train_steps", "2", "--eval.min_accuracy", "0"]
    log("preparing: " + " ".join(command))
    started = time.time()
    with open(os.path.join(root, "prepare.log"), "w") as out:
        subprocess.run(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, check=True)
    return {"command": " ".join(command[1:]), "seconds": round(time.time() - started, 1)}


def trainer_inputs(root: str) -> tuple:
    """(input_dict, exec_properties) of the newest Trainer execution in the run's
    metadata: Transform's examples and graph, the schema, run_fn and custom_config."""
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2
    from tfx.types import artifact_utils

    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path(root)
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    store = metadata_store.MetadataStore(config)
    trainer_types = [t.id for t in store.get_execution_types() if t.name.endswith("Trainer")]
    execution = max((e for e in store.get_executions() if e.type_id in trainer_types),
                    key=lambda e: e.id)
    input_dict = {}
    for event in store.get_events_by_execution_ids([execution.id]):
        if event.type != event.INPUT:
            continue
        artifact = store.get_artifacts_by_id([event.artifact_id])[0]
        artifact_type = store.get_artifact_types_by_id([artifact.type_id])[0]
        key = event.path.steps[0].key
        input_dict.setdefault(key, []).append(
            artifact_utils.deserialize_artifact(artifact_type, artifact))
    exec_properties = {}
    for key, value in execution.custom_properties.items():
        if not key.startswith("__"):
            exec_properties[key] = getattr(value, value.WhichOneof("value"))
    return input_dict, exec_properties


# ---- 2. Trainer runs: (a) one process, two cores; (b) two replicas, a core each --------

def distribution_settings(workers: int) -> dict:
    """What the local runner passes for --trainer.workers N (its defaults), with no
    restarts: a failing replica fails the benchmark instead of being retried."""
    from local.local_runner import trainer_distribution
    from pipeline.config import PipelineConfig

    config = PipelineConfig()
    config.trainer.workers = workers
    return dict(trainer_distribution(config), max_restarts=0)


def trainer_outputs(folder: str) -> dict:
    from tfx.types import standard_artifacts

    model, model_run = standard_artifacts.Model(), standard_artifacts.ModelRun()
    model.uri, model_run.uri = os.path.join(folder, "model"), os.path.join(folder, "model_run")
    for artifact in (model, model_run):
        os.makedirs(artifact.uri, exist_ok=True)
    return {"model": [model], "model_run": [model_run]}


def run_config(exec_properties: dict, batch_size: int, steps: int,
               distribution: dict | None) -> dict:
    """The Trainer's properties with model.batch_size (per replica), train_steps and the
    distribution entry the pipeline adds for several workers."""
    custom = json.loads(exec_properties["custom_config"])
    custom["model"].update(batch_size=batch_size, train_steps=steps, progress_every_steps=10)
    if distribution:
        custom["distribution"] = distribution
    return dict(copy.deepcopy(exec_properties), custom_config=json.dumps(custom))


def run_trainer(tag: str, folder: str, inputs: tuple, workers: int, global_batch: int,
                steps: int) -> dict:
    """One Trainer run; its train_stats plus wall time and load averages."""
    from components.distributed_trainer import local_workers
    from components.distributed_trainer.executor import executor_args

    input_dict, exec_properties = inputs
    subprocess.run(["rm", "-rf", folder], check=True)
    outputs = trainer_outputs(folder)
    distribution = distribution_settings(workers) if workers > 1 else None
    args = executor_args(input_dict, outputs, run_config(
        exec_properties, global_batch // workers, steps, distribution))
    load_before = os.getloadavg()
    started = time.time()
    if workers == 1:
        env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
        with open(os.path.join(folder, "chief.log"), "w") as out:
            subprocess.run(["taskset", "-c", "0,1", sys.executable, "-m",
                            "tfx.scripts.run_executor", *args], env=env, stdout=out,
                           stderr=subprocess.STDOUT, check=True)
    else:
        local_workers.run_replicas(args, distribution, log_dir=os.path.join(folder, "logs"),
                                   stream=sys.stdout,
                                   wrap=lambda index: ["taskset", "-c", str(index)])
    wall = time.time() - started
    with open(os.path.join(outputs["model_run"][0].uri, "train_stats.json")) as f:
        stats = json.load(f)
    result = {"run": tag, "replicas": stats["replicas"], "global_batch": stats["global_batch"],
              "per_replica_batch": stats["hparams"]["batch_size"], "steps": stats["steps"],
              "examples_per_second": round(stats["examples_per_second"], 2),
              "step_seconds": round(stats["global_batch"] / stats["examples_per_second"], 4),
              "eval_accuracy": round(stats["final"]["val_accuracy"], 4),
              "eval_loss": round(stats["final"]["val_loss"], 4),
              "train_loss_last": round(stats["final"]["loss"], 4),
              "fit_seconds": round(stats["fit_seconds"], 1), "wall_seconds": round(wall, 1),
              "load_average_1min": [round(load_before[0], 2), round(os.getloadavg()[0], 2)]}
    log(f"  {tag}: {result}")
    return result


# ---- 3. All-reduce of one step's gradients between two single-core processes ----------

def allreduce_worker(out_path: str, transform_graph: str, train_pattern: str,
                     batch_size: int, repeats: int) -> None:
    """One replica of the all-reduce measurement (runs with its TF_CONFIG)."""
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy()  # before any other op
    import tensorflow_transform as tft

    from models import checkpoint, dataset
    from models.hparams import ModelHParams

    hparams = ModelHParams()
    ckpt = checkpoint.resolve_checkpoint_dir(hparams.checkpoint)
    pad_id = checkpoint.read_vocab(ckpt).index("[PAD]")
    batch = next(iter(dataset.make_dataset(
        [train_pattern], tft.TFTransformOutput(transform_graph).transformed_feature_spec(),
        batch_size, pad_id, hparams.max_seq_length, hparams.dynamic_padding, shuffle=True,
        seed=hparams.seed)))
    with strategy.scope():
        model = checkpoint.load_classifier(ckpt, 2)
    loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, reduction=tf.keras.losses.Reduction.NONE)

    @tf.function
    def gradients(inputs, labels):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(loss_fn(labels, model(inputs, training=True).logits))
        return tape.gradient(loss, model.trainable_variables)

    grads = strategy.run(gradients, args=batch)
    dense = [tf.convert_to_tensor(g) for g in grads]
    result = {"per_replica_batch": batch_size,
              "sequence_length": int(batch[0]["input_ids"].shape[1]),
              "trainable_variables": len(model.trainable_variables),
              "trainable_parameters": int(sum(v.shape.num_elements()
                                              for v in model.trainable_variables)),
              "payload": payload(grads), "seconds": {}}
    for name, values in (("as_computed", list(grads)), ("all_dense", dense),
                         ("one_float", [tf.constant([1.0])])):
        result["seconds"][name] = time_allreduce(strategy, values, repeats)
    if json.loads(os.environ["TF_CONFIG"])["task"]["type"] == "chief":
        with open(out_path, "w") as f:
            json.dump(result, f, indent=2)


def payload(grads) -> dict:
    """Bytes one replica contributes: dense gradients, and the sparse (IndexedSlices)
    ones' values and indices, next to their dense size."""
    import tensorflow as tf

    dense = sparse = sparse_as_dense = 0
    sparse_names = []
    for grad in grads:
        if isinstance(grad, tf.IndexedSlices):
            sparse += grad.values.shape.num_elements() * grad.values.dtype.size + \
                grad.indices.shape.num_elements() * grad.indices.dtype.size
            sparse_as_dense += grad.dense_shape.numpy().prod() * grad.values.dtype.size
            sparse_names.append(f"{list(grad.dense_shape.numpy())} -> "
                                f"{grad.values.shape.num_elements()} values")
        else:
            dense += grad.shape.num_elements() * grad.dtype.size
    return {"dense_gradient_bytes": int(dense), "sparse_gradient_bytes": int(sparse),
            "sparse_gradients": sparse_names,
            "all_dense_bytes": int(dense + sparse_as_dense)}


def time_allreduce(strategy, values: list, repeats: int, warmup: int = 3) -> dict:
    """Seconds per replica-context all-reduce (SUM) of ``values``, as the optimizer does
    it; median, min and max over ``repeats`` after ``warmup`` calls."""
    import tensorflow as tf

    def replica_fn(tensors):  # identity: placed on the replica's device, as gradients are
        placed = tf.nest.map_structure(tf.identity, tensors, expand_composites=True)
        return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM,
                                                              placed)

    @tf.function
    def reduce(tensors):
        return strategy.run(replica_fn, args=(tensors,))

    times = []
    for index in range(warmup + repeats):
        started = time.perf_counter()
        out = reduce(values)
        tf.nest.flatten(out, expand_composites=True)[0].numpy()
        if index >= warmup:
            times.append(time.perf_counter() - started)
    return {"median": round(statistics.median(times), 5), "min": round(min(times), 5),
            "max": round(max(times), 5), "repeats": repeats}


def measure_allreduce(root: str, inputs: tuple, per_replica_batch: int,
                      repeats: int) -> dict:
    """Runs allreduce_worker as a chief and a worker on 127.0.0.1, a core each."""
    from components.distributed_trainer import local_workers

    input_dict, _ = inputs
    graph = input_dict["transform_graph"][0].uri
    train = os.path.join(input_dict["examples"][0].uri, "Split-train", "*")
    out_path = os.path.join(root, "allreduce.json")
    load_before = os.getloadavg()
    processes = []
    for index, config in enumerate(local_workers.tf_configs(local_workers.free_ports(2))):
        env = dict(os.environ, TF_CONFIG=json.dumps(config))
        log_file = open(os.path.join(root, f"allreduce-{index}.log"), "w")
        processes.append(subprocess.Popen(
            ["taskset", "-c", str(index), sys.executable, os.path.abspath(__file__),
             "--allreduce_worker", out_path, "--transform_graph", graph, "--train", train,
             "--per_replica_batch", str(per_replica_batch), "--repeats", str(repeats)],
            env=env, stdout=log_file, stderr=subprocess.STDOUT))
    codes = [process.wait() for process in processes]
    if any(codes):
        raise RuntimeError(f"all-reduce replicas ended with {codes}; logs in {root}")
    with open(out_path) as f:
        result = json.load(f)
    result["load_average_1min"] = [round(load_before[0], 2), round(os.getloadavg()[0], 2)]
    log(f"  all-reduce: {json.dumps(result)}")
    return result


# ---- 4. Projection ---------------------------------------------------------------------

def link_bytes_per_second(gbps: float) -> float:
    return gbps * 1e9 / 8 * BANDWIDTH_EFFICIENCY


def ring_allreduce_seconds(payload_bytes: float, workers: int, gbps: float) -> float:
    """Ring all-reduce: each worker sends 2(N-1)/N x the payload, in 2(N-1) steps."""
    return 2 * (workers - 1) / workers * payload_bytes / link_bytes_per_second(gbps) + \
        2 * (workers - 1) * HOP_LATENCY_S


def ring_allgather_seconds(payload_bytes: float, workers: int, gbps: float) -> float:
    """Ring all-gather (TensorFlow's all-reduce of sparse gradients): each worker
    receives the N - 1 others' payloads, in N - 1 steps."""
    return (workers - 1) * payload_bytes / link_bytes_per_second(gbps) + \
        (workers - 1) * HOP_LATENCY_S


def projection(payload: dict) -> dict:
    """Communication and step time per step for N GPU workers (projected)."""
    rows = []
    for gbps in LINKS_GBPS:
        for workers in WORKER_COUNTS:
            as_sent = ring_allreduce_seconds(payload["dense_gradient_bytes"], workers, gbps) + \
                ring_allgather_seconds(payload["sparse_gradient_bytes"], workers, gbps)
            all_dense = ring_allreduce_seconds(payload["all_dense_bytes"], workers, gbps)
            row = {"link_gbps": gbps, "workers": workers}
            for name, comm in (("as_sent", as_sent), ("all_dense", all_dense)):
                step = ASSUMED_GPU_COMPUTE_S + comm
                row[name] = {"projected_allreduce_ms": round(comm * 1000, 1),
                             "projected_step_ms": round(step * 1000, 1),
                             "projected_scaling_efficiency":
                                 round(ASSUMED_GPU_COMPUTE_S / step, 3)}
            rows.append(row)
    return {"label": "PROJECTED, not measured",
            "assumptions": {
                "payload_as_sent": f"{payload['dense_gradient_bytes']} bytes of dense fp32 "
                                   "gradients (ring all-reduce) + "
                                   f"{payload['sparse_gradient_bytes']} bytes of sparse "
                                   "embedding gradients (values + indices, ring all-gather) "
                                   "per worker, measured on one batch of 16 x "
                                   f"{payload.get('sequence_length', '?')} tokens (the sparse "
                                   "part grows with the tokens per batch)",
                "payload_all_dense": f"{payload['all_dense_bytes']} bytes: every trainable "
                                     "variable's gradient dense in fp32 (e.g. NCCL/Horovod "
                                     "with sparse gradients densified)",
                "algorithm": "ring all-reduce: 2(N-1)/N x payload sent per worker in 2(N-1) "
                             "steps; ring all-gather: (N-1) x payload received in N-1 steps",
                "bandwidth_efficiency": BANDWIDTH_EFFICIENCY,
                "latency_per_ring_step_s": HOP_LATENCY_S,
                "compute_seconds_per_step": ASSUMED_GPU_COMPUTE_S,
                "compute_source": "assumed, not measured: forward + backward of 32 "
                                  "sequences (about 64 tokens) of this 22.7M-parameter model "
                                  "on one data-center GPU in float32",
                "overlap": "none: the all-reduce follows the backward pass",
                "batch": "per-replica batch fixed (global batch grows with N)"},
            "rows": rows}


# ---- main -------------------------------------------------------------------------------

def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in
                  subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
                  if line.startswith("Model name")), platform.machine())
    return f"{model}, {os.cpu_count()} cores (nproc {os.cpu_count()})"


def summarize(runs: list, allreduce: dict) -> dict:
    """Per-round ratios (two workers / one worker) and the all-reduce's share of the
    two-worker step."""
    rounds = []
    for one, two in zip(runs[0::2], runs[1::2]):
        rounds.append({"one_worker_examples_per_second": one["examples_per_second"],
                       "two_workers_examples_per_second": two["examples_per_second"],
                       "two_vs_one (scaling efficiency, ideal 1.0)":
                           round(two["examples_per_second"] / one["examples_per_second"], 3),
                       "eval_accuracy_one_two": [one["eval_accuracy"], two["eval_accuracy"]]})
    two_step = statistics.median(run["step_seconds"] for run in runs if run["replicas"] == 2)
    seconds = allreduce["seconds"]["as_computed"]["median"]
    return {"rounds": rounds,
            "median_two_worker_step_seconds": round(two_step, 4),
            "allreduce_share_of_two_worker_step": round(seconds / two_step, 3),
            "allreduce_all_dense_share_of_two_worker_step":
                round(allreduce["seconds"]["all_dense"]["median"] / two_step, 3),
            "loopback_all_dense_effective_gbps (N=2: each sends the payload once)": round(
                allreduce["payload"]["all_dense_bytes"] * 8 / 1e9
                / allreduce["seconds"]["all_dense"]["median"], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=DEFAULT_ROOT,
                        help="Pipeline output with Transform's output (made when missing).")
    parser.add_argument("--steps", type=int, default=50, help="Training steps per run.")
    parser.add_argument("--rounds", type=int, default=2, help="Rounds of (a) then (b).")
    parser.add_argument("--global_batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=20, help="Timed all-reduces.")
    parser.add_argument("--allreduce_worker", help=argparse.SUPPRESS)
    parser.add_argument("--transform_graph", help=argparse.SUPPRESS)
    parser.add_argument("--train", help=argparse.SUPPRESS)
    parser.add_argument("--per_replica_batch", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.allreduce_worker:
        allreduce_worker(args.allreduce_worker, args.transform_graph, args.train,
                         args.per_replica_batch, args.repeats)
        return
    sys.argv = sys.argv[:1]  # TFX parses sys.argv as absl flags
    started = time.time()
    result = {"command": "TF_USE_LEGACY_KERAS=1 .venv/bin/python bench/multi_worker.py "
                         f"--steps {args.steps} --rounds {args.rounds} "
                         f"--global_batch {args.global_batch} --repeats {args.repeats}",
              "machine": machine(), "date": time.strftime("%Y-%m-%d"),
              "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}
    if not os.path.exists(metadata_path(args.root)):
        result["prepare"] = prepare(args.root)
    inputs = trainer_inputs(args.root)
    log(f"Trainer inputs: { {k: [a.uri for a in v] for k, v in inputs[0].items()} }")
    runs = []
    for number in range(1, args.rounds + 1):
        for workers in (1, 2):
            tag = f"round{number}-{workers}worker"
            log(f"{tag}: {'taskset -c 0,1, no TF_CONFIG' if workers == 1 else 'a core each'}")
            runs.append(run_trainer(tag, os.path.join(args.root, "runs", tag), inputs,
                                    workers, args.global_batch, args.steps))
    log("all-reduce of one step's gradients, 2 processes, a core each")
    allreduce = measure_allreduce(args.root, inputs, args.global_batch // 2, args.repeats)
    result.update(runs=runs, allreduce=allreduce, summary=summarize(runs, allreduce),
                  projection=projection(dict(allreduce["payload"],
                                                  sequence_length=allreduce["sequence_length"])),
                  load_average_at_end=[round(x, 2) for x in os.getloadavg()],
                  wall_seconds=round(time.time() - started, 1))
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        json.dump(result, f, indent=2)
    log(json.dumps({k: result[k] for k in ("summary", "projection")}, indent=2))
    log(f"wrote {RESULTS} ({result['wall_seconds']} s)")


if __name__ == "__main__":
    main()
