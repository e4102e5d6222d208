"""MRPC probes: fine-tuning settings tried on the Transform output of the last `mrpc` benchmark.

Each probe uses the Trainer's own classifier, optimizer and input pipeline (models/) on the
transformed MRPC splits and records the eval-split accuracy after every epoch, so settings
can be compared without re-running the whole pipeline. Two settings go beyond the Trainer:

  --pooling mean   classify the attention-masked mean of the last hidden states (how the
                   default checkpoint, a sentence-embedding model, was trained) instead of
                   BERT's [CLS] pooler
  --swap_pairs     train on every pair twice, as (a, b) and (b, a)

Usage: .venv/bin/python bench/run_benchmarks.py mrpc   (once, for the Transform output)
       .venv/bin/python bench/mrpc_probes.py --tag NAME [--learning_rate 5e-5 --epochs 4 ...]
Appends to bench/results/mrpc_probes.json (a probe with the same tag is replaced).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import tensorflow as tf  # noqa: E402
import tensorflow_transform as tft  # noqa: E402

from bench.run_benchmarks import RESULTS, WORK  # noqa: E402
from models import checkpoint, dataset, model as model_lib, trainer  # noqa: E402
from serving import contract  # noqa: E402
from models.hparams import ModelHParams  # noqa: E402
from models.tokenizer import segment_ids  # noqa: E402

TRANSFORM = os.path.join(WORK, "mrpc", "pipeline_output", "bert-text-classifier", "Transform")
RESULTS_FILE = os.path.join(RESULTS, "mrpc_probes.json")


def last_run_id() -> str:
    with open(os.path.join(WORK, "mrpc", "pipeline_output", "history.jsonl")) as f:
        return json.loads(f.readlines()[-1])["run_id"]


def use_mean_pooling() -> None:
    """Makes models.checkpoint build a classifier that pools by masked mean, not [CLS]."""
    import transformers
    from transformers.modeling_tf_outputs import TFSequenceClassifierOutput

    class MeanPooled(transformers.TFBertForSequenceClassification):
        def call(self, input_ids=None, attention_mask=None, token_type_ids=None,
                 training=False, **_):
            if isinstance(input_ids, dict):
                attention_mask = input_ids.get("attention_mask")
                token_type_ids = input_ids.get("token_type_ids")
                input_ids = input_ids["input_ids"]
            if attention_mask is None:
                attention_mask = tf.ones_like(input_ids)
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=token_type_ids, training=training)[0]
            mask = tf.cast(attention_mask, hidden.dtype)[:, :, tf.newaxis]
            mean = tf.reduce_sum(hidden * mask, 1) / tf.maximum(tf.reduce_sum(mask, 1), 1e-9)
            return TFSequenceClassifierOutput(
                logits=self.classifier(self.dropout(mean, training=training)))

    transformers.TFBertForSequenceClassification = MeanPooled


def swap_pair(ids: tf.Tensor, sep_id: int) -> tf.Tensor:
    """[CLS] a [SEP] b [SEP] -> [CLS] b [SEP] a [SEP]."""
    first_sep = tf.cast(tf.argmax(tf.cast(tf.equal(ids, sep_id), tf.int32)), tf.int32)
    return tf.concat([ids[:1], ids[first_sep + 1:-1], ids[first_sep:first_sep + 1],
                      ids[1:first_sep], ids[-1:]], 0)


def make_dataset(files, spec, batch_size, pad_id, sep_id, shuffle, seed, swap_pairs=False):
    """The Trainer's batches (models/dataset.py), optionally with every pair also swapped."""
    if not swap_pairs:
        return dataset.make_dataset(files, spec, batch_size, pad_id, 128, shuffle=shuffle,
                                    seed=seed, sep_id=sep_id)
    keys = {k: spec[k] for k in (contract.INPUT_IDS, contract.LABEL_ID)}

    def parse(record):
        parsed = tf.io.parse_single_example(record, keys)
        return (dataset._dense(parsed[contract.INPUT_IDS]),
                tf.reshape(dataset._dense(parsed[contract.LABEL_ID]), []))

    def both_orders(ids, label):
        return tf.data.Dataset.from_tensor_slices(
            (tf.stack([ids, swap_pair(ids, sep_id)]), tf.stack([label, label])))

    ds = dataset._record_dataset(files).shuffle(20_000, seed=seed).map(parse)
    ds = ds.flat_map(both_orders).shuffle(4_000, seed=seed)
    ds = ds.padded_batch(batch_size, padding_values=(tf.constant(pad_id, tf.int64),
                                                     tf.constant(0, tf.int64)))

    def to_inputs(ids, label):
        mask = tf.cast(tf.not_equal(ids, pad_id), tf.int32)
        return {"input_ids": ids, "attention_mask": mask,
                "token_type_ids": tf.cast(segment_ids(ids, sep_id, mask), ids.dtype)}, label

    return ds.map(to_inputs).prefetch(tf.data.AUTOTUNE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tag", required=True)
    parser.add_argument("--pooling", choices=("cls", "mean"), default="cls")
    parser.add_argument("--swap_pairs", action="store_true")
    parser.add_argument("--learning_rate", type=float, default=5e-5)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    if args.pooling == "mean":
        use_mean_pooling()

    hparams = ModelHParams(learning_rate=args.learning_rate, epochs=args.epochs,
                           batch_size=args.batch_size, seed=args.seed)
    tf.keras.utils.set_random_seed(hparams.seed)
    graph = tft.TFTransformOutput(glob.glob(os.path.join(TRANSFORM, "transform_graph", "*"))[0])
    spec = graph.transformed_feature_spec()
    ckpt = checkpoint.resolve_checkpoint_dir(hparams.checkpoint)
    vocab = checkpoint.read_vocab(ckpt)
    pad_id, sep_id = vocab.index("[PAD]"), vocab.index("[SEP]")
    split = lambda name: glob.glob(os.path.join(TRANSFORM, "transformed_examples", "*",  # noqa
                                                f"Split-{name}", "*"))
    rows = dataset.profile_split(split("train"), spec, 2, 0, [])["rows"]
    steps, epochs, total = trainer.training_steps(
        hparams, rows * (2 if args.swap_pairs else 1), hparams.batch_size)
    classifier = model_lib.build_classifier(hparams, 2, total, ckpt)
    started = time.time()
    history = classifier.fit(
        make_dataset(split("train"), spec, hparams.batch_size, pad_id, sep_id, True,
                     hparams.seed, args.swap_pairs).repeat(),
        steps_per_epoch=steps, epochs=epochs, verbose=2, callbacks=[trainer.StopAtStep(total)],
        validation_data=make_dataset(split("eval"), spec, 64, pad_id, sep_id, False, 0))
    result = {"tag": args.tag, "settings": {k: v for k, v in vars(args).items() if k != "tag"},
              "eval_accuracy_per_epoch": [round(v, 4) for v in history.history["val_accuracy"]],
              "train_accuracy_per_epoch": [round(v, 4) for v in history.history["accuracy"]],
              "fit_seconds": round(time.time() - started)}
    probes = []
    if os.path.exists(RESULTS_FILE):
        with open(RESULTS_FILE) as f:
            probes = [p for p in json.load(f)["probes"] if p["tag"] != args.tag]
    with open(RESULTS_FILE, "w") as f:
        json.dump({"transform_output": f"run {last_run_id()} of `run_benchmarks.py mrpc`",
                   "probes": probes + [result]}, f, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
