"""WordPiece tokenization inside the TensorFlow graph.

Built from the checkpoint's own ``vocab.txt`` and casing, with tensorflow-text's
``BertTokenizer`` (ops: NormalizeUTF8, RegexSplitWithOffsets,
WordpieceTokenizeWithOffsets; all linked into TF Serving >= 2.12 through
tf-text 2.12). Uncased checkpoints are lower-cased the way Hugging Face does it
(per-character lower case, NFD, accents dropped) rather than with tf-text's
NFKC case folding, which maps full-width forms and 'ß' differently. Truncation and [CLS]/[SEP] use core TF ops only, never tf-text's
trimmer ops (``TFText>RoundRobinTrim`` needs tf-text >= 2.13, absent in TF
Serving). The vocabulary is a constant table inside the graph, so the exported
model needs no asset files for it.
"""
from __future__ import annotations

from typing import Sequence

import tensorflow as tf
import tensorflow_text as tf_text

CLS, SEP, PAD, UNK = "[CLS]", "[SEP]", "[PAD]", "[UNK]"
# Hugging Face's BertTokenizer turns words longer than this into [UNK].
MAX_CHARS_PER_WORD = 100
# Cc and Cf characters except tab, newline and carriage return.
CONTROL_CHARS = r"[\x{0}-\x{8}\x{B}\x{C}\x{E}-\x{1F}\x{7F}-\x{9F}\x{FFFD}]|\p{Cf}"


class BertTextTokenizer(tf.Module):
    """Raw strings -> ragged word-piece ids ``[CLS] pieces... [SEP]``."""

    def __init__(self, vocab: Sequence[str], lower_case: bool, max_seq_length: int,
                 fast: bool = False, name: str = "bert_text_tokenizer"):
        super().__init__(name=name)
        if max_seq_length < 3:
            raise ValueError(f"max_seq_length must be >= 3, got {max_seq_length}")
        missing = [t for t in (CLS, SEP, PAD, UNK) if t not in vocab]
        if missing:
            raise ValueError(f"vocabulary lacks special tokens {missing}")
        self.max_seq_length = max_seq_length
        self.cls_id = vocab.index(CLS)
        self.sep_id = vocab.index(SEP)
        self.pad_id = vocab.index(PAD)
        self.vocab_size = len(vocab)
        self.lower_case = lower_case
        if fast:
            self._tokenizer = tf_text.FastBertTokenizer(
                vocab=list(vocab), token_out_type=tf.int64, unknown_token=UNK,
                lower_case_nfd_strip_accents=False,
                max_bytes_per_word=MAX_CHARS_PER_WORD)
        else:
            table = tf.lookup.StaticVocabularyTable(
                tf.lookup.KeyValueTensorInitializer(
                    keys=tf.constant(list(vocab)),
                    values=tf.range(len(vocab), dtype=tf.int64)),
                num_oov_buckets=1)
            self._tokenizer = tf_text.BertTokenizer(
                table, token_out_type=tf.int64, unknown_token=UNK,
                lower_case=False, max_bytes_per_word=MAX_CHARS_PER_WORD)

    def __call__(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """``texts``: string tensor of shape [batch]. Returns int64 ragged [batch, None]."""
        # Hugging Face drops NUL, U+FFFD and control/format characters.
        texts = tf.strings.regex_replace(texts, CONTROL_CHARS, "")
        if self.lower_case:
            texts = tf.strings.lower(texts, encoding="utf-8")
            texts = tf_text.normalize_utf8(texts, "NFD")
            texts = tf.strings.regex_replace(texts, r"\p{Mn}", "")
        pieces = self._tokenizer.tokenize(texts)
        if isinstance(pieces, tf.RaggedTensor) and pieces.ragged_rank == 2:
            pieces = pieces.merge_dims(-2, -1)
        pieces = pieces[:, : self.max_seq_length - 2]
        batch = tf.shape(texts, out_type=tf.int64)[:1]
        cls = tf.fill(tf.concat([batch, [1]], 0), tf.constant(self.cls_id, tf.int64))
        sep = tf.fill(tf.concat([batch, [1]], 0), tf.constant(self.sep_id, tf.int64))
        return tf.concat([cls, pieces, sep], axis=1)


def pad_to_dense(ids, pad_id: int, length=None):
    """Ragged or sparse ids -> (dense ids, attention mask), padded to ``length``

    (or to the longest row when ``length`` is None).
    """
    if isinstance(ids, tf.sparse.SparseTensor):
        ids = tf.RaggedTensor.from_sparse(ids)
    shape = None if length is None else [None, length]
    dense = ids.to_tensor(default_value=pad_id, shape=shape)
    mask = tf.ones_like(ids, dtype=tf.int32).to_tensor(default_value=0, shape=shape)
    return dense, mask
