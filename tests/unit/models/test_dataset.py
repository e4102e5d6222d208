"""Training batches (models/dataset.py): length buckets over a repeated split."""
import numpy as np
import tensorflow as tf

from models import dataset

SPEC = {"input_ids": tf.io.VarLenFeature(tf.int64),
        "label_id": tf.io.FixedLenFeature([], tf.int64)}


def _write(path, rows: int) -> str:
    rng = np.random.default_rng(0)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for i in range(rows):
            length = int(np.clip(rng.lognormal(3.2, 0.6), 3, 128))  # review-like lengths
            ids = [101] + rng.integers(1000, 5000, length - 2).tolist() + [102]
            writer.write(tf.train.Example(features=tf.train.Features(feature={
                "input_ids": tf.train.Feature(int64_list=tf.train.Int64List(value=ids)),
                "label_id": tf.train.Feature(int64_list=tf.train.Int64List(value=[i % 2]))}
            )).SerializeToString())
    return str(path)


def test_every_training_batch_is_full_so_epochs_mean_passes(tmp_path):
    """Buckets batched before the split was repeated: each pass ended with a part-batch
    per length bucket, and 2 epochs of 40 rows (2 steps of 32) trained 37 rows, not 64."""
    path = _write(tmp_path / "train.tfrecord", 40)
    training = dataset.make_dataset([path], SPEC, 32, 0, 128, shuffle=True, seed=1,
                                    repeat=True)
    assert [int(label.shape[0]) for _, label in training.take(6)] == [32] * 6
    evaluation = dataset.make_dataset([path], SPEC, 32, 0, 128)  # once, every row
    assert sum(int(label.shape[0]) for _, label in evaluation) == 40
