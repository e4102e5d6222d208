"""Personal data redaction inside the TensorFlow graph.

``Redactor(types, custom_patterns)(texts)`` replaces e-mail addresses, URLs, phone
numbers, IPv4/IPv6 addresses, payment card numbers (Luhn-checked) and IBANs (mod-97
checked), plus user-defined RE2 patterns, by typed placeholders, and counts them per
type. Every op is core TensorFlow (string, ragged and integer ops), so the function
runs the same in Transform, in the exported model and in stock TF Serving.

How: one RE2 alternation of every type's pattern (custom patterns first, then
``PRIORITY``) wraps each candidate in ``SENTINEL``s; the text is split there, each
candidate is classified (the first type whose pattern matches it whole), checked
(Luhn, mod 97, digit counts, date-like numbers, neighbouring characters: RE2 has no
lookarounds) and replaced by its type's placeholder, or kept; the pieces are joined
again. A candidate that fails its check is checked again without its last one or two
groups ("ES91 2100 ... 1332 FROM MY": words that look like groups), else kept whole, so
nothing inside it is redacted as another type (an IBAN with a wrong check digit is not a
phone number). Phone numbers, cards after a year and IPv6 addresses are the exception:
RE2 matches leftmost first, and a phone pattern can start in a date, a card's in the
year before it, an IPv6 address's in the hex letters of a word and a colon before it
("node:2001:db8::1"), and take in the first digits of the value after it ("2024-03-05
4111 1111 ...", "03/15/2024 4111 1111 ..."), which its refusal then hid. So the text is
scanned again,
up to ``PASSES`` times, with a mark (``BREAK``) after the first group of each such
refused candidate (``PiiType.rescan``), where no pattern matches; the next scan starts
its candidates after it.
The marks are removed at the end.

Placeholders are unused entries of the BERT vocabulary (``[unused1]`` ...), which
tf-text's ``BertTokenizer(..., preserve_unused_token=True)`` keeps as one token.
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import json
import re
from typing import Callable, Dict, Iterable, Mapping, Optional, Sequence, Tuple, Union

import tensorflow as tf

from models.tokenizer import CONTROL_CHARS

# The tokenizer drops CONTROL_CHARS; they are dropped here first, so what is checked is
# what the model reads. U+001E, one of them, marks the candidates.
SENTINEL = "\x1e"
# U+001F (also dropped first) marks where a refused candidate's first group ends.
BREAK = "\x1f"
PASSES = 5  # scans at most; one more only while a refused candidate had a group to drop
# What becomes one ASCII space: a run of spaces and tabs, or one space that is not ASCII's
# (the Unicode space separators, \p{Zs}, but U+0020).
SPACES = r"[\p{Zs}\t]{2,}|[\t\x{A0}\x{1680}\x{2000}-\x{200A}\x{202F}\x{205F}\x{3000}]"

# Letters of the alphabetic scripts an address may be written in; CJK text around an
# address usually has no space before it, so Han/Kana/Hangul are left out. Their
# combining marks (an accent written as u + U+0308) are the blocks those scripts use, not
# all of \p{M}: its hundreds of ranges, in every letter class, made the combined pattern
# too large for RE2's DFA, which gave up on long texts (logging "DFA out of memory") for
# its NFA, 58 times slower (tests/unit/models/test_redaction.py).
_MARK = (r"\x{300}-\x{36F}\x{483}-\x{489}\x{1AB0}-\x{1AFF}\x{1DC0}-\x{1DFF}"
         r"\x{20D0}-\x{20FF}\x{FE20}-\x{FE2F}")
_LETTER = rf"\p{{Latin}}\p{{Greek}}\p{{Cyrillic}}{_MARK}0-9"
# Top-level domains: punycode (first: RE2 takes the first alternative that matches) or
# letters, .рф and .ελ included.
EMAIL = (rf"[{_LETTER}_%+-]+(?:['.][{_LETTER}_%+-]+)*@"  # o'connor@: the apostrophe inside
         rf"(?:[{_LETTER}](?:[{_LETTER}-]*[{_LETTER}])?\.)+"
         rf"(?:xn--[A-Za-z0-9-]+|[\p{{Latin}}\p{{Greek}}\p{{Cyrillic}}]{{2,24}})")
_URL_CHAR = rf"A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%{_LETTER}"
_URL_END = rf"A-Za-z0-9\-_~/#=&%+{_LETTER}"  # no trailing '.', ',', ')' ...
# CJK inside a URL (https://zh.wikipedia.org/wiki/北京?token=...) when URL characters
# follow it, or first in a path segment; CJK text right after a URL ("…/pathをご覧ください")
# is not taken in. A host: user info, labels (one that begins with CJK is CJK to its end:
# https://例子.测试/…, https://www.例え.jp/…; so CJK text right after such a host, with no
# path, is taken in), or an IPv6 literal, and a port.
_CJK = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}\x{3099}\x{309A}"  # + kana voicing marks
_URL_PATH = rf"[{_URL_CHAR}]*[{_URL_END}](?:[{_CJK}]+[{_URL_CHAR}]*[{_URL_END}])*"
_URL_LABEL = rf"(?:[{_LETTER}A-Za-z_~%\-]+|[{_CJK}][{_CJK}{_LETTER}A-Za-z_~%\-]*)"
_URL_HOST = (rf"(?:[A-Za-z0-9\-._~!$&'()*+,;=:%{_LETTER}]+@)?"
             rf"(?:\[[0-9A-Fa-f:.]+\]|{_URL_LABEL}(?:\.{_URL_LABEL})*)(?::[0-9]{{1,5}})?")
# Any scheme (redis://user:secret@host, postgres://…, s3://… hold credentials and names
# as often as http(s) does), from a word's start; "git+ssh" too, not "site.https".
_URL_SCHEME = r"(?i:\b[a-z][a-z0-9]{0,15}(?:\+[a-z0-9]{1,15})?://|\bwww\.)"
URL = (rf"{_URL_SCHEME}(?:{_URL_HOST}(?:[/?#][{_CJK}]*{_URL_PATH}|[/?#])?"
       rf"|[/?#][{_CJK}]*{_URL_PATH})")
IBAN = (r"\b[A-Z]{2}[0-9]{2}(?:[A-Z0-9]{11,30}|(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,4})?)\b")
_DASH = r"\p{Pd}"  # '-', and the en dash and the others a word processor writes
CARD = (rf"\b(?:[0-9]{{13,19}}|[0-9]{{4}}[ {_DASH}][0-9]{{6}}[ {_DASH}][0-9]{{4,5}}"
        rf"|[0-9]{{4}}(?:[ {_DASH}][0-9]{{4}}){{2}}[ {_DASH}][0-9]{{1,4}}"
        rf"(?:[ {_DASH}][0-9]{{3}})?)\b")
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
IPV4 = rf"\b{_OCTET}(?:\.{_OCTET}){{3}}\b"
_H = r"[0-9A-Fa-f]{1,4}"
# Alternatives in the order RE2 tries them: the form with the most groups after '::'
# first, so the longest reading of an address wins.
IPV6 = "(?:" + "|".join([
    rf"(?:{_H}:){{7}}{_H}",
    rf"::(?:[fF]{{4}}(?::0{{1,4}})?:)?{IPV4[2:-2]}",
    rf"(?:{_H}:){{1,4}}:{IPV4[2:-2]}",
    rf"[fF][eE]80:(?::{_H}){{0,4}}%[0-9A-Za-z]+",
    rf"{_H}:(?::{_H}){{1,6}}",
    rf"(?:{_H}:){{1,2}}(?::{_H}){{1,5}}",
    rf"(?:{_H}:){{1,3}}(?::{_H}){{1,4}}",
    rf"(?:{_H}:){{1,4}}(?::{_H}){{1,3}}",
    rf"(?:{_H}:){{1,5}}(?::{_H}){{1,2}}",
    rf"(?:{_H}:){{1,6}}:{_H}",
    rf":(?::{_H}){{1,7}}",
    rf"(?:{_H}:){{1,7}}:",
]) + ")"
_SEP = rf"[ ./{_DASH}]"
_EXTENSION = r"(?: ?(?:x|ext\.? ?)[0-9]{1,6})?"
PHONE = "(?:" + "|".join([
    # +CC or 00CC, then digits and (area) groups with single separators: +44 (0)20 7946 0958
    rf"(?:\+|\b00[1-9][0-9]{{0,2}}{_SEP})(?:{_SEP}?(?:\([0-9]{{1,5}}\)|[0-9])){{6,17}}",
    # (area) code: (555) 123-4567, (0161) 496 0066
    rf"\((?:0[0-9]{{1,5}}|[2-9][0-9]{{2}})\){_SEP}?(?:{_SEP}?[0-9]){{5,10}}",
    # Three groups: 555-123-4567, 1-800-555-0199, 555.123.4567, 31-7643-0392
    rf"\b(?:1[ .{_DASH}])?(?:[2-9][0-9]{{2}}[ .{_DASH}][0-9]{{3}}"
    rf"|[0-9]{{2,3}}{_DASH}[0-9]{{3,4}})[ .{_DASH}][0-9]{{4}}",
    # National numbers with the trunk prefix 0: 06 12 34 56 78, 030/123456, 0612345678
    rf"\b0[1-9](?:{_SEP}?[0-9]){{6,10}}",
    # Mainland China mobile numbers: 13912345678
    r"\b1[3-9][0-9]{9}",
]) + rf"){_EXTENSION}\b"
# Digit runs a phone pattern also matches but that are dates: 06.12.2023, 01/02/24.
_DATE = rf"[0-9]{{1,2}}[./{_DASH}][0-9]{{1,2}}[./{_DASH}](?:[0-9]{{2}}|[0-9]{{4}})"


@dataclasses.dataclass(frozen=True)
class PiiType:
    """One kind of personal data: its pattern, placeholder and checks."""

    name: str
    pattern: str  # RE2; matched against the text, and whole against each candidate
    placeholder: str
    check: Optional[Callable[[tf.Tensor], tf.Tensor]] = None  # candidates -> keep-mask
    not_after: str = ""  # RE2 the text before a candidate must not end with
    not_before: str = ""  # RE2 the text after a candidate must not start with
    # RE2 a refused candidate matches whole where it may overlap a value it hides:
    # scanned again after its first group (a phone pattern starting in a date, a card's
    # in the year before it); others are kept whole (an IBAN with a wrong check digit is
    # not a phone number, "8319 7456 0110 9271" failing Luhn holds none)
    rescan: str = ""


def _digit_values(texts: tf.Tensor) -> tf.RaggedTensor:
    """Each string's ASCII digits as int32 values (everything else dropped)."""
    digits = tf.strings.regex_replace(texts, "[^0-9]", "")
    return tf.strings.unicode_decode(digits, "UTF-8") - ord("0")


