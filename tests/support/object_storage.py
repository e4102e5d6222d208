"""moto's S3 server as a child process, and files written for a bucket."""
import os
import subprocess
import sys
import time

from serving.process import free_port
from tests.support.paths import REPO

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "us-east-1"}
# Endpoint variables of the machine, if any, are left out: the settings must do it.
ENDPOINT_VARIABLES = ("S3_ENDPOINT", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")


class S3Server:
    """moto's S3 server, a child process on a free 127.0.0.1 port."""

    def __init__(self, log_path: str, timeout: float = 60.0):
        import boto3

        self.endpoint = f"http://127.0.0.1:{free_port()}"
        port = self.endpoint.rsplit(":", 1)[1]
        self.env = {k: v for k, v in os.environ.items() if k not in ENDPOINT_VARIABLES}
        # moto's request recorder (off until start_recording) writes beside the log
        self.env.update(CREDENTIALS, PYTHONPATH=REPO,
                        MOTO_RECORDER_FILEPATH=log_path + ".recording")
        self._log = open(log_path, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", port],
            stdout=self._log, stderr=subprocess.STDOUT, env=self.env)
        self.client = boto3.client("s3", endpoint_url=self.endpoint,
                                   aws_access_key_id="testing",
                                   aws_secret_access_key="testing", region_name="us-east-1")
        deadline = time.monotonic() + timeout
        while True:  # polls until the server answers S3's ListBuckets
            if self.process.poll() is not None:
                raise RuntimeError(f"moto's server exited with {self.process.returncode}; "
                                   f"see {log_path}")
            try:
                self.client.list_buckets()
                break
            except Exception:  # noqa: BLE001 - not listening yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def bucket(self, name: str) -> str:
        self.client.create_bucket(Bucket=name)
        return name

    def put(self, bucket: str, key: str, body) -> None:
        self.client.put_object(Bucket=bucket, Key=key,
                               Body=body.encode() if isinstance(body, str) else body)

    def put_folder(self, local: str, bucket: str, prefix: str) -> None:
        for folder, _, files in os.walk(local):
            for name in files:
                path = os.path.join(folder, name)
                self.client.upload_file(path, bucket,
                                        f"{prefix}/{os.path.relpath(path, local)}")

    def keys(self, bucket: str, prefix: str = "") -> list:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                      Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def read(self, bucket: str, key: str) -> bytes:
        return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()

    def start_recording(self) -> None:
        """From now on the server records every request (moto's recorder)."""
        import requests
        requests.post(f"{self.endpoint}/moto-api/recorder/reset-recording", timeout=30)
        requests.post(f"{self.endpoint}/moto-api/recorder/start-recording", timeout=30)

    def recording(self) -> list:
        """(method, path with query) of every request since ``start_recording``, in order."""
        import json

        import requests
        text = requests.get(f"{self.endpoint}/moto-api/recorder/download-recording",
                            timeout=30).text
        entries = [json.loads(line) for line in text.splitlines() if line.strip()]
        return [(e["method"], e["url"].split("://", 1)[-1].split("/", 1)[-1])
                for e in entries]

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self._log.close()


def local_entries(folder: str) -> list:
    """Every file and folder under ``folder``, relative to it."""
    return sorted(os.path.relpath(os.path.join(d, n), folder)
                  for d, dirs, files in os.walk(folder) for n in dirs + files)
