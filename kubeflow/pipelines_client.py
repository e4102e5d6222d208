"""Submitting the compiled pipeline to Kubeflow Pipelines: one run, or a recurring run.

Uses kfp's own client (KFP API v2beta1). Runs go as ``kubeflow.service_account``; a
spec whose images carry no digest is refused. Retraining recurs on a cron schedule with
at most one run at a time and no catch-up of missed runs.
"""
from __future__ import annotations

import re
from typing import Optional

from pipeline.config import PipelineConfig


def kfp_cron(cron: str) -> str:
    """Standard 5-field cron -> KFP's 6-field form (a leading seconds field), refused
    where KFP's scheduler (robfig/cron v1: weekdays 0-6, no time zone prefix, no L, W or
    #) would read it otherwise than croniter and the local scheduler do."""
    fields = cron.split()
    if any("=" in f for f in fields):
        raise ValueError(f"kubeflow.cron '{cron}': KFP schedules take no CRON_TZ=/TZ= "
                         "prefix (they run in the KFP install's time zone, UTC by default; "
                         "Vertex AI takes one)")
    if len(fields) == 5:
        fields = ["0"] + fields
    if len(fields) != 6:
        raise ValueError(f"kubeflow.cron '{cron}': expected 5 fields (minute hour day month "
                         "weekday)")
    if re.search(r"#|(?<![A-Za-z])L|(?<=\d)W|\bW\b", " ".join(fields), re.I):  # not JUL
        raise ValueError(f"kubeflow.cron '{cron}': KFP's scheduler reads no L, W or #")
    ends = [end for item in fields[5].split(",")  # a range's ends, not its step (*/7)
            for end in item.split("/")[0].split("-")]
    if any(end.isdigit() and int(end) == 7 for end in ends):
        raise ValueError(f"kubeflow.cron '{cron}': KFP's scheduler takes weekdays 0-6 "
                         "(Sunday is 0, not 7)")
    return " ".join(fields)


def _client(config: PipelineConfig, spec_file: str, token: Optional[str]):
    """kfp's client for kubeflow.host, once the spec's images are checked (the client
    calls the API as it starts)."""
    import kfp

    if not config.kubeflow.host:
        raise ValueError("kubeflow.host is required: the KFP API endpoint, e.g. "
                         "http://localhost:8080 after `kubectl port-forward`")
    check_host_token(config.kubeflow.host, token)
    _checked_spec(config, spec_file)
    return kfp.Client(host=config.kubeflow.host, existing_token=token)


def check_host_token(host: str, token: Optional[str]) -> None:
    """A bearer token goes to kubeflow.host over https://, or over http:// only to this
    machine (a `kubectl port-forward`): refused before any request otherwise (the model
    clients' rule, serving.tls.check_token_transport)."""
    from urllib.parse import urlsplit

    from serving.tls import InsecureTokenError, check_token_transport

    parts = urlsplit(host if "://" in host else f"http://{host}")
    try:
        check_token_transport(token, [parts.hostname or ""], parts.scheme == "https",
                              allow_insecure_token=False)
    except InsecureTokenError:
        raise ValueError(f"refusing to send the --token_file token in clear text to "
                         f"kubeflow.host {host}: use https://, or port-forward the API to "
                         f"this machine (http://localhost:8080)") from None


def _experiment_id(client, config: PipelineConfig) -> str:
    """kubeflow.experiment in kubeflow.namespace (created, or the existing one)."""
    return client.create_experiment(name=config.kubeflow.experiment,
                                    namespace=config.kubeflow.namespace or None).experiment_id


def _checked_spec(config: PipelineConfig, spec_file: str) -> None:
    """The spec's images must carry digests (unless kubeflow.allow_unpinned_images),
    checked before anything reaches the KFP API."""
    import yaml

    from kubeflow.kubeflow_runner import require_pinned_spec

    with open(spec_file, encoding="utf-8") as f:
        require_pinned_spec(config, yaml.safe_load(f))


def _service_account(config: PipelineConfig) -> Optional[str]:
    return config.kubeflow.service_account or None  # None: the KFP install's default


def submit(config: PipelineConfig, spec_file: str, run_name: str,
           token: Optional[str] = None) -> str:
    """Starts one run of ``spec_file`` as ``kubeflow.service_account``; returns its run
    id."""
    client = _client(config, spec_file, token)
    run = client.run_pipeline(
        experiment_id=_experiment_id(client, config),
        job_name=run_name, pipeline_package_path=spec_file,
        service_account=_service_account(config),
        enable_caching=None)  # the compiled spec says which steps cache
    return run.run_id


def schedule(config: PipelineConfig, spec_file: str, job_name: str,
             token: Optional[str] = None) -> str:
    """Creates a recurring run on ``kubeflow.cron`` (max concurrency 1, no catch-up);
    returns its id."""
    cron = kfp_cron(config.kubeflow.cron)  # refused before any request
    client = _client(config, spec_file, token)
    job = client.create_recurring_run(
        experiment_id=_experiment_id(client, config),
        job_name=job_name, cron_expression=cron,
        max_concurrency=1, no_catchup=True, pipeline_package_path=spec_file,
        service_account=_service_account(config),
        enable_caching=None)  # the compiled spec says which steps cache
    return job.recurring_run_id
