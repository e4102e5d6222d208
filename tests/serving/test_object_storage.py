"""Each custom component's file I/O on an S3 bucket (moto's S3 server, a child process on
127.0.0.1), in a child process: tensorflow-io 0.37.1 aborts the exit of a process that
used s3:// (see serving/filesystems.py)."""
import json
import subprocess
import sys

import numpy as np
import pytest

from tests.support.object_storage import local_entries, span_tsv
from tests.support.paths import CURATED_SCHEMA
from tests.support.pipeline_runs import sample_rows


@pytest.mark.storage
def test_each_custom_components_file_io_runs_on_the_bucket(s3, tiny_checkpoint, tmp_path):
    from tests.support.serving_models import export_half_plus_two, write_predict_warmup

    bucket = s3.bucket("component-io")
    rows = sample_rows(600)
    s3.put(bucket, "data/span-1/reviews.tsv", span_tsv(rows[:200]))
    s3.put(bucket, "data/span-2/reviews.tsv", span_tsv(rows[200:400]))
    drifted = [r for r in rows[400:] if r[1] == "1"][:90] + \
        [r for r in rows[400:] if r[1] == "0"][:10]
    s3.put(bucket, "data/span-3/reviews.tsv", span_tsv(drifted))
    with open(CURATED_SCHEMA, "rb") as f:
        s3.put(bucket, "artifacts/schema/schema.pbtxt", f.read())
    model = export_half_plus_two(str(tmp_path / "model"), 1)
    write_predict_warmup(model, "serving_default", {"x": np.array([1.0, 2.0], np.float32)})
    s3.put_folder(model, bucket, "artifacts/model/Format-Serving")

    code = ("import json, sys; from tests.serving.test_object_storage import component_io; "
            "from serving.filesystems import exit_process; "
            "print(json.dumps(component_io(*sys.argv[1:]))); exit_process(0)")
    run = subprocess.run([sys.executable, "-c", code, f"s3://{bucket}", s3.endpoint,
                          tiny_checkpoint], cwd=tmp_path, env=s3.env, capture_output=True,
                         text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-5000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])

    # TextExampleGen: spans listed in the bucket, a span's file read by Beam, the
    # examples written back by Beam and read by TensorFlow.
    assert result["spans"] == [[1, "span-1"], [2, "span-2"], [3, "span-3"]]
    assert result["examples_written"] == 200
    assert [k for k in s3.keys(bucket, "io/examples/") if k.endswith(".gz")]
    # DataGate: statistics and anomalies read from the bucket.
    assert result["data_gate_clean"] == "passed"
    assert "split 'eval', feature 'label': Unexpected string values" in result["data_gate_bad"]
    # DriftCheck: both spans read from the bucket, the report written to it, then the stop.
    assert result["drift_error"].startswith("data drift: span 3 vs span 2: label distribution")
    report = json.loads(s3.read(bucket, "io/drift/drift.json"))
    assert (report["span"], report["previous_span"]) == (3, 2)
    assert report["figures"]["label_l_infinity"] > 0.25 and report["problems"]
    # ServingCheck: the candidate read from the bucket, the blessing written to it.
    assert s3.keys(bucket, "io/infra_blessing/") == ["io/infra_blessing/INFRA_BLESSED"]
    assert s3.read(bucket, "io/infra_blessing/INFRA_BLESSED").decode() == \
        "loaded; 1 warmup requests answered over gRPC and REST\n"
    assert not [p for p in local_entries(str(tmp_path)) if "s3:" in p or bucket in p]
