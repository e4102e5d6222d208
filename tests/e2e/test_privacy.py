"""Privacy by construction, end to end: personal data planted in the training files is in
no file the pipeline writes, the pushed model, the feedback folder, the metadata or the
logs; the served model sees placeholders, not the values."""
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from cli.main import main
from models import export
from tests.support.files import files_holding
from tests.support.paths import REPO
from tests.support.pipeline_runs import cli_args, sample_rows, tiny_overrides
from tests.support.saved_models import NON_CORE_OPS

TICKET = "ticket=TCK-[0-9]{6}"  # the custom pattern
PLANTED = {
    "email": ["jean.dupont@exemple.fr", "li.wei@example.cn", "anna.svensson@firma.se",
              "o'brien.k+tickets@mail.example.co.uk"],
    "phone": ["+44 20 7946 0958", "(555) 123-4567", "+49 30 12345678", "06 12 34 56 78",
              "+86 139 1234 5678", "0049 89 4567 8910", "+7 495 123-45-67", "555-867-5309"],
    "ipv4": ["192.168.10.77", "203.0.113.254"],
    "ipv6": ["2001:db8:85a3::8a2e:370:7334", "fe80::1ff:fe23:4567:890a"],
    "card": ["4111 1111 1111 1111", "5500-0000-0000-0004", "378282246310005",
             "6011111111111117"],
    "iban": ["DE89 3704 0044 0532 0130 00", "GB82WEST12345698765432",
             "FR1420041010050500013M02606"],
    "url": ["https://shop.example.com/orders?id=42&user=jd", "www.example.org/account/778"],
    "ticket": ["TCK-482913", "TCK-775102"],
}
TEMPLATES = ["écrivez-moi à {} s'il vous plaît", "Bitte kontaktieren Sie {} morgen",
             "请联系 {} 谢谢", "Свяжитесь со мной: {} сегодня", "my details: {}, thanks"]
# Sent to the served model (recorded as feedback): values of every type again.
SERVED = ["refund to DE89 3704 0044 0532 0130 00 please, mail jean.dupont@exemple.fr",
          "my card 4111 1111 1111 1111 was charged twice, call +44 20 7946 0958",
          "login from 2001:db8:85a3::8a2e:370:7334 and 192.168.10.77, see TCK-482913"]
LUHN_FAILS = "4111111111111112"


def _needles() -> list:
    """Every planted value as written, and its digits alone for the numbers."""
    values = [v for vs in PLANTED.values() for v in vs]
    digits = ["".join(c for c in v if c.isdigit()) for v in
              PLANTED["phone"] + PLANTED["card"] + PLANTED["iban"]]
    return sorted(set(values + [d for d in digits if len(d) >= 8]))


def _write_data(folder) -> int:
    rows = [f"{t}\t{label}" for t, label in sample_rows(160)]
    planted = [template.format(value) for values in PLANTED.values() for value in values
               for template in TEMPLATES]
    rows += [f"{text}\t{i % 2}" for i, text in enumerate(planted)]
    os.makedirs(folder)
    with open(os.path.join(folder, "tickets.tsv"), "w", encoding="utf-8") as f:
        f.write("sentence\tlabel\n" + "\n".join(rows) + "\n")
    return len(planted)


def _string_top_values(stats_root: str) -> list:
    """The text feature's most frequent values in every split's statistics."""
    from tensorflow_metadata.proto.v0 import statistics_pb2

    values = []
    for path in glob.glob(os.path.join(stats_root, "**", "FeatureStats.pb"), recursive=True):
        with open(path, "rb") as f:
            stats = statistics_pb2.DatasetFeatureStatisticsList.FromString(f.read())
        for feature in (f for d in stats.datasets for f in d.features
                        if f.path.step == ["text"]):
            values += [v.value for v in feature.string_stats.top_values]
    return values