def _from_right(values: tf.RaggedTensor) -> tf.Tensor:
    """For each flat value, how many values follow it in its row."""
    ends = tf.gather(values.row_limits(), values.value_rowids())
    return ends - 1 - tf.range(tf.size(values.flat_values, out_type=tf.int64))


def luhn_valid(texts: tf.Tensor) -> tf.Tensor:
    """Whether each string's digits pass the Luhn check."""
    digits = _digit_values(texts)
    doubled = tf.where(tf.equal(_from_right(digits) % 2, 1), digits.flat_values * 2,
                       digits.flat_values)
    doubled = tf.where(doubled > 9, doubled - 9, doubled)
    total = tf.math.unsorted_segment_sum(doubled, digits.value_rowids(), digits.nrows())
    return tf.equal(total % 10, 0)


def card_valid(texts: tf.Tensor) -> tf.Tensor:
    """Luhn, 13 to 19 digits, and a card issuer's first digit: 1 to 6 (13 digits: only
    Visa's 4), so most order numbers and EAN-13 barcodes are not cards."""
    digits = tf.strings.regex_replace(texts, "[^0-9]", "")
    count = tf.strings.length(digits)
    issuer = tf.strings.regex_full_match(digits, "4.*|[1-6].{13,}")
    return luhn_valid(digits) & issuer & (count >= 13) & (count <= 19)


