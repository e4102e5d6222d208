"""The push on a bucket: uploaded and verified under a staging prefix, then copied inside
the store to the version with saved_model.pb last; a bad version is removed, and a
version that exists is never written into."""
import hashlib
import os
import subprocess
import sys
import urllib.parse

import pytest

from components.atomic_pusher.publish import STAGING_PREFIX
from tests.support.push_models import tree

PUSH_TO_BUCKET = """
import os, sys
from components.atomic_pusher.publish import push_version, PushError
from pipeline.config import StorageConfig
from serving.filesystems import exit_process, register
os.environ.update(StorageConfig(s3_endpoint=sys.argv[1]).environment())
register()
push_version(sys.argv[2], sys.argv[3], "17")
try:
    push_version(sys.argv[4], sys.argv[3], "18")
except PushError as error:
    print(error)
try:  # a second push of version 17 (no rename there to refuse it): nothing is written
    push_version(sys.argv[4], sys.argv[3], "17")
except PushError as error:
    print(error)
exit_process(0)
"""


def test_on_a_bucket_saved_model_pb_comes_last_and_a_bad_version_is_removed(
        s3, tmp_path, model):  # noqa: F811 (the fixture)
    bucket = s3.bucket("push")
    broken = tmp_path / "broken"
    subprocess.run(["cp", "-r", model, str(broken)], check=True)
    (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
    s3.start_recording()
    run = subprocess.run([sys.executable, "-c", PUSH_TO_BUCKET, s3.endpoint, model,
                          f"s3://{bucket}/serving/m", str(broken)], env=s3.env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-5000:]
    assert f"s3://{bucket}/serving/m/{STAGING_PREFIX}18-" in run.stdout
    assert "/saved_model.pb is not a SavedModel" in run.stdout
    assert "was removed" in run.stdout
    assert f"pushing version 17 to s3://{bucket}/serving/m failed: it exists already" \
        in run.stdout  # the broken model did not overwrite nor remove version 17
    keys = [k.split("/", 2)[2] for k in s3.keys(bucket, "serving/")]
    assert keys == sorted(f"17/{path}" for path in tree(model)), keys
    assert s3.read(bucket, "serving/m/17/saved_model.pb") == \
        open(os.path.join(model, "saved_model.pb"), "rb").read()
    # Uploaded and read back under the staging prefix; the version's prefix is written
    # only after that (TF Serving aspires it as soon as it lists it, and gives a failed
    # load up after 5 tries a minute apart: an upload must not happen there), by copies
    # inside the store with saved_model.pb last.
    requests = [(method, path.split("?")[0]) for method, path in s3.recording()]
    staged = [i for i, (_, path) in enumerate(requests)
              if path.startswith(f"{bucket}/serving/m/{STAGING_PREFIX}17-")]
    version = [i for i, (_, path) in enumerate(requests)
               if path.startswith(f"{bucket}/serving/m/17/")]
    uploads = [i for i in staged if requests[i][0] in ("PUT", "POST")]
    assert any(requests[i][0] == "GET" for i in staged), requests  # read back
    assert uploads and version and min(version) > max(uploads), requests
    pb_writes = [i for i in version if requests[i][1].endswith("/saved_model.pb")
                 and requests[i][0] in ("PUT", "POST")]
    others = [i for i in version if not requests[i][1].endswith("/saved_model.pb")
              and requests[i][0] in ("PUT", "POST")]
    assert pb_writes and others and max(others) < min(pb_writes), requests
    assert s3.keys(bucket, f"serving/m/{STAGING_PREFIX}") == []  # removed once copied


KILLED_PUSH = """
import os, sys
from components.atomic_pusher.publish import push_version
from pipeline.config import StorageConfig
from serving.filesystems import register
os.environ.update(StorageConfig(s3_endpoint=sys.argv[1]).environment())
register()
push_version(sys.argv[2], sys.argv[3], "21")  # blocks reading the FIFO, killed there
"""

CLEAN_UP = """
import os, sys
from components.atomic_pusher.publish import remove_stale_copies
from pipeline.config import StorageConfig
from serving.filesystems import exit_process, register
os.environ.update(StorageConfig(s3_endpoint=sys.argv[1]).environment())
register()
print(remove_stale_copies(sys.argv[2], stale_after_s=float(sys.argv[3])))
exit_process(0)
"""


def test_a_push_killed_on_a_bucket_leaves_a_copy_the_next_push_removes(
        s3, tmp_path, model):  # noqa: F811 (the fixture)
    """kill -9 mid-upload leaves the staging prefix (no model server loads it), and a
    numbered version without saved_model.pb (left by a kill during the final copy, or by
    older pushes: TF Serving would aspire it and fail) is a leftover too: the next push
    removes either once no object of it is newer than stale_after_s; a push still
    writing is kept."""
    bucket = s3.bucket("killed")
    base = f"s3://{bucket}/serving/m"
    blocking = tmp_path / "blocking"
    subprocess.run(["cp", "-r", model, str(blocking)], check=True)
    fifo = blocking / "variables" / "variables.zz"  # copied after the variables
    os.mkfifo(fifo)
    s3.put(bucket, "serving/m/20/saved_model.pb", open(
        os.path.join(model, "saved_model.pb"), "rb").read())  # a whole version beside it
    push = subprocess.Popen([sys.executable, "-c", KILLED_PUSH, s3.endpoint,
                             str(blocking), base], env=s3.env)
    try:
        with open(fifo, "wb"):  # returns once the push reads it: every earlier file is in
            push.kill()
    finally:
        push.kill()
        push.wait(timeout=60)
    left = s3.keys(bucket, f"serving/m/{STAGING_PREFIX}21-")
    assert left and not any(k.endswith("/saved_model.pb") for k in left), left
    assert s3.keys(bucket, "serving/m/21/") == []  # the version never appeared
    staging = left[0].split("/")[2]
    s3.put(bucket, "serving/m/22/variables/variables.index", b"x")  # a half-copied version

    def clean_up(stale_after_s):
        run = subprocess.run([sys.executable, "-c", CLEAN_UP, s3.endpoint, base,
                              str(stale_after_s)], env=s3.env, capture_output=True,
                             text=True, timeout=600)
        assert run.returncode == 0, run.stderr[-5000:]
        return run.stdout.strip().splitlines()[-1]

    # a model placed by hand as saved_model.pbtxt (TF Serving loads it) is no leftover
    s3.put(bucket, "serving/m/19/saved_model.pbtxt", "meta_graphs {}")
    assert clean_up(3600) == "[]"  # as young as a push still writing: kept
    assert s3.keys(bucket, f"serving/m/{STAGING_PREFIX}21-") == left
    assert clean_up(0) == str([staging, "22"])
    assert s3.keys(bucket, f"serving/m/{STAGING_PREFIX}") == []
    assert s3.keys(bucket, "serving/m/22/") == []
    assert s3.keys(bucket, "serving/m/20/") == ["serving/m/20/saved_model.pb"]
    assert s3.keys(bucket, "serving/m/19/") == ["serving/m/19/saved_model.pbtxt"]


PUSH_ONE = """
import os, sys
from components.atomic_pusher.publish import push_version, PushError
from pipeline.config import StorageConfig
from serving.filesystems import exit_process, register
os.environ.update(StorageConfig(s3_endpoint=sys.argv[1]).environment())
register()
try:
    print("pushed", push_version(sys.argv[2], sys.argv[3], "17"), flush=True)
except PushError as error:
    print(error, flush=True)
exit_process(0)
"""


def _wait_held(proxy, push, what: str) -> None:
    """Until ``proxy`` holds its request; fails at once with the push's output if the
    push ended first (or after 300 s)."""
    for _ in range(600):
        if proxy.held.wait(timeout=0.5):
            return
        if push.poll() is not None:
            break
    push.kill()
    raise AssertionError(f"{what}: {push.communicate()}")


@pytest.mark.parametrize("b_lists", ["before A's copy", "after A's copy"])
def test_two_pushes_of_one_version_on_a_bucket_never_mix_or_remove_each_other(
        s3, tmp_path, model, b_lists):  # noqa: F811 (the fixture)
    """Two pipelines push version 17 in the same second. A proxy in front of the bucket
    holds push A's first copy into 17/ (A found 17/ absent and is writing it) while push B
    runs. B must stop before writing 17/: had it gone on, A's held copy would overwrite
    one of B's files and A, then failing on the next, would remove the version B had
    published. Second order: a second proxy holds B's listing of the serving folder until
    A is done (its staging copy removed): B must then find 17/ there, and stop without
    removing it (B checked 17/ before listing, found it absent, listed nothing, failed on
    its first copy and removed A's version)."""
    from tests.support.holding_proxy import HoldingProxy
    from tests.support.push_models import export

    bucket = s3.bucket("race-" + b_lists.split()[0])  # the server is the module's
    base = f"s3://{bucket}/serving/m"
    other = export(tmp_path / "other", seed=2)
    proxy = HoldingProxy(s3.endpoint, lambda method, path, headers: (
        method == "PUT" and path.startswith(f"/{bucket}/serving/m/17/")
        and "x-amz-copy-source" in {k.lower() for k in headers.keys()}))
    listing = HoldingProxy(proxy.endpoint, lambda method, path, headers: (
        b_lists == "after A's copy" and method == "GET" and urllib.parse.parse_qs(
            urllib.parse.urlsplit(path).query).get("prefix") == ["serving/m/"]))
    # B -> listing -> proxy -> the bucket
    try:
        first = subprocess.Popen([sys.executable, "-c", PUSH_ONE, proxy.endpoint, model, base],
                                 env=s3.env, stdout=subprocess.PIPE, text=True)
        _wait_held(proxy, first, "push A never copied into 17/")
        second = subprocess.Popen([sys.executable, "-c", PUSH_ONE, listing.endpoint, other,
                                   base], env=s3.env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        if b_lists == "after A's copy":
            _wait_held(listing, second, "push B never listed the folder")
            proxy.release()
            first_out, _ = first.communicate(timeout=600)
            listing.release()
            second_out, second_err = second.communicate(timeout=600)
        else:
            second_out, second_err = second.communicate(timeout=600)
            proxy.release()
            first_out, _ = first.communicate(timeout=600)
    finally:
        listing.close()
        proxy.close()
    said = {"A": first_out, "B": second_out + second_err[-3000:]}
    pushed = [name for name, out in said.items() if out.startswith("pushed ")]
    assert len(pushed) == 1, said
    # what the push that said so published is there, whole, and nothing else
    keys = [k.split("/", 3)[3] for k in s3.keys(bucket, "serving/m/17/")]
    published = tree(model if pushed == ["A"] else other)
    assert keys == sorted(published), (pushed, keys)
    assert {k: hashlib.sha256(s3.read(bucket, f"serving/m/17/{k}")).hexdigest()
            for k in keys} == published
    refusal = ("another push of version 17 is under way (.partial-17-"
               if b_lists == "before A's copy" else "version 17 appeared meanwhile")
    assert pushed == ["A"] and refusal in said["B"], said
    assert s3.keys(bucket, f"serving/m/{STAGING_PREFIX}") == []  # both removed their own
