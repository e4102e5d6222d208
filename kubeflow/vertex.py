"""Vertex AI: the Trainer as a CustomJob, and the compiled spec sent as a PipelineJob.

``trainer_distribution`` gives ``pipeline.pipeline.trainer_component`` TFX's Vertex AI
Trainer settings: a CustomJob whose worker pool 0 is the chief (one replica) and pool 1
the other ``vertex.trainer_workers - 1`` replicas, every one in ``kubeflow.image``.
TFX sets each pool's ``container_spec.command`` to ``python -m tfx.scripts.run_executor
...`` (it replaces the image's ENTRYPOINT, Beam's boot program); Vertex AI gives every
replica its TF_CONFIG (pool 0: ``chief``, pool 1: ``worker``).

``submit`` and ``schedule`` send a spec compiled with ``vertex.project`` set as a Vertex
AI PipelineJob (google-cloud-aiplatform, REST, to ``vertex.api_endpoint``), as
``vertex.service_account``, with Google's default credentials.
"""
from __future__ import annotations

import json
import re
from typing import Optional

import yaml

from pipeline.config import PipelineConfig

LAUNCHER = "vertex"
# TFX's Vertex AI Trainer executor, as the compiled spec names it
EXECUTOR = "tfx.extensions.google_cloud_ai_platform.trainer.executor.GenericExecutor"
TRAINING_ARGS = "ai_platform_training_args"  # TFX's custom_config key of the CustomJob
REGION = "ai_platform_vertex_region"  # TFX's custom_config key of the CustomJob's region


def check_settings(config: PipelineConfig) -> None:
    """What Vertex AI needs beyond ``vertex.*`` alone: gs:// storage, and one way to run
    the Trainer's replicas."""
    root = config.kubeflow.pipeline_root
    if not root.startswith("gs://"):
        raise ValueError(f"kubeflow.pipeline_root '{root}' must be gs://BUCKET/... with "
                         "vertex.project set: Vertex AI Pipelines write their outputs "
                         "to Cloud Storage")
    if config.kubeflow.trainer_workers > 1:
        raise ValueError("kubeflow.trainer_workers (a Training Operator TFJob) and "
                         "vertex.project (a Vertex AI CustomJob) both set how the Trainer "
                         "runs: set vertex.trainer_workers instead")
    if config.kubeflow.trainer_accelerator:
        raise ValueError("kubeflow.trainer_accelerator is for the Trainer pod, which with "
                         "vertex.project only starts the CustomJob: set "
                         "vertex.trainer_accelerator for its replicas")
    # google-cloud-aiplatform's job id: the name lower-cased, other characters as '-',
    # then '-YYYYmmddHHMMSS'; Vertex AI takes ^[a-z][-a-z0-9]{0,127}$
    job_name = re.sub("[^-0-9a-z]+", "-", config.name.lower()).strip("-")
    if not re.fullmatch(r"[a-z][-a-z0-9]{0,112}", job_name):
        raise ValueError(f"name '{config.name}': Vertex AI's job ids start with a letter and "
                         f"hold at most 128 characters with the submit time added: start "
                         f"the pipeline name with a letter, 113 characters at most")


def worker_pool_specs(config: PipelineConfig) -> list:
    """CustomJob worker pools (snake_case, as TFX hands them to the Vertex AI client):
    pool 0 the chief, pool 1 the other replicas, if any."""
    vertex = config.vertex
    machine = {"machine_type": vertex.trainer_machine_type}
    if vertex.trainer_accelerator:
        machine.update(accelerator_type=vertex.trainer_accelerator,
                       accelerator_count=vertex.trainer_accelerator_count)

    def pool(replicas: int) -> dict:
        return {"machine_spec": dict(machine), "replica_count": replicas,
                "container_spec": {"image_uri": config.kubeflow.image}}

    workers = vertex.trainer_workers - 1
    return [pool(1)] + ([pool(workers)] if workers else [])


