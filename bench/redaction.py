"""Redaction benchmark: detection quality vs. Microsoft Presidio, and serving cost.

1. A labelled synthetic corpus: Faker values (e-mail, URL, phone, IPv4, IPv6, card, IBAN)
   in sentences of nine locales, plus negatives that must be kept (order numbers, dates,
   times, versions, prices, postcodes, ISBN/EAN codes, 16-digit numbers failing Luhn,
   IBANs with a wrong check). Precision and recall per type of models/redaction.py and of
   Presidio's pattern recognizers (run in their own Python 3.11 virtualenv, made here in
   a cache folder; no spaCy model: the recognizers are called directly).
   A detection counts when its type is right and it covers every letter and digit of the
   labelled value and none outside it (punctuation at the edges is not counted).
2. Serving cost: single-request latency (p50) of SavedModels with redaction on vs. off:
   the tokenizer alone, and a text classifier (tokenizer + the default MiniLM-L6
   checkpoint with a 2-label head), on corpus texts and on SST-2 sentences.

Usage: .venv/bin/python bench/redaction.py [--per_type 40] [--seed 1] [--skip_presidio]
Writes bench/results/redaction.json and prints a table.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from bench.run_benchmarks import write  # noqa: E402

PRESIDIO = ["presidio-analyzer==2.2.365", "phonenumbers==9.0.43", "tldextract==5.4.0"]
PRESIDIO_PYTHON = os.path.expanduser("~/.pyenv/versions/3.11.7/bin/python")
CACHE = os.path.join(os.path.expanduser("~"), ".cache", "bert-pipeline", "presidio")
TYPES = ("email", "url", "phone", "ipv4", "ipv6", "card", "iban")
# Presidio entity -> our type (IP_ADDRESS is split by the address's form).
PRESIDIO_TYPES = {"EMAIL_ADDRESS": "email", "URL": "url", "PHONE_NUMBER": "phone",
                  "IP_ADDRESS": "ip", "CREDIT_CARD": "card", "IBAN_CODE": "iban"}
TEMPLATES = {
    "en": ["Please contact me at {} about my order.", "My details: {}",
           "I gave {} to your agent twice and nothing happened!", "Here it is: {}. Thanks."],
    "de": ["Bitte kontaktieren Sie mich unter {} wegen meiner Bestellung.",
           "Meine Angaben: {}", "Ich habe {} zweimal angegeben, aber nichts passiert.",
           "Hier ist es: {}. Danke!"],
    "fr": ["Merci de me contacter au {} pour ma commande.", "Mes coordonnées : {}",
           "J'ai donné {} deux fois, sans réponse.", "Voici : {}. Merci !"],
    "es": ["Por favor, contácteme en {} sobre mi pedido.", "Mis datos: {}",
           "Di {} dos veces y no pasó nada.", "Aquí está: {}. ¡Gracias!"],
    "it": ["Contattatemi al {} per il mio ordine.", "I miei dati: {}",
           "Ho indicato {} due volte, senza risposta.", "Eccolo: {}. Grazie!"],
    "nl": ["Neem contact met me op via {} over mijn bestelling.", "Mijn gegevens: {}",
           "Ik heb {} twee keer opgegeven en er gebeurde niets.", "Hier is het: {}. Bedankt!"],
    "ja": ["ご注文について{}までご連絡ください。", "連絡先：{}", "{}を二回伝えましたが返事がありません。",
           "こちらです：{}。よろしくお願いします。"],
    "zh": ["关于我的订单，请通过{}联系我。", "我的信息：{}", "我已经两次提供了{}，但是没有回复。",
           "在这里：{}。谢谢！"],
}
LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "ja_JP", "zh_CN")
IBAN_LOCALES = ("en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL")
NEGATIVES = ("order_number", "date", "time", "version", "price", "postcode", "isbn", "ean",
             "luhn_failing_16", "iban_bad_check")


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def _grouped(value: str, sizes, sep: str) -> str:
    parts, at = [], 0
    for size in sizes:
        parts.append(value[at:at + size])
        at += size
    return sep.join(p for p in parts + [value[at:]] if p)


def _iban_faker(fake, rng: random.Random):
    """Faker itself in IBAN countries; elsewhere (US, Japan, China: no IBANs, and Faker's
    stand-ins there have a wrong length) one of an IBAN country, as a customer abroad."""
    from faker import Faker

    if fake._locales[0] in IBAN_LOCALES:
        return fake
    other = Faker(rng.choice(IBAN_LOCALES))
    other.seed_instance(rng.randrange(2**32))
    return other


def _positive(fake, rng: random.Random, kind: str) -> str:
    if kind == "email":
        return rng.choice([fake.email, fake.free_email, fake.company_email])()
    if kind == "url":
        return rng.choice([fake.url, fake.uri,
                           lambda: f"www.{fake.domain_name()}/{fake.uri_path()}"])()
    if kind == "phone":
        return fake.phone_number()
    if kind == "ipv4":
        return rng.choice([fake.ipv4_public, fake.ipv4_private])()
    if kind == "ipv6":
        if rng.random() < 0.5:
            return fake.ipv6()
        groups = [rng.randrange(1, 0x10000) for _ in range(8)]
        start, zeros = rng.randrange(1, 6), rng.randrange(2, 4)
        groups[start:start + zeros] = [0] * zeros
        return str(ipaddress.IPv6Address(":".join(f"{g:x}" for g in groups)))
    if kind == "card":
        number = fake.credit_card_number()
        style = rng.random()
        if style < 0.4 or len(number) not in (15, 16):
            return number
        sizes = (4, 6) if len(number) == 15 else (4, 4, 4)
        return _grouped(number, sizes, rng.choice([" ", "-"]))
    if kind == "iban":
        iban = _iban_faker(fake, rng).iban()
        return iban if rng.random() < 0.5 else _grouped(iban, [4] * 8, " ")
    raise ValueError(kind)


def _negative(fake, rng: random.Random, kind: str) -> str:
    if kind == "order_number":
        n = rng.randrange(10**5, 10**10)
        return rng.choice([f"#{n}", f"A-{rng.randrange(2019, 2026)}-{n % 10**6:06d}",
                           f"{n:010d}", f"INV{n}", str(n)])
    if kind == "date":
        return fake.date(rng.choice(["%d.%m.%Y", "%Y-%m-%d", "%m/%d/%Y", "%d/%m/%Y",
                                     "%d-%m-%Y", "%d.%m.%y"]))
    if kind == "time":
        return fake.time(rng.choice(["%H:%M", "%H:%M:%S"]))
    if kind == "version":
        a, b, c = rng.randrange(0, 20), rng.randrange(0, 40), rng.randrange(0, 200)
        return rng.choice([f"{a}.{b}.{c}", f"v{a}.{b}", f"{a}.{b}.{c}-rc1"])
    if kind == "price":
        return rng.choice([fake.pricetag, lambda: f"{rng.randrange(1, 10**6):,} EUR"])()
    if kind == "postcode":
        return fake.postcode()
    if kind == "isbn":
        return fake.isbn13()
    if kind == "ean":
        return fake.ean13()
    if kind == "luhn_failing_16":
        while True:
            number = str(rng.randrange(10**15, 10**16))
            if not _luhn_ok(number):
                return number if rng.random() < 0.5 else _grouped(number, (4, 4, 4), " ")
    if kind == "iban_bad_check":
        iban = _iban_faker(fake, rng).iban()
        bad = f"{iban[:2]}{(int(iban[2:4]) + rng.randrange(1, 97)) % 97 + 2:02d}{iban[4:]}"
        bad = bad if bad[2:4] != iban[2:4] else f"{iban[:2]}00{iban[4:]}"
        return bad if rng.random() < 0.5 else _grouped(bad, [4] * 8, " ")
    raise ValueError(kind)


def make_corpus(per_type: int, seed: int) -> list:
    """Rows {text, spans: [[start, end, type]], locale, kind}; negatives have no spans."""
    from faker import Faker

    rng = random.Random(seed)
    rows = []
    for locale in LOCALES:
        fake = Faker(locale)
        fake.seed_instance(seed)
        templates = TEMPLATES[locale[:2]]
        for kind in TYPES + NEGATIVES:
            count = per_type if kind in TYPES else max(2, per_type // 4)
            for _ in range(count):
                positive = kind in TYPES
                value = (_positive if positive else _negative)(fake, rng, kind)
                template = rng.choice(templates)
                start = template.index("{}")
                text = template.replace("{}", value)
                spans = [[start, start + len(value), kind]] if positive else []
                rows.append({"text": text, "spans": spans, "locale": locale, "kind": kind})
    return rows


def our_predictions(texts: list, batch: int = 256) -> list:
    """Spans found by models/redaction.py, recovered from the redacted texts."""
    import tensorflow as tf

    from models.redaction import Redactor

    redactor = Redactor("all")
    by_placeholder = {t.placeholder: t.name for t in redactor.types}
    run = tf.function(redactor, input_signature=[tf.TensorSpec([None], tf.string)])
    predictions = []
    for at in range(0, len(texts), batch):
        redacted, _ = run(tf.constant(texts[at:at + batch]))
        for text, out in zip(texts[at:at + batch], redacted.numpy()):
            predictions.append(_spans_from_redacted(text, out.decode("utf-8"), by_placeholder))
    return predictions


def _spans_from_redacted(text: str, redacted: str, by_placeholder: dict) -> list:
    parts = re.split(r"(\[unused\d+\])", redacted)
    literal, placeholders = parts[0::2], parts[1::2]
    if not placeholders:
        return []
    pattern = "(.+?)".join(re.escape(p) for p in literal)
    match = re.fullmatch(pattern, text, re.DOTALL)
    if match is None:
        raise AssertionError(f"cannot align {redacted!r} with {text!r}")
    return [[match.start(i + 1), match.end(i + 1), by_placeholder[p]]
            for i, p in enumerate(placeholders)]


PRESIDIO_SCRIPT = r'''
import json, sys
import tldextract
tldextract.extract = tldextract.TLDExtract(suffix_list_urls=())  # bundled list, offline
from presidio_analyzer import EntityRecognizer
from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer, EmailRecognizer, IbanRecognizer, IpRecognizer, PhoneRecognizer,
    UrlRecognizer)

recognizers = [EmailRecognizer(), UrlRecognizer(), PhoneRecognizer(), IpRecognizer(),
               CreditCardRecognizer(), IbanRecognizer()]
out = []
for text in json.load(sys.stdin):
    results = []
    for recognizer in recognizers:
        results += recognizer.analyze(text, recognizer.supported_entities, None)
    results = EntityRecognizer.remove_duplicates(results)
    # As the anonymizer resolves conflicts: a result inside another of at least its
    # score is dropped (e.g. the URL "example.com" inside an e-mail address).
    kept = [r for r in results if not any(
        o is not r and o.start <= r.start and r.end <= o.end and o.score >= r.score
        and (o.start, o.end) != (r.start, r.end) for o in results)]
    out.append([[r.start, r.end, r.entity_type, r.score] for r in kept])
json.dump(out, sys.stdout)
'''


def presidio_python(python: str, cache: str) -> str:
    """A virtualenv with Presidio's pinned packages (made once, under ``cache``)."""
    venv = os.path.join(cache, "-".join(p.replace("==", "-") for p in PRESIDIO[:1]))
    marker = os.path.join(venv, ".installed-" + "-".join(sorted(PRESIDIO)))
    executable = os.path.join(venv, "bin", "python")
    if not os.path.exists(marker):
        if not os.path.exists(python):
            raise SystemExit(f"--presidio_python {python} not found (Presidio needs >= 3.10;"
                             " recent releases >= 3.11)")
        subprocess.run([python, "-m", "venv", "--clear", venv], check=True)
        subprocess.run([executable, "-m", "pip", "install", "-q", *PRESIDIO], check=True)
        open(marker, "w").close()
    return executable