# 10**k mod 97 for k mod 96 (97 is prime, so 10**96 = 1 mod 97).
_POW10_MOD97 = [pow(10, k, 97) for k in range(96)]


# IBAN length by country (SWIFT's IBAN registry).
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HN": 28, "HR": 21, "HU": 28,
    "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28,
    "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22,
    "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23,
    "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24,
    "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}
_IBAN_SHAPE = "|".join(
    f"(?:{'|'.join(sorted(c for c, n in IBAN_LENGTHS.items() if n == length))})"
    f"[0-9]{{2}}[0-9A-Z]{{{length - 4}}}" for length in sorted(set(IBAN_LENGTHS.values())))


def iban_valid(texts: tf.Tensor) -> tf.Tensor:
    """ISO 13616: the country's length, and with the first four characters moved to the
    end and letters as 10..35, the number is 1 mod 97 (computed as the sum of each
    character's value times 10**exponent mod 97)."""
    compact = tf.strings.regex_replace(tf.strings.upper(texts), "[^0-9A-Z]", "")
    rotated = tf.strings.regex_replace(compact, "^(.{0,4})(.*)$", r"\2\1")
    chars = tf.strings.unicode_decode(rotated, "UTF-8")
    codes = chars.flat_values
    is_digit = codes < ord("A")
    values = tf.where(is_digit, codes - ord("0"), codes - ord("A") + 10)
    widths = tf.where(is_digit, 1, 2)
    ends = tf.cumsum(widths)  # digits written up to and including each character
    row_last = tf.gather(ends, tf.maximum(chars.row_limits() - 1, 0))
    exponent = tf.gather(row_last, chars.value_rowids()) - ends
    terms = values * tf.gather(tf.constant(_POW10_MOD97, tf.int32), exponent % 96)
    total = tf.math.unsorted_segment_sum(terms, chars.value_rowids(), chars.nrows())
    return tf.equal(total % 97, 1) & tf.strings.regex_full_match(compact, _IBAN_SHAPE)


