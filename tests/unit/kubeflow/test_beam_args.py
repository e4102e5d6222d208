"""Beam args for distributed Beam workers (kubeflow/beam_args.py): the workers get the
pipeline image."""
import pytest

from kubeflow.beam_args import DATAFLOW, runner_name, worker_beam_args
from pipeline.config import load_config
from tests.support.kubeflow_specs import IMAGE


def _worker_container(args: list):
    """The container Beam itself starts the workers in for ``args`` (None: no separate
    workers), read with Beam's own code: Dataflow's image option after Beam's validation,
    a portable runner's default environment."""
    from apache_beam.options.pipeline_options import (PipelineOptions, PortableOptions,
                                                      WorkerOptions)
    from apache_beam.options.pipeline_options_validator import PipelineOptionsValidator
    from apache_beam.runners.dataflow.internal import apiclient
    from apache_beam.runners.runner import create_runner

    options = PipelineOptions(args)
    name = runner_name(options)
    if name in ("", "directrunner"):
        return None
    runner = create_runner(name)
    validator = PipelineOptionsValidator(options, runner)
    if name == DATAFLOW:  # as at submission: the legacy image flag is copied over
        assert validator.validate_sdk_container_image_options(
            options.view_as(WorkerOptions)) == []
        return apiclient.get_container_image_from_options(options)
    assert validator.validate_environment_options(options.view_as(PortableOptions)) == []
    environment = runner.default_environment(options)
    return getattr(environment, "container_image", type(environment).__name__)


DOCKER_ENV = ["--environment_type=DOCKER", f"--environment_config={IMAGE}",
              f"--sdk_container_image={IMAGE}"]  # read by TFX, not by Beam (see below)
PORTABLE = ["--runner=PortableRunner", "--job_endpoint=jobs:8099"]
BEAM_CASES = {  # given args -> (what is added, the workers' container)
    "dataflow": (["--runner=DataflowRunner", "--project=p"],
                 [f"--sdk_container_image={IMAGE}"], IMAGE),
    "dataflow, space form, short name": (["--runner", "dataflow", "--project", "p"],
                                         [f"--sdk_container_image={IMAGE}"], IMAGE),
    "dataflow, class path": (["--runner=apache_beam.runners.dataflow.dataflow_runner."
                              "DataflowRunner"], [f"--sdk_container_image={IMAGE}"], IMAGE),
    "dataflow, own image": (["--runner=DataflowRunner", "--sdk_container_image=mine:1"],
                            [], "mine:1"),
    "dataflow, legacy image flag": (["--runner=DATAFLOWRUNNER",
                                     "--worker_harness_container_image=mine:1"], [],
                                    "mine:1"),
    "portable": (PORTABLE, DOCKER_ENV, IMAGE),
    "portable, any case, space form": (["--runner", "portablerunner", "--job_endpoint",
                                        "jobs:8099"], DOCKER_ENV, IMAGE),
    "portable, own sdk image carried over": (
        PORTABLE + ["--sdk_container_image=mine:1"],
        ["--environment_type=DOCKER", "--environment_config=mine:1"], "mine:1"),
    "portable, own environment": (
        PORTABLE + ["--environment_type=PROCESS",
                    '--environment_config={"command": "/opt/apache/beam/boot"}'],
        [], "ProcessEnvironment"),
    "portable, own docker image": (PORTABLE + ["--environment_config=theirs:2"], [],
                                   "theirs:2"),
    "flink cluster": (["--runner=FlinkRunner", "--flink_master=flink:8081"], DOCKER_ENV,
                      IMAGE),
    "flink in the pod": (["--runner=flink"], [], "PythonLoopbackEnvironment"),
    "spark cluster": (["--runner=SparkRunner", "--spark_master_url=spark://spark:7077"],
                      DOCKER_ENV, IMAGE),
    "spark in the pod": (["--runner=SparkRunner"], [], "PythonLoopbackEnvironment"),
    "direct (the default)": (load_config().beam_args, [], None),
    "direct, named": (["--runner=DirectRunner"], [], None),
}


@pytest.mark.parametrize("case", BEAM_CASES)
def test_distributed_beam_workers_get_the_pipeline_image(case):
    given, added, container = BEAM_CASES[case]
    args = worker_beam_args(given, IMAGE)
    assert args == given + added
    assert _worker_container(args) == container
    if added:  # without them, Beam's stock image would run this project's steps
        assert _worker_container(given).startswith(("apache/beam_python3.10_sdk:",
                                                    "gcr.io/cloud-dataflow/"))


@pytest.mark.parametrize("case", [c for c in BEAM_CASES if BEAM_CASES[c][2] in (IMAGE,
                                                                          "mine:1")])
def test_tfx_stages_no_package_for_workers_that_run_the_image(case, monkeypatch):
    """TFX's Beam executors build a tfx_ephemeral sdist and add --extra_package unless a
    worker image (or a package option) is given: for the portable runners every worker
    pip-installed a second TFX at start-up (PyPI needed), the very thing the image is
    for. Beam's DOCKER environment reads only --environment_config, so the image is
    named in --sdk_container_image too, which TFX reads."""
    from tfx.utils import dependency_utils

    def no_package():
        raise AssertionError("TFX would build and stage its package for the workers")

    monkeypatch.setattr(dependency_utils, "build_ephemeral_package", no_package)
    args = worker_beam_args(BEAM_CASES[case][0], IMAGE)
    assert dependency_utils.make_beam_dependency_flags(args) == args