def presidio_predictions(texts: list, python: str) -> list:
    proc = subprocess.run([python, "-c", PRESIDIO_SCRIPT], input=json.dumps(texts),
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"Presidio failed:\n{proc.stderr[-3000:]}")
    predictions = []
    for text, found in zip(texts, json.loads(proc.stdout)):
        spans = []
        for start, end, entity, _score in found:
            kind = PRESIDIO_TYPES.get(entity)
            if kind == "ip":
                kind = "ipv6" if ":" in text[start:end] else "ipv4"
            if kind:
                spans.append([start, end, kind])
        predictions.append(spans)
    return predictions


def _alnum(text: str, start: int, end: int) -> set:
    return {i for i in range(start, end) if text[i].isalnum()}


def score(rows: list, predictions: list) -> dict:
    """Per type: tp, fp, fn, precision, recall; and per negative kind: texts with a hit."""
    stats = {t: {"tp": 0, "fp": 0, "fn": 0} for t in TYPES}
    negatives_hit = {k: 0 for k in NEGATIVES}
    for row, found in zip(rows, predictions):
        text = row["text"]
        gold = [(s, e, t, _alnum(text, s, e)) for s, e, t in row["spans"]]
        matched = set()
        for start, end, kind in found:
            covered = _alnum(text, start, end)
            hit = next((i for i, (_, _, t, chars) in enumerate(gold) if i not in matched
                        and t == kind and chars == covered), None)
            if hit is None:
                stats[kind]["fp"] += 1
            else:
                matched.add(hit)
                stats[kind]["tp"] += 1
        for i, (_, _, kind, _) in enumerate(gold):
            if i not in matched:
                stats[kind]["fn"] += 1
        if not row["spans"] and found:
            negatives_hit[row["kind"]] += 1
    for values in stats.values():
        found, labelled = values["tp"] + values["fp"], values["tp"] + values["fn"]
        values["precision"] = round(values["tp"] / found, 4) if found else None
        values["recall"] = round(values["tp"] / labelled, 4) if labelled else None
    return {"per_type": stats, "negative_texts_with_a_detection": negatives_hit}


