#!/usr/bin/env bash
# Builds the pipeline image (kubeflow/Dockerfile) with docker or podman; prints its name.
#
#   GPU=1           TensorFlow's CUDA wheels too (kubeflow/image/requirements-gpu.txt)
#   BASE_IMAGE=...  the base (default: Beam's SDK image, else the stand-in base that
#                   build_base.sh assembles from Debian's packages and PYTHON)
#   PYTHON=...      the Python 3.10 copied into the stand-in base
#   IMAGE_NAME=...  default localhost/bert-text-pipeline
#   SBOM_DIR=...    where the image's SBOM is written (default build/sbom)
#
# The tag is a hash of what goes into the image (the Dockerfile, every file it copies,
# the base image's id, GPU): an unchanged image is not built again. The name also gets
# the moving tag :latest (:latest-gpu), the one docs/kubeflow.md tags for a registry;
# an image on the stand-in base, taken because Beam's image could not be pulled, gets
# :latest-standin (:latest-gpu-standin) instead, so that a registry that could not be
# reached for a moment never turns :latest into an image without Beam's boot program.
# The image's SBOM (CycloneDX JSON, /pipeline/sbom.cdx.json in it) is copied to
# SBOM_DIR/<name>_<tag>.cdx.json.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source kubeflow/image/engine.sh
pick_engine

GPU="${GPU:-0}"
NAME="${IMAGE_NAME:-localhost/bert-text-pipeline}"
BEAM_IMAGE=docker.io/apache/beam_python3.10_sdk:2.61.0
DOCKERFILE=kubeflow/Dockerfile
case "$GPU" in 0) SUFFIX="" ;; 1) SUFFIX="-gpu" ;;
  *) echo "GPU=$GPU: expected 0 or 1" >&2; exit 1 ;; esac
MOVING="latest$SUFFIX"

if [ -z "${BASE_IMAGE:-}" ]; then
  if image_exists "$BEAM_IMAGE" || engine pull -q "$BEAM_IMAGE" >/dev/null 2>&1; then
    BASE_IMAGE="$BEAM_IMAGE"
  else
    echo "cannot pull $BEAM_IMAGE: using the stand-in base (kubeflow/image/build_base.sh);" \
         "the image is tagged :$MOVING-standin, not :$MOVING" >&2
    BASE_IMAGE=$(kubeflow/image/build_base.sh "${PYTHON:-python3.10}")
    MOVING="$MOVING-standin"
  fi
elif ! image_exists "$BASE_IMAGE"; then
  engine pull -q "$BASE_IMAGE" >/dev/null
fi

# Everything the image is made of: the files the Dockerfile copies (as the ignore file
# filters them), the Dockerfile, the base and the variant.
SOURCES=$(awk '/^COPY/ && !/--from=/ {for (i = 2; i < NF; i++) print $i}' "$DOCKERFILE")
KEY=$( { find $SOURCES "$DOCKERFILE" "$DOCKERFILE.dockerignore" -type f \
           ! -path '*/__pycache__/*' ! -name '*.pyc' ! -path kubeflow/pipeline.yaml \
           -print0 | sort -z | xargs -0 sha256sum
         engine image inspect --format '{{.Id}}' "$BASE_IMAGE"
         echo "GPU=$GPU"; } | sha256sum | cut -c1-16)
TAG="$NAME:$KEY$SUFFIX"

if ! image_exists "$TAG"; then
  args=(-f "$DOCKERFILE" --network=host --build-arg "BASE_IMAGE=$BASE_IMAGE"
        --build-arg "GPU=$GPU" -t "$TAG")
  [ "$ENGINE" = podman ] && args+=(--ignorefile "$DOCKERFILE.dockerignore")
  # This machine's CA bundle, for PyPI behind a TLS-inspecting proxy (not kept in the image)
  CA_BUNDLE="${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}"
  [ -s "$CA_BUNDLE" ] && args+=(--secret "id=cacert,src=$CA_BUNDLE")
  echo "building $TAG on $BASE_IMAGE with $ENGINE" >&2
  started=$SECONDS
  engine build "${args[@]}" . >&2
  echo "built $TAG in $((SECONDS - started)) s" >&2
fi
engine tag "$TAG" "$NAME:$MOVING"
SBOM="${SBOM_DIR:-build/sbom}/$(basename "${TAG//:/_}").cdx.json"
if [ ! -s "$SBOM" ]; then
  mkdir -p "$(dirname "$SBOM")"
  engine run --rm --network=none --entrypoint= "$TAG" cat /pipeline/sbom.cdx.json \
    > "$SBOM.tmp" && mv "$SBOM.tmp" "$SBOM"
fi
echo "SBOM: $SBOM" >&2
echo "$TAG"
