"""Beam args for distributed Beam runners: their workers run the project's image.

TFX hands the pipeline's Beam args to every Beam step (StatisticsGen, Transform,
Evaluator, ...). With the DirectRunner a step runs in its own pod, which is the
project's image. Dataflow and the portable runners (PortableRunner, Flink, Spark) run
it on their own workers, whose default container is Beam's stock SDK image: it lacks
this project's code (Transform imports ``models.preprocessing``) and its packages
(tensorflow-text, transformers). The args are read with Beam's own option parser, so
``--runner=X`` and ``--runner X`` both count, and runner names resolve as Beam resolves
them (any case, ``Runner`` optional, or the class path).
"""
from __future__ import annotations

import re

from apache_beam.options.pipeline_options import (FlinkRunnerOptions, PipelineOptions,
                                                  PortableOptions, SparkRunnerOptions,
                                                  StandardOptions, WorkerOptions)
from apache_beam.runners.portability.flink_runner import MAGIC_HOST_NAMES
from apache_beam.runners.portability.spark_runner import LOCAL_MASTER_PATTERN

DATAFLOW = "dataflowrunner"
PORTABLE = ("portablerunner", "flinkrunner", "sparkrunner")


def runner_name(options: PipelineOptions) -> str:
    """``--runner`` as Beam resolves it, lower case with the ``runner`` suffix
    ('dataflow', 'DataflowRunner', 'apache_beam...DataflowRunner' -> 'dataflowrunner');
    empty when not given."""
    name = (options.view_as(StandardOptions).runner or "").rsplit(".", 1)[-1].lower()
    return name if not name or name.endswith("runner") else name + "runner"


def _runs_in_this_process(runner: str, options: PipelineOptions) -> bool:
    """Flink and Spark without a cluster address start one inside the step's pod and run
    the Python code there (Beam's LOOPBACK environment): the pod is the image already."""
    if runner == "flinkrunner":
        return options.view_as(FlinkRunnerOptions).flink_master in MAGIC_HOST_NAMES
    if runner == "sparkrunner":
        master = options.view_as(SparkRunnerOptions).spark_master_url
        return bool(re.match(LOCAL_MASTER_PATTERN, master))
    return False


def worker_beam_args(args: list, image: str) -> list:
    """``args`` plus what runs the Beam workers in ``image``; the user's own worker
    container or environment settings are left as they are."""
    args = list(args)
    options = PipelineOptions(args)
    runner = runner_name(options)
    worker = options.view_as(WorkerOptions)
    own_image = worker.sdk_container_image or worker.worker_harness_container_image
    if runner == DATAFLOW:
        # The image is enough: it holds this project installed (`pip install -e .` in
        # kubeflow.project_dir) beside every pinned package, so the workers import
        # models/ and components/ from it. --setup_file (or --extra_package) is not
        # added: it would build an sdist of the project where the step runs and
        # pip-install it again on every worker at start-up, over the same code.
        return args if own_image else args + [f"--sdk_container_image={image}"]
    portable = options.view_as(PortableOptions)
    if runner in PORTABLE and not (portable.environment_type or portable.environment_config) \
            and not _runs_in_this_process(runner, options):
        # Portable runners take the worker container from the DOCKER environment's
        # config; Beam (2.61) does not read --sdk_container_image for them, so a given
        # one is carried over. TFX does read it: without it, each Beam step built an
        # sdist of TFX and staged it (--extra_package), which every worker pip-installed
        # at start-up over the image's own.
        return args + ["--environment_type=DOCKER",
                       f"--environment_config={own_image or image}"] + (
            [] if own_image else [f"--sdk_container_image={image}"])
    return args


WORKER_OPTIONS = ("--runner", "--sdk_container_image", "--worker_harness_container_image",
                  "--environment_type", "--environment_config")


def worker_images(args: list) -> dict:
    """{option: image} of the worker containers ``args`` name for a runner with workers of
    its own (Dataflow, the portable runners' DOCKER environment); other arguments (a
    compiled step's own, in a spec) are skipped."""
    picked, args = [], list(args)
    for i, arg in enumerate(args):  # --option=value or --option value
        name = arg.split("=", 1)[0]
        if name in WORKER_OPTIONS:
            picked += [arg] if "=" in arg or i + 1 == len(args) else [arg, args[i + 1]]
    options = PipelineOptions(picked)
    runner = runner_name(options)
    if runner != DATAFLOW and runner not in PORTABLE:
        return {}
    worker = options.view_as(WorkerOptions)
    images = {"--sdk_container_image": worker.sdk_container_image,
              "--worker_harness_container_image": worker.worker_harness_container_image}
    portable = options.view_as(PortableOptions)
    if runner in PORTABLE and (portable.environment_type or "DOCKER").upper() == "DOCKER":
        images["--environment_config"] = portable.environment_config
    return {option: image for option, image in images.items() if image}