def _p50(values: list) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def serving_cost(texts: list, repeats: int) -> dict:
    """p50 of single-text calls of SavedModels with redaction on vs. off, interleaved."""
    import tensorflow as tf

    from models import checkpoint
    from models.hparams import DEFAULT_CHECKPOINT
    from models.redaction import Redactor
    from models.tokenizer import BertTextTokenizer, pad_to_dense

    ckpt = checkpoint.resolve_checkpoint_dir(DEFAULT_CHECKPOINT)
    tokenizer = BertTextTokenizer(checkpoint.read_vocab(ckpt), checkpoint.is_lower_case(ckpt),
                                  128)
    classifier = checkpoint.load_classifier(ckpt, 2)

    class Served(tf.Module):
        def __init__(self, redact: bool, model):
            super().__init__()
            self.redactor, self.tokenizer, self.model = Redactor("all" if redact else "none"), \
                tokenizer, model

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def __call__(self, text):
            ids = self.tokenizer(self.redactor(text)[0])
            if self.model is None:
                return ids.flat_values
            dense, mask = pad_to_dense(ids, self.tokenizer.pad_id)
            logits = self.model({"input_ids": dense, "attention_mask": mask,
                                 "token_type_ids": tf.zeros_like(dense)}, training=False).logits
            return tf.nn.softmax(logits)

    folder = tempfile.mkdtemp(prefix="redaction_bench_")
    result = {}
    for name, model in (("tokenizer", None), ("classifier_minilm_l6", classifier)):
        loaded = {}
        for redact in (False, True):
            path = os.path.join(folder, f"{name}_{redact}")
            tf.saved_model.save(Served(redact, model), path)
            loaded[redact] = tf.saved_model.load(path)
        for subset, sample in texts.items():
            times = {False: [], True: []}
            inputs = [tf.constant([t]) for t in sample]
            for x in inputs[:20]:
                loaded[False](x), loaded[True](x)
            for r in range(repeats):
                for i, x in enumerate(inputs):
                    order = (False, True) if (i + r) % 2 else (True, False)
                    for redact in order:
                        started = time.perf_counter()
                        loaded[redact](x)
                        times[redact].append(time.perf_counter() - started)
            off, on = _p50(times[False]) * 1e3, _p50(times[True]) * 1e3
            result[f"{name}/{subset}"] = {"p50_ms_off": round(off, 3), "p50_ms_on": round(on, 3),
                                          "ratio": round(on / off, 3),
                                          "calls_each": len(times[True])}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per_type", type=int, default=40,
                        help="Texts per type and locale (negatives: a quarter of it).")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--presidio_python", default=PRESIDIO_PYTHON)
    parser.add_argument("--cache_dir", default=CACHE)
    parser.add_argument("--skip_presidio", action="store_true")
    parser.add_argument("--skip_serving", action="store_true")
    parser.add_argument("--repeats", type=int, default=3,
                        help="Passes over the latency texts.")
    args = parser.parse_args()

    rows = make_corpus(args.per_type, args.seed)
    texts = [r["text"] for r in rows]
    started = time.time()
    ours = our_predictions(texts)
    result = {"corpus": {"texts": len(rows), "labelled_values": sum(len(r["spans"]) for r in rows),
                         "locales": list(LOCALES), "seed": args.seed},
              "ours": score(rows, ours),
              "ours_seconds": round(time.time() - started, 1)}
    if not args.skip_presidio:
        python = presidio_python(args.presidio_python, args.cache_dir)
        started = time.time()
        result["presidio"] = score(rows, presidio_predictions(texts, python))
        result["presidio_seconds"] = round(time.time() - started, 1)
        result["presidio_packages"] = PRESIDIO
    result["misses"] = _examples(rows, ours)
    if not args.skip_serving:
        with open(os.path.join(REPO, "data", "sample", "sst2_sample.tsv"), encoding="utf-8") as f:
            sst2 = [line.split("\t")[0] for line in f.read().splitlines()[1:201]]
        sample = random.Random(args.seed).sample(texts, 200)
        result["serving"] = serving_cost({"corpus": sample, "sst2_no_pii": sst2}, args.repeats)
    write("redaction", result)
    print(table(result))