def trainer_distribution(config: PipelineConfig) -> dict:
    """``trainer_component``'s distribution for TFX's Vertex AI Trainer: ``region`` and
    ``training_args`` (TFX's ``ai_platform_training_args``: project and CustomJob spec),
    with ``workers``, ``backup_every_steps`` and ``accelerator`` for the replicas."""
    check_settings(config)
    vertex = config.vertex
    job_spec = {"worker_pool_specs": worker_pool_specs(config)}
    if vertex.service_account:
        job_spec["service_account"] = vertex.service_account
    scheduling = {}
    if vertex.trainer_workers > 1:  # a lost replica: the cluster must form again
        scheduling["restart_job_on_worker_restart"] = True
    if config.trainer.deadline_minutes:
        scheduling["timeout"] = f"{int(60 * config.trainer.deadline_minutes)}s"
    if scheduling:
        job_spec["scheduling"] = scheduling
    return {"launcher": LAUNCHER, "workers": vertex.trainer_workers,
            "backup_every_steps": config.trainer.backup_every_steps,
            "accelerator": vertex.trainer_accelerator,
            "region": vertex.region,
            "training_args": {"project": vertex.project, "job_spec": job_spec}}


def trainer_settings(spec: dict) -> Optional[dict]:
    """The Trainer's custom_config in a compiled spec, when TFX's Vertex AI executor runs
    it (else None)."""
    executor = spec.get("deploymentSpec", {}).get("executors", {}).get("Trainer_executor", {})
    if EXECUTOR not in executor.get("container", {}).get("args", []):
        return None
    parameters = spec["root"]["dag"]["tasks"]["Trainer"]["inputs"]["parameters"]
    return json.loads(parameters["custom_config"]["runtimeValue"]["constant"])


def spec_images(spec: dict) -> dict:
    """{where: image} of the Trainer's CustomJob worker pools in a compiled spec (for
    kubeflow.kubeflow_runner.spec_images: they are inside the Trainer's custom_config)."""
    settings = trainer_settings(spec) or {}
    pools = settings.get(TRAINING_ARGS, {}).get("job_spec", {}).get("worker_pool_specs", [])
    return {f"Trainer CustomJob worker pool {i}": pool["container_spec"]["image_uri"]
            for i, pool in enumerate(pools)}


def _checked_spec(config: PipelineConfig, spec_file: str) -> dict:
    """The compiled spec, refused unless it was compiled for Vertex AI and every image it
    runs (worker pools included) is pinned, unless kubeflow.allow_unpinned_images."""
    from kubeflow.kubeflow_runner import split_digest, unpinned

    with open(spec_file, encoding="utf-8") as f:
        spec = yaml.safe_load(f)
    if trainer_settings(spec) is None:
        raise ValueError(f"{spec_file} was not compiled for Vertex AI (its Trainer does not "
                         "run TFX's Vertex AI executor): run `bert-pipeline kubeflow "
                         "compile` with vertex.project set")
    compiled = compiled_for(spec)
    given = {"vertex.project": config.vertex.project, "vertex.region": config.vertex.region,
             "vertex.service_account": config.vertex.service_account}
    differ = [f"{name} '{compiled[name]}' (now '{given[name]}')" for name in compiled
              if compiled[name] != given[name]]
    if differ:  # the PipelineJob would go by the settings, its Trainer's CustomJob by the spec
        raise ValueError(f"{spec_file} was compiled for {', '.join(differ)}: its Trainer "
                         "would run as a CustomJob there while the PipelineJob runs here; "
                         "compile it again with these settings, or submit with the ones it "
                         "was compiled for")
    root = spec.get("defaultPipelineRoot", "")
    if not root.startswith("gs://"):
        raise ValueError(f"{spec_file}: its pipeline root '{root}' is not gs://: compile "
                         "it again with kubeflow.pipeline_root gs://BUCKET/...")
    if not config.kubeflow.allow_unpinned_images:
        from kubeflow.kubeflow_runner import spec_images as kubeflow_images

        for where, image in {**kubeflow_images(spec), **spec_images(spec)}.items():
            if not split_digest(image)[1]:
                raise ValueError(unpinned(f"the spec's {where} image", image))
    return spec


