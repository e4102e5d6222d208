"""The settings checks before a run read a bucket (moto's S3 server)."""


def test_the_settings_checks_read_a_bucket(tmp_path):
    """The checks before any component run on s3:// as TextExampleGen would (moto's S3
    server; tf.io.gfile on s3:// runs in a child process, see test_object_storage)."""
    import json
    import subprocess
    import sys

    from tests.support.paths import REPO
    from tests.support.object_storage import S3Server
    server = S3Server(str(tmp_path / "moto.log"))
    try:
        bucket = server.bucket("checks")
        server.put(bucket, "data/span-3/part.tsv", "sentence\tlabel\ngood\t1\n")
        server.put(bucket, "schema.pbtxt", "")
        probe = (
            "import json, sys\n"
            "from local import local_runner, preflight\n"
            "from pipeline.config import load_config\n"
            "from serving.filesystems import exit_process\n"
            "found = []\n"
            "for settings in json.loads(sys.argv[1]):\n"
            "    config = load_config(None, settings)\n"
            "    local_runner.use_storage(config)\n"
            "    found.append([preflight.input_problem(config),\n"
            "                  preflight.schema_problem(config.data.schema_path)])\n"
            "print(json.dumps(found), flush=True)\n"
            "exit_process(0)\n")
        common = {"storage.s3_endpoint": server.endpoint, "storage.local_dir": str(tmp_path)}
        cases = [dict(common, **{"data.input_dir": "s3://checks/data",
                                 "data.span_pattern": "span-{SPAN}",
                                 "data.schema_path": "s3://checks/schema.pbtxt"}),
                 dict(common, **{"data.input_dir": "s3://checks/nothing",
                                 "data.schema_path": "s3://checks/none.pbtxt"}),
                 dict(common, **{"data.input_dir": "s3://checks/data",
                                 "data.span_pattern": "day-{SPAN}"})]
        done = subprocess.run([sys.executable, "-c", probe, json.dumps(cases)], cwd=REPO,
                              env=server.env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        ok, missing, no_span = json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        server.close()
    assert ok == [None, None]
    assert missing[0].startswith("data.input_dir: folder s3://checks/nothing does not exist")
    assert missing[1].startswith("data.schema_path: s3://checks/none.pbtxt does not exist;")
    assert no_span[0].startswith("data.span_pattern: no folder named like day-{SPAN}")