def _examples(rows: list, predictions: list, limit: int = 12) -> list:
    """A few texts where our redaction differs from the labels, to look at."""
    wrong = []
    for row, found in zip(rows, predictions):
        gold = sorted(tuple(s) for s in row["spans"])
        if sorted(tuple(s) for s in found) != gold:
            wrong.append({"text": row["text"], "labelled": gold, "found": found})
    return wrong[:limit]


def table(result: dict) -> str:
    lines = ["| type | ours precision | ours recall | Presidio precision | Presidio recall |",
             "| --- | --- | --- | --- | --- |"]
    theirs = result.get("presidio", {}).get("per_type", {})
    for kind in TYPES:
        ours = result["ours"]["per_type"][kind]
        other = theirs.get(kind, {})
        cells = [ours["precision"], ours["recall"], other.get("precision"), other.get("recall")]
        lines.append(f"| {kind} | " + " | ".join("-" if c is None else f"{c:.3f}"
                                                 for c in cells) + " |")
    if "serving" in result:
        lines += ["", "| model / texts | p50 off (ms) | p50 on (ms) | on / off |",
                  "| --- | --- | --- | --- |"]
        for name, v in result["serving"].items():
            lines.append(f"| {name} | {v['p50_ms_off']:.3f} | {v['p50_ms_on']:.3f} | "
                         f"{v['ratio']:.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
