#!/bin/sh
# A Kubeflow step's command: TFX's KFP v2 executor, with the pod identity InfraValidator's
# Kubernetes runner looks for (it starts TF Serving beside this pod). KFP sets
# KFP_POD_NAME, not KFP_NAMESPACE. It runs only where the compiled spec names it as the
# container command (KubeflowV2DagRunnerConfig(default_commands=[this file])): Kubernetes'
# command replaces the image's ENTRYPOINT, which stays Beam's worker boot program.
set -e
export TF_USE_LEGACY_KERAS=1
NAMESPACE_FILE=/var/run/secrets/kubernetes.io/serviceaccount/namespace
if [ -z "${KFP_NAMESPACE:-}" ] && [ -r "$NAMESPACE_FILE" ]; then
  KFP_NAMESPACE=$(cat "$NAMESPACE_FILE"); export KFP_NAMESPACE
fi
export KFP_POD_NAME="${KFP_POD_NAME:-$(hostname)}"
exec python -m tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor "$@"
