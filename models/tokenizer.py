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

Sentence pairs become ``[CLS] a [SEP] b [SEP]``, shortened longest-first as Hugging
Face's ``truncation="longest_first"`` does; each text keeps its head (``head``), its end
(``tail``, Hugging Face's ``truncation_side="left"``) or its first ``head_tokens`` and
last pieces (``head_tail``). Token type ids follow from the ids (``segment_ids``).
"""
from __future__ import annotations

from typing import Sequence

import tensorflow as tf
import tensorflow_text as tf_text

from models.hparams import TRUNCATIONS

CLS, SEP, PAD, UNK = "[CLS]", "[SEP]", "[PAD]", "[UNK]"
# Hugging Face's BertTokenizer turns words longer than this into [UNK].
MAX_CHARS_PER_WORD = 100
# What Hugging Face drops: category C (control, format, private use, unassigned) except
# tab, newline and carriage return, and U+FFFD. RE2 has no \p{Cn}: unassigned is what no
# other category holds (by RE2's Unicode tables, which may be newer than Python's).
CONTROL_CHARS = (r"[\x{0}-\x{8}\x{B}\x{C}\x{E}-\x{1F}\x{7F}-\x{9F}\x{FFFD}]|\p{Cf}|\p{Co}"
                 r"|[^\p{L}\p{M}\p{N}\p{P}\p{S}\p{Z}\p{Cc}\p{Cf}\p{Co}\p{Cs}]")
# What splits words there besides ASCII white space (Python's str.split): the Unicode
# spaces (Zs but U+0020, which would cost a rewrite of every space), line and paragraph
# separators. tf-text splits on ASCII white space only.
UNICODE_SPACES = r"[\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}]"


class BertTextTokenizer(tf.Module):
    """Raw strings (or pairs) -> ragged word-piece ids ``[CLS] a [SEP] (b [SEP])``."""

    def __init__(self, vocab: Sequence[str], lower_case: bool, max_seq_length: int,
                 fast: bool = False, truncation: str = "head", head_tokens: int = 0,
                 name: str = "bert_text_tokenizer"):
        super().__init__(name=name)
        if max_seq_length < 3:
            raise ValueError(f"max_seq_length must be >= 3, got {max_seq_length}")
        if truncation not in TRUNCATIONS:
            raise ValueError(f"truncation must be one of {TRUNCATIONS}, not '{truncation}'")
        if truncation == "head_tail" and not 0 < head_tokens < max_seq_length - 2:
            raise ValueError(f"head_tail truncation keeps the first head_tokens word pieces "
                             f"and fills the rest from the end: head_tokens must be between 1 "
                             f"and max_seq_length - 3 = {max_seq_length - 3}, got {head_tokens}")
        self.truncation, self.head_tokens = truncation, head_tokens
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
            # preserve_unused_token: redaction's placeholders ([unused1], ...) stay one piece
            self._tokenizer = tf_text.BertTokenizer(
                table, token_out_type=tf.int64, unknown_token=UNK, lower_case=False,
                max_bytes_per_word=MAX_CHARS_PER_WORD, preserve_unused_token=True)

    def __call__(self, texts: tf.Tensor, pairs=None) -> tf.RaggedTensor:
        """``texts`` (and ``pairs``): string tensors of shape [batch]. Returns int64 ragged
        [batch, None]: ``[CLS] text [SEP]`` or ``[CLS] text [SEP] pair [SEP]``, at most
        ``max_seq_length`` long."""
        batch = tf.shape(texts, out_type=tf.int64)[:1]
        cls = tf.fill(tf.concat([batch, [1]], 0), tf.constant(self.cls_id, tf.int64))
        sep = tf.fill(tf.concat([batch, [1]], 0), tf.constant(self.sep_id, tf.int64))
        first = self.word_pieces(texts)
        if pairs is None:
            kept = tf.minimum(first.row_lengths(), self.max_seq_length - 2)
            return tf.concat([cls, self._truncate(first, kept), sep], axis=1)
        second = self.word_pieces(pairs)
        kept_first, kept_second = longest_first(first.row_lengths(), second.row_lengths(),
                                                self.max_seq_length - 3)
        return tf.concat([cls, self._truncate(first, kept_first), sep,
                          self._truncate(second, kept_second), sep], axis=1)

    def _truncate(self, pieces: tf.RaggedTensor, kept: tf.Tensor) -> tf.RaggedTensor:
        """Keeps ``kept`` pieces of each row: its head, its tail, or both."""
        if self.truncation == "head":
            head = kept
        elif self.truncation == "tail":
            head = tf.zeros_like(kept)
        else:
            head = tf.minimum(kept, self.head_tokens)
        lengths = pieces.row_lengths()
        rows = pieces.value_rowids()
        positions = tf.range(tf.size(rows, out_type=tf.int64)) - tf.gather(
            pieces.row_starts(), rows)
        keep = (positions < tf.gather(head, rows)) | (
            positions >= tf.gather(lengths - (kept - head), rows))
        return tf.RaggedTensor.from_row_lengths(tf.boolean_mask(pieces.flat_values, keep),
                                                kept, validate=False)

    def word_pieces(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """Raw strings -> ragged word-piece ids, untruncated, without [CLS]/[SEP]."""
        # Hugging Face drops NUL, U+FFFD and control/format characters, and splits on
        # Unicode spaces.
        texts = tf.strings.regex_replace(texts, CONTROL_CHARS, "")
        texts = tf.strings.regex_replace(texts, UNICODE_SPACES, " ")
        if self.lower_case:
            texts = tf.strings.lower(texts, encoding="utf-8")
            texts = tf_text.normalize_utf8(texts, "NFD")
            texts = tf.strings.regex_replace(texts, r"\p{Mn}", "")
        pieces = self._tokenizer.tokenize(texts)
        if isinstance(pieces, tf.RaggedTensor) and pieces.ragged_rank == 2:
            pieces = pieces.merge_dims(-2, -1)
        return pieces


def longest_first(first: tf.Tensor, second: tf.Tensor, budget: int):
    """Lengths to keep of two texts so both fit ``budget``, as Hugging Face's
    ``truncation="longest_first"``: the longer one loses pieces until both are equal,
    then both lose alternately (the first text keeps the odd one)."""
    remove = tf.maximum(first + second - budget, 0)
    uneven = tf.minimum(tf.abs(first - second), remove)
    even = remove - uneven
    from_first = tf.where(first > second, uneven + even // 2, even // 2)
    return first - from_first, second - (remove - from_first)


def segment_ids(ids, sep_id: int, mask=None):
    """Token type ids: 0 up to and including the first [SEP], 1 after it (``mask``
    zeroes padding). Works on dense [batch, length] ids; all zeros for single texts."""
    after_first_sep = tf.cumsum(tf.cast(tf.equal(ids, sep_id), tf.int32), axis=1,
                                exclusive=True) > 0
    types = tf.cast(after_first_sep, tf.int32)
    return types if mask is None else types * tf.cast(mask, tf.int32)


def pad_to_dense(ids, pad_id: int, length=None):
    """Ragged or sparse ids -> (dense ids, attention mask), padded to ``length``

    (or to the longest row when ``length`` is None, and to at least one column: an empty
    batch, which TF Serving passes on to the model, is [0, 1], which BERT's encoder takes;
    [0, 0] failed its attention matmul).
    """
    if isinstance(ids, tf.sparse.SparseTensor):
        ids = tf.RaggedTensor.from_sparse(ids)
    shape = None if length is None else [None, length]
    dense = ids.to_tensor(default_value=pad_id, shape=shape)
    mask = tf.ones_like(ids, dtype=tf.int32).to_tensor(default_value=0, shape=shape)
    if length is None:
        missing = [[0, 0], [0, tf.maximum(0, 1 - tf.shape(dense)[1])]]
        dense = tf.pad(dense, missing, constant_values=pad_id)
        mask = tf.pad(mask, missing)
    return dense, mask
