"""The model and its card written on a bucket (moto's S3 server)."""
import os
import subprocess
import sys

COPY_ON_BUCKET = """
import sys
import tensorflow as tf
from components.model_card import card, executor
from pipeline.config import StorageConfig
from serving.filesystems import exit_process, register
import os
os.environ.update(StorageConfig(s3_endpoint=sys.argv[2]).environment())
register()
executor.copy_tree(sys.argv[1] + "/Trainer/model/7", sys.argv[1] + "/ModelCard/model/9")
with tf.io.gfile.GFile(card.card_path(sys.argv[1] + "/ModelCard/model/9"), "w") as f:
    f.write("# Model card")
exit_process(0)
"""


def test_model_and_card_written_on_a_bucket(s3, tmp_path):  # noqa: F811 (the fixture)
    from tests.support.serving_models import export_half_plus_two

    bucket = s3.bucket("model-card")
    s3.put_folder(export_half_plus_two(str(tmp_path / "model"), 1), bucket,
                  "root/Trainer/model/7/Format-Serving")
    run = subprocess.run([sys.executable, "-c", COPY_ON_BUCKET, f"s3://{bucket}/root",
                          s3.endpoint], cwd=tmp_path, env=s3.env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-5000:]
    source = [k.split("/model/7/", 1)[1] for k in s3.keys(bucket, "root/Trainer/")]
    copied = [k.split("/model/9/", 1)[1] for k in s3.keys(bucket, "root/ModelCard/")]
    assert "Format-Serving/saved_model.pb" in source
    assert copied == sorted(source + ["Format-Serving/assets.extra/model_card.md"])
    assert s3.read(bucket, "root/ModelCard/model/9/Format-Serving/saved_model.pb") == \
        s3.read(bucket, "root/Trainer/model/7/Format-Serving/saved_model.pb")
    assert s3.read(bucket, "root/ModelCard/model/9/Format-Serving/assets.extra/"
                           "model_card.md") == b"# Model card"
    assert not [p for p in os.listdir(tmp_path) if p != "model"]  # nothing went local