def phone_valid(texts: tf.Tensor) -> tf.Tensor:
    """7 to 15 digits (after a '00' or '(0)' prefix and an extension), and neither a date
    nor a date and a space before more ("05/03/2024 06 12": a date, then a phone number;
    "01.23.45.67.89" is a phone number written with dots)."""
    core = tf.strings.regex_replace(texts, r"^00|\(0\)|(?:x|ext).*$|[^0-9]", "")
    count = tf.strings.length(core)
    return (count >= 7) & (count <= 15) & ~tf.strings.regex_full_match(
        texts, rf"{_DATE}(?: .*)?")


BUILTIN = (
    PiiType("email", EMAIL, "[unused1]"),
    PiiType("url", URL, "[unused2]"),
    PiiType("phone", PHONE, "[unused3]", phone_valid, not_after=rf"[0-9][./{_DASH}]+",
            not_before=rf"[./{_DASH}][0-9]", rescan=r"(?s).*"),
    PiiType("ipv4", IPV4, "[unused4]", not_after=r"[0-9]\.", not_before=r"\.[0-9]"),
    # a group of hex digits and ':' before or ':' and one after would continue the
    # address; a colon as punctuation ("from 2001:db8::1: bad", "ip:2001:db8::1",
    # "node:2001:db8::1", whose "de:2001:db8::1" is refused, then rescanned) would not
    PiiType("ipv6", IPV6, "[unused5]",
            not_after=r"[0-9A-Za-z_]|(?:^|[^0-9A-Za-z_])[0-9A-Fa-f]{1,4}:",
            not_before=r"[0-9A-Za-z_]|:[0-9A-Fa-f:]", rescan=r"(?s).*"),
    PiiType("card", CARD, "[unused6]", card_valid,
            rescan=rf"(?:19|20)[0-9]{{2}}[ {_DASH}].*"),  # a year: "2024 4111 1111 ..."
    PiiType("iban", IBAN, "[unused7]", iban_valid),
)
TYPES = tuple(t.name for t in BUILTIN)
BY_NAME = {t.name: t for t in BUILTIN}
# The order RE2 tries the types at one position (an e-mail before a URL, an IBAN before
# a card, a phone number before a card: "0049 30 1234567890" is a phone number).
PRIORITY = ("email", "url", "iban", "ipv6", "ipv4", "phone", "card")
CUSTOM_PLACEHOLDER_FIRST = 10  # custom patterns: [unused10], [unused11], ...
_NAME = re.compile(r"[a-z][a-z0-9_]*")


