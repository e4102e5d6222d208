#!/usr/bin/env bash
# `bert-pipeline run` with every Beam step on Beam's portable runner: Beam's Python job
# service and an SDK worker pool on 127.0.0.1, the SDK workers separate processes that
# the pool starts (EXTERNAL environment). In the pipeline image, or on a machine with
# the project installed:
#   kubeflow/image/run_portable.sh [bert-pipeline run flags...]
# PYTHON (default: python on PATH) runs the services; its folder goes first on PATH, so
# the workers and bert-pipeline are the same install. LOG_DIR (default: a new temporary
# folder) gets job_service.log and worker_pool.log. The exit status is bert-pipeline's.
set -euo pipefail
PYTHON="$(command -v "${PYTHON:-python}")"
export PATH="$(dirname "$PYTHON"):$PATH"
LOG_DIR="${LOG_DIR:-$(mktemp -d)}"
mkdir -p "$LOG_DIR"

free_port() {
  "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}
wait_port() {  # $1: port, $2: log of the service that should listen on it
  "$PYTHON" - "$1" <<'EOF' || { echo "nothing listens on 127.0.0.1:$1; see $2" >&2; exit 1; }
import socket, sys, time
deadline = time.time() + 120
while time.time() < deadline:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.2)
sys.exit(1)
EOF
}

pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true' EXIT
JOB_PORT=$(free_port)
"$PYTHON" -m apache_beam.runners.portability.local_job_service_main --port "$JOB_PORT" \
  > "$LOG_DIR/job_service.log" 2>&1 &
pids+=($!)
POOL_PORT=$(free_port)
"$PYTHON" -m apache_beam.runners.worker.worker_pool_main --service_port "$POOL_PORT" \
  > "$LOG_DIR/worker_pool.log" 2>&1 &
pids+=($!)
wait_port "$JOB_PORT" "$LOG_DIR/job_service.log"
wait_port "$POOL_PORT" "$LOG_DIR/worker_pool.log"

bert-pipeline run --beam_args "--runner=PortableRunner --job_endpoint=127.0.0.1:$JOB_PORT \
--environment_type=EXTERNAL --environment_config=127.0.0.1:$POOL_PORT" "$@"
