"""TFX's InfraValidator executor with the hardened Kubernetes model server runner.

Only how the runner is made differs: TFX makes its ``KubernetesRunner`` in the
module-level ``_create_model_server_runner``, called from ``_ValidateOnce``, so
``_ValidateOnce`` is TFX 1.16's own (start, wait, load, query; the server's log on
failure; stop always) with ``make_runner`` in place of that function.
"""
from __future__ import annotations

import time

from absl import logging
from tfx.components.infra_validator import executor as infra_validator_executor

from components.kubernetes_infra_validator.hardened_runner import HardenedKubernetesRunner


_POLLING_SECONDS = infra_validator_executor._DEFAULT_POLLING_INTERVAL_SEC  # noqa: SLF001


def make_runner(model_path, serving_binary, serving_spec) -> HardenedKubernetesRunner:
    platform = serving_spec.WhichOneof("serving_platform")
    if platform != "kubernetes":
        raise ValueError(f"KubernetesInfraValidator runs model servers on Kubernetes, "
                         f"not on '{platform}'")
    return HardenedKubernetesRunner(model_path=model_path, serving_binary=serving_binary,
                                    serving_spec=serving_spec)


class Executor(infra_validator_executor.Executor):
    """InfraValidator whose model server pod passes the "restricted" profile."""

    def _ValidateOnce(self, model_path, serving_binary, serving_spec,  # noqa: N802
                      validation_spec, requests):
        deadline = time.time() + validation_spec.max_loading_time_seconds
        runner = make_runner(model_path, serving_binary, serving_spec)
        try:
            logging.info("Starting %r.", runner)
            runner.Start()
            runner.WaitUntilRunning(deadline)
            client = serving_binary.MakeClient(runner.GetEndpoint())
            client.WaitUntilModelLoaded(deadline, polling_interval_sec=_POLLING_SECONDS)
            if requests:
                client.SendRequests(requests)
        except Exception:  # pylint: disable=broad-except
            logging.exception("Error occurred during infra validation.")
            logs = runner.GetLogs()
            if logs:
                logging.error("Fetching model server logs:\nBEGIN_MODEL_SERVER_LOG\n%s\n"
                              "END_MODEL_SERVER_LOG", logs)
            else:
                logging.error("No model server logs available.")
            raise
        finally:
            logging.info("Stopping %r.", runner)
            runner.Stop()
