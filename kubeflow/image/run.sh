#!/usr/bin/env bash
# Runs a command in the pipeline image with docker or podman (this project's settings):
#   kubeflow/image/run.sh [ENGINE RUN OPTIONS...] -- COMMAND [ARGS...]
# e.g. the main job in the image, data from this checkout, outputs in ./image_output:
#   kubeflow/image/run.sh -v "$PWD/data:/pipeline/data:ro" -v "$PWD/image_output:/out" -- \
#     bert-pipeline run --output.root /out/pipeline_output --output.serving_dir /out/serving_model
# IMAGE (default the newer of localhost/bert-text-pipeline:latest and :latest-standin,
# the tags `make image` moves: build.sh); NETWORK
# (default none: nothing is downloaded at run time). The base's entrypoint (Beam's boot
# in Beam's image) is cleared unless --entrypoint is given.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/engine.sh"
pick_engine
options=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do options+=("$1"); shift; done
[ $# -gt 0 ] || { echo "usage: $0 [ENGINE RUN OPTIONS...] -- COMMAND [ARGS...]" >&2; exit 2; }
shift
newest_build() {
  local name=localhost/bert-text-pipeline tag created best="" best_created=""
  for tag in latest latest-standin; do
    created=$(engine image inspect --format '{{.Created}}' "$name:$tag" 2>/dev/null) || continue
    if [[ "$created" > "$best_created" ]]; then best="$name:$tag"; best_created="$created"; fi
  done
  echo "${best:-$name:latest}"
}
exec "$ENGINE" run --rm --network="${NETWORK:-none}" --entrypoint= "${options[@]}" \
  "${IMAGE:-$(newest_build)}" "$@"
