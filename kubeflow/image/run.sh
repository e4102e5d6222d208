#!/usr/bin/env bash
# Runs a command in the pipeline image with docker or podman (this project's settings):
#   kubeflow/image/run.sh [ENGINE RUN OPTIONS...] -- COMMAND [ARGS...]
# e.g. the main job in the image, data from this checkout, outputs in ./image_output:
#   kubeflow/image/run.sh -v "$PWD/data:/pipeline/data:ro" -v "$PWD/image_output:/out" -- \
#     bert-pipeline run --output.root /out/pipeline_output --output.serving_dir /out/serving_model
# IMAGE (default localhost/bert-text-pipeline:latest, from `make image`); NETWORK
# (default none: nothing is downloaded at run time). The base's entrypoint (Beam's boot
# in Beam's image) is cleared unless --entrypoint is given.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/engine.sh"
pick_engine
options=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do options+=("$1"); shift; done
[ $# -gt 0 ] || { echo "usage: $0 [ENGINE RUN OPTIONS...] -- COMMAND [ARGS...]" >&2; exit 2; }
shift
exec "$ENGINE" run --rm --network="${NETWORK:-none}" --entrypoint= "${options[@]}" \
  "${IMAGE:-localhost/bert-text-pipeline:latest}" "$@"