@pytest.mark.serving  # a real pipeline run, then the pushed model behind a real model server
def test_planted_personal_data_reaches_no_file_model_feedback_or_log(
        tmp_path, tiny_checkpoint, capfd):
    from serving.client import RestClient, Target
    from serving.process import ServerProcess

    planted = _write_data(str(tmp_path / "data"))
    overrides = tiny_overrides(tmp_path, tiny_checkpoint, str(tmp_path / "data"),
                               **{"data.schema_path": "", "privacy.custom_patterns": TICKET})
    assert main(cli_args(overrides)) == 0
    run_output = capfd.readouterr()
    assert "Pushed: version" in run_output.out
    summary = next(line for line in run_output.out.splitlines()
                   if line.startswith("Redacted at ingestion: train "))
    counts = {part.split("=")[0]: int(part.split("=")[1])
              for split in summary.split(": ", 1)[1].split("; ")
              for part in split.split(" ")[1:] if "=" in part}
    assert set(counts) == set(PLANTED) and all(counts.values()), summary
    assert "; eval " in summary

    pipeline_root = str(tmp_path / "pipeline_output")
    top = _string_top_values(pipeline_root)
    assert top and any("[unused" in v for v in top), top  # texts are in the statistics

    model_base = str(tmp_path / "serving_model" / "bert_classifier")
    feedback = tmp_path / "feedback"
    with ServerProcess(["--model_name", "bert_classifier", "--model_base_path", model_base,
                        "--feedback_dir", str(feedback)]) as server:
        with RestClient(server.rest_url, Target("bert_classifier"), timeout=60) as rest:
            recorded = rest.predict_texts(SERVED)
            assert rest.correct([{"id": p.id, "label": "1"} for p in recorded]) == 3

            def probabilities(text: str) -> np.ndarray:
                return rest.predict({"text": np.array([text], dtype=object)},
                                    "predict_text")["probabilities"][0]

            for a, b in (("jean.dupont@exemple.fr", "bob@test.org"),
                         ("+44 20 7946 0958", "(555) 123-4567"),
                         ("4111 1111 1111 1111", "5500-0000-0000-0004")):
                text = "please check {} before friday"
                np.testing.assert_array_equal(probabilities(text.format(a)),
                                              probabilities(text.format(b)))
            assert not np.array_equal(probabilities(f"order {LUHN_FAILS} arrived"),
                                      probabilities("order 4111111111111113 arrived"))
            redacted = rest.predict({"text": np.array([f"order {LUHN_FAILS} arrived"],
                                                      dtype=object)}, "redact_text")["output"]
            assert [v.decode() if isinstance(v, bytes) else v for v in redacted] == [
                f"order {LUHN_FAILS} arrived"]
        server_log = server.log()
    assert len(list(feedback.iterdir())) == 2  # predictions and corrections

    # Redaction is in the pushed model, with only ops stock TF Serving registers.
    [version] = glob.glob(os.path.join(model_base, "*"))
    ops = export.saved_model_ops(version)
    assert {"StaticRegexReplace", "UnicodeDecode", "UnsortedSegmentSum"} <= ops
    result = subprocess.run([sys.executable, "-c", NON_CORE_OPS, json.dumps(sorted(ops))],
                            capture_output=True, text=True, cwd=REPO, timeout=300)
    assert set(json.loads(result.stdout.strip().splitlines()[-1])) <= \
        export.TF_SERVING_TF_TEXT_OPS

    assert os.path.isfile(os.path.join(pipeline_root, "metadata.sqlite"))  # scanned below
    needles = _needles()
    logs = run_output.out + run_output.err + capfd.readouterr().err + server_log
    assert [n for n in needles if n in logs] == []
    for root in (pipeline_root, str(tmp_path / "serving_model"), str(feedback)):
        assert files_holding(root, needles) == [], root
    # The scan finds what is there: every value, as written, in the input files.
    assert {n for _, n in files_holding(str(tmp_path / "data"), needles)} >= {
        v for values in PLANTED.values() for v in values}
    assert planted == sum(len(v) for v in PLANTED.values()) * len(TEMPLATES)