def parse_types(types: Union[str, Iterable[str]]) -> Tuple[str, ...]:
    """``"all"``, ``"none"``, ``"email,url"`` or a list of names -> the built-in types."""
    raw = types.split(",") if isinstance(types, str) else list(types)
    names = {str(n).strip().lower() for n in raw} - {""}
    if names <= {"none"}:
        return ()
    if "all" in names:
        names = (names - {"all"}) | set(TYPES)
    unknown = sorted(names - set(TYPES))
    if unknown:
        raise ValueError(f"privacy.redact: unknown type(s) {unknown}; known: "
                         f"{', '.join(TYPES)}, or 'all' / 'none'")
    return tuple(t for t in TYPES if t in names)


def _matches_empty(pattern: str) -> bool:
    """Compiles ``pattern`` with TensorFlow's RE2 in a graph of its own (this also works
    while a caller traces a graph, e.g. Transform's preprocessing_fn)."""
    with tf.Graph().as_default() as graph:
        match = tf.strings.regex_full_match("", pattern)
    with tf.compat.v1.Session(graph=graph) as session:
        return bool(session.run(match))


def custom_types(patterns: Union[Mapping[str, str], Sequence[Tuple[str, str]]]
                 ) -> Tuple[PiiType, ...]:
    """User patterns (name -> RE2) as types with placeholders ``[unused10]``, ...

    RE2 (TensorFlow's regex engine) has no lookarounds and no backreferences."""
    items = list(patterns.items()) if isinstance(patterns, Mapping) else list(patterns)
    result = []
    for i, item in enumerate(items):
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise ValueError(f"privacy.custom_patterns[{i}]: expected (name, pattern)")
        name, pattern = item
        where = f"privacy.custom_patterns['{name}']"
        if not isinstance(name, str) or not _NAME.fullmatch(name) or name in TYPES:
            raise ValueError(f"{where}: the name must be lower-case letters, digits and "
                             f"'_', and not a built-in type ({', '.join(TYPES)})")
        if not isinstance(pattern, str) or not pattern:
            raise ValueError(f"{where}: the pattern must be a non-empty string")
        try:
            empty = _matches_empty(pattern)
        except tf.errors.InvalidArgumentError as error:
            reason = re.search(r"error: ([^\n]+)", error.message)
            raise ValueError(f"{where}: not a valid RE2 pattern "
                             f"({reason.group(1) if reason else error.message}); RE2 has "
                             "no lookarounds and no backreferences") from None
        if empty:
            raise ValueError(f"{where}: the pattern matches the empty string")
        result.append(PiiType(name, pattern, f"[unused{CUSTOM_PLACEHOLDER_FIRST + i}]"))
    if len({t.name for t in result}) != len(result):
        raise ValueError("privacy.custom_patterns: names must be unique")
    return tuple(result)


