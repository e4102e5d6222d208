#!/usr/bin/env bash
# The main job (`make run` defaults) once on this machine and once in the pipeline image,
# fresh output folders each; prints both wall times and the ratio image/host.
#   kubeflow/image/bench_main_job.sh [OUT_DIR [bert-pipeline run flags...]]
# (after `make install` and `make image`); the flags go to both runs.
# Logs: OUT_DIR/host.log, OUT_DIR/image.log. IMAGE picks another image (run.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export TF_USE_LEGACY_KERAS=1 TF_CPP_MIN_LOG_LEVEL=2 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
OUT="${1:-$(mktemp -d)}"
shift || true
mkdir -p "$OUT/host" "$OUT/image"
chmod a+rwx "$OUT/image"  # the image runs as uid 1000
OUT="$(cd "$OUT" && pwd)"
now() { echo "${EPOCHREALTIME/[.,]/}"; }  # microseconds

started=$(now)
.venv/bin/bert-pipeline run --output.root "$OUT/host/pipeline_output" \
  --output.serving_dir "$OUT/host/serving_model" "$@" > "$OUT/host.log" 2>&1
host=$(( $(now) - started ))

started=$(now)
kubeflow/image/run.sh -v "$PWD/data:/pipeline/data:ro" -v "$OUT/image:/out" -- \
  bert-pipeline run --output.root /out/pipeline_output \
  --output.serving_dir /out/serving_model "$@" > "$OUT/image.log" 2>&1
image=$(( $(now) - started ))

awk -v host="$host" -v image="$image" 'BEGIN { printf \
  "main job: host %.1f s, image %.1f s, ratio image/host %.3f\n", \
  host / 1e6, image / 1e6, image / host }'