def compiled_for(spec: dict) -> dict:
    """{setting: value} of the ``vertex.*`` settings a Vertex AI spec was compiled with
    (its Trainer's CustomJob: project, region, service account)."""
    settings = trainer_settings(spec) or {}
    training = settings.get(TRAINING_ARGS, {})
    return {"vertex.project": training.get("project", ""),
            "vertex.region": settings.get(REGION, ""),
            "vertex.service_account": training.get("job_spec", {}).get("service_account", "")}


def api_endpoint(config: PipelineConfig) -> str:
    """vertex.api_endpoint, else the region's own."""
    return config.vertex.api_endpoint or f"{config.vertex.region}-aiplatform.googleapis.com"


def labels(config: PipelineConfig) -> dict:
    """The PipelineJob's labels (lowercase letters, digits, - and _; 63 at most)."""
    return {"pipeline": re.sub(r"[^a-z0-9_-]", "-", config.name.lower())[:63],
            "submitted-by": "bert-pipeline"}


def pipeline_job(config: PipelineConfig, spec_file: str, display_name: str,
                 credentials=None):
    """The PipelineJob of a checked spec, its client on ``vertex.api_endpoint`` over
    REST. ``credentials`` None (the CLI): Google's default credentials (``gcloud auth
    application-default login``, GOOGLE_APPLICATION_CREDENTIALS or the metadata server);
    tests give their own (google.auth's AnonymousCredentials)."""
    from google.cloud import aiplatform

    vertex = config.vertex
    if not vertex.project:
        raise ValueError("vertex.project is required: the Google Cloud project the "
                         "PipelineJob runs in (the spec must be compiled with it too)")
    _checked_spec(config, spec_file)
    aiplatform.init(project=vertex.project, location=vertex.region,
                    api_endpoint=api_endpoint(config), api_transport="rest")
    return aiplatform.PipelineJob(display_name=display_name, template_path=spec_file,
                                  labels=labels(config), enable_caching=None,
                                  credentials=credentials)


def submit(config: PipelineConfig, spec_file: str, display_name: str,
           credentials=None) -> str:
    """Creates one PipelineJob of ``spec_file`` as ``vertex.service_account``; returns
    its resource name."""
    job = pipeline_job(config, spec_file, display_name, credentials)
    job.submit(service_account=config.vertex.service_account or None)
    return job.resource_name


def vertex_cron(cron: str) -> str:
    """kubeflow.cron as Vertex AI takes it: 5 fields, after an optional CRON_TZ= or TZ=."""
    fields = cron.split()
    if fields and fields[0].startswith(("CRON_TZ=", "TZ=")):
        fields = fields[1:]
    if len(fields) != 5:
        raise ValueError(f"kubeflow.cron '{cron}': Vertex AI schedules take 5 fields "
                         "(minute hour day month weekday), optionally after "
                         "CRON_TZ=Area/City")
    return cron


def schedule(config: PipelineConfig, spec_file: str, display_name: str,
             credentials=None) -> str:
    """Creates a PipelineJobSchedule on ``kubeflow.cron`` (one run at a time, no
    queueing, no catch-up); returns its resource name."""
    from google.cloud import aiplatform

    cron = vertex_cron(config.kubeflow.cron)
    job = pipeline_job(config, spec_file, display_name, credentials)
    schedule_ = aiplatform.PipelineJobSchedule(pipeline_job=job, display_name=display_name,
                                               credentials=credentials)
    schedule_.create(cron=cron, max_concurrent_run_count=1,
                     service_account=config.vertex.service_account or None)
    return schedule_.resource_name