class Redactor(tf.Module):
    """``redactor(texts) -> (redacted texts, {type: count per text})`` (in-graph).

    ``texts``: string tensor of shape [batch]. Counts are int64 [batch] tensors, one per
    enabled type (custom ones under their names)."""

    def __init__(self, types: Union[str, Iterable[str]] = "all",
                 custom_patterns: Union[Mapping[str, str], Sequence[Tuple[str, str]]] = (),
                 name: str = "redactor"):
        super().__init__(name=name)
        enabled = set(parse_types(types))
        self.types = custom_types(custom_patterns) + tuple(
            BY_NAME[n] for n in PRIORITY if n in enabled)
        self.names = tuple(t.name for t in self.types)
        self._combined = "|".join(f"(?:{t.pattern})" for t in self.types)

    def __call__(self, texts: tf.Tensor) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
        texts = tf.convert_to_tensor(texts, tf.string)
        if texts.shape.rank not in (None, 1):
            raise ValueError(f"redaction: expected texts of shape [batch], got {texts.shape}")
        if not self.types:
            return texts, {}
        if texts.shape.rank is None:
            return self._redact(texts)
        return self._traced(texts)

    @functools.cached_property
    def _traced(self):
        """``_redact`` as one graph function, traced once per Redactor: a graph that
        calls it (Transform traces preprocessing_fn about eight times, each export
        signature once) holds one call op instead of its ops, built again each time."""
        return tf.function(self._redact, input_signature=[tf.TensorSpec([None], tf.string)],
                           autograph=False)

    def _redact(self, texts: tf.Tensor) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
        batch = tf.shape(texts, out_type=tf.int64)[0]
        texts = tf.strings.regex_replace(texts, CONTROL_CHARS, "")
        # Unicode spaces (no-break, narrow no-break), tabs and runs of them are one space
        # to the tokenizer, and to the patterns from here: "06\xa012 34 56 78" is a phone.
        texts = tf.strings.regex_replace(texts, SPACES, " ")
        zeros = tf.zeros(tf.expand_dims(batch, 0), tf.int64)
        counts = {n: zeros for n in self.names}

        def scan(n, texts, counts, again):
            return (n + 1,) + self._scan(texts, counts, batch, later=n > 0)

        # a loop, not PASSES copies of the scan: one copy in every graph that redacts
        # (a model's signatures, Transform's traces), built and loaded once
        _, texts, counts, _ = tf.while_loop(  # the next only where a refusal was broken
            lambda n, texts, counts, again: again & (n < PASSES), scan,
            (tf.constant(0), texts, counts, tf.constant(True)),
            shape_invariants=(tf.TensorShape([]), texts.shape,
                              {n: tf.TensorShape([None]) for n in self.names},
                              tf.TensorShape([])))
        return tf.strings.regex_replace(texts, BREAK, ""), counts

    def _scan(self, texts: tf.Tensor, counts: Dict[str, tf.Tensor], batch: tf.Tensor,
              later: tf.Tensor):
        """One scan: (texts, counts so far plus this scan's, whether to scan again).
        ``later`` (bool tensor): not the first, so the text holds placeholders, which stay
        as they are."""
        marked = tf.strings.regex_replace(texts, self._combined, rf"{SENTINEL}\0{SENTINEL}")
        found = tf.reduce_any(tf.strings.length(marked) > tf.strings.length(texts))

        def replace():
            redacted, found_counts, again = self._replace(marked, batch, later)
            return redacted, {n: counts[n] + found_counts[n] for n in self.names}, again
        return tf.cond(found, replace, lambda: (texts, counts, tf.constant(False)))

    def _replace(self, marked: tf.Tensor, batch: tf.Tensor, later: tf.Tensor):
        pieces = tf.strings.split(marked, SENTINEL)  # text, candidate, text, ... text
        flat = pieces.flat_values
        position = tf.range(tf.size(flat, out_type=tf.int64)) - tf.gather(
            pieces.row_starts(), pieces.value_rowids())
        index = tf.where(tf.equal(position % 2, 1))[:, 0]
        candidates = tf.gather(flat, index)
        # the text around, as the model reads it (without the marks of earlier scans)
        before, after = (tf.strings.regex_replace(tf.gather(flat, index + k), BREAK, "")
                         for k in (-1, 1))
        rows = tf.gather(pieces.value_rowids(), index)

        kind = tf.fill(tf.shape(candidates), len(self.types))  # none matched
        for i, pii in reversed(list(enumerate(self.types))):  # the first match wins
            kind = tf.where(tf.strings.regex_full_match(candidates, pii.pattern), i, kind)
        # in a later scan, a placeholder, or part of one, found by a custom pattern: left
        # alone
        placed = later & (
            tf.strings.regex_full_match(candidates, r"(?s).*\[unused[0-9]+\].*") | (
                tf.strings.regex_full_match(before, r"(?s).*\[") &
                tf.strings.regex_full_match(after, r"(?s)\].*")))
        kind = tf.where(placed, len(self.types), kind)
        # A checked candidate that fails may have taken in a group or two too many ("...
        # 7034 BIC", "... 1332 FROM MY"): the candidate without its last one and its last
        # two space/dash-separated groups is checked too, in the same ops (the second and
        # third parts of each tensor below).
        last_group = rf"[ {_DASH}][^ {_DASH}]*$"
        shorter = tf.strings.regex_replace(candidates, last_group, "")
        shortest = tf.strings.regex_replace(shorter, last_group, "")
        tails = [tf.strings.substr(candidates, tf.strings.length(cut),
                                   tf.strings.length(candidates) - tf.strings.length(cut))
                 for cut in (shorter, shortest)]
        both = tf.concat([candidates, shorter, shortest], 0)
        both_before = tf.concat([before, before, before], 0)
        both_after = tf.concat([after] + [tf.strings.join([t, after]) for t in tails], 0)
        both_kind = tf.concat([kind, kind, kind], 0)
        ok = tf.zeros(tf.shape(both), tf.bool)
        for i, pii in enumerate(self.types):
            mine = tf.equal(both_kind, i)
            if pii.check is None and not (pii.not_after or pii.not_before):
                ok |= mine
                continue
            ok |= tf.cond(tf.reduce_any(mine),  # checks run only for types present
                          lambda pii=pii, mine=mine: mine & self._accept(
                              pii, both, both_before, both_after),
                          lambda mine=mine: mine)
        count = tf.size(candidates)
        whole = ok[:count]
        checked = tf.gather(tf.constant([t.check is not None for t in self.types] + [False]),
                            kind)
        head = ok[count:2 * count] & ~whole & checked
        shortest_ok = ok[2 * count:] & ~whole & ~head & checked
        keep = whole | head | shortest_ok
        placeholder = tf.gather(tf.constant([t.placeholder for t in self.types] + [""]), kind)
        # a refused candidate is kept, marked after its first group for the next scan
        # (or after its leading colons: "::4111" of "Card::4111 1111 1111 1111")
        broken = tf.strings.regex_replace(
            candidates, rf"^([^ ./:{_DASH}{BREAK}]+)([ ./:{_DASH}])|^(:+)([^:{BREAK}])",
            rf"\1\3{BREAK}\2\4")
        rescan = tf.zeros(tf.shape(candidates), tf.bool)
        for i, pii in enumerate(self.types):
            if pii.rescan:
                rescan |= tf.equal(kind, i) & tf.strings.regex_full_match(candidates,
                                                                          pii.rescan)
        refused = ~keep & rescan & tf.not_equal(broken, candidates)
        replaced = tf.where(whole, placeholder, tf.where(
            head, tf.strings.join([placeholder, tails[0]]), tf.where(
                shortest_ok, tf.strings.join([placeholder, tails[1]]),
                tf.where(refused, broken, candidates))))
        flat = tf.tensor_scatter_nd_update(flat, index[:, None], replaced)
        redacted = tf.strings.reduce_join(pieces.with_flat_values(flat), axis=1)
        counts = {}
        for i, name in enumerate(self.names):
            hits = tf.cast(keep & tf.equal(kind, i), tf.int64)
            counts[name] = tf.math.unsorted_segment_sum(hits, rows, batch)
        return redacted, counts, tf.reduce_any(refused)

    @staticmethod
    def _accept(pii: PiiType, candidates: tf.Tensor, before: tf.Tensor,
                after: tf.Tensor) -> tf.Tensor:
        """The type's check, and the text around each candidate (RE2 has no lookarounds)."""
        ok = tf.ones(tf.shape(candidates), tf.bool) if pii.check is None else pii.check(
            candidates)
        if pii.not_after:
            ok &= ~tf.strings.regex_full_match(before, f"(?s).*(?:{pii.not_after})")
        if pii.not_before:
            ok &= ~tf.strings.regex_full_match(after, f"(?s)(?:{pii.not_before}).*")
        return ok


def redact(texts, types: Union[str, Iterable[str]] = "all",
           custom_patterns: Union[Mapping[str, str], Sequence[Tuple[str, str]]] = ()):
    """Redacted texts and counts per type: see ``Redactor`` (built once a process for the
    same arguments, as ``from_settings``)."""
    pairs = custom_patterns.items() if isinstance(custom_patterns, Mapping) else custom_patterns
    return from_settings({"redact": types if isinstance(types, str) else list(types),
                          "custom_patterns": [list(pair) for pair in pairs]})(texts)


def from_settings(privacy: Optional[Mapping] = None) -> Redactor:
    """The Redactor for ``privacy`` settings as the pipeline passes them on
    (``{"redact": ..., "custom_patterns": [[name, pattern], ...]}``); None: redacts
    nothing (settings from before redaction existed). The same settings give the same
    Redactor in a process, so its graph function is traced once."""
    return _from_settings(json.dumps(privacy or {"redact": "none"}, sort_keys=True))


@functools.lru_cache(maxsize=16)
def _from_settings(settings: str) -> Redactor:
    privacy = json.loads(settings)
    return Redactor(privacy.get("redact", "all"),
                    [tuple(pair) for pair in privacy.get("custom_patterns", [])])


EXCERPT_CHARS = 40
# The run's custom patterns while ``excerpts_replacing`` is open (a context variable: a
# reader deep in a file's rows quotes one without the settings handed down to it).
_EXCERPT_PATTERNS: contextvars.ContextVar = contextvars.ContextVar("excerpt_patterns",
                                                                   default=())


@contextlib.contextmanager
def excerpts_replacing(custom_patterns: Sequence[Tuple[str, str]] = ()):
    """Within it, ``excerpt`` also replaces ``custom_patterns`` ((name, RE2) pairs, the
    run's privacy.custom_patterns), whatever privacy.redact and privacy.at_ingestion say."""
    token = _EXCERPT_PATTERNS.set(tuple(tuple(pair) for pair in custom_patterns))
    try:
        yield
    finally:
        _EXCERPT_PATTERNS.reset(token)


def excerpt_patterns() -> tuple:
    """The custom patterns ``excerpt`` replaces now ((name, RE2) pairs)."""
    return _EXCERPT_PATTERNS.get()


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """At most ``limit`` characters of ``value`` for an error message, with every
    built-in type of personal data, and the custom patterns of ``excerpts_replacing``,
    replaced (eagerly) before it is cut, so no part of an address or number is quoted."""
    patterns = [list(pair) for pair in excerpt_patterns()]
    [redacted] = text_redactor({"custom_patterns": patterns})([str(value)])
    return redacted if len(redacted) <= limit else redacted[:limit - 1] + "…"


def text_redactor(privacy: Optional[Mapping] = None) -> Callable[[Sequence], list]:
    """For what shows raw texts outside the graph (the report's top values, TFDV's anomaly
    descriptions: with privacy.at_ingestion false the statistics hold raw texts): texts ->
    the same with every built-in type and ``privacy``'s custom patterns replaced, whatever
    privacy.redact says."""
    redactor = from_settings({"redact": "all",
                              "custom_patterns": (privacy or {}).get("custom_patterns", [])})

    def shown(values: Sequence) -> list:
        if not values:
            return list(values)
        redacted = redactor(tf.constant(list(values)))[0].numpy()
        return [v.decode("utf-8", errors="replace") for v in redacted]
    return shown
