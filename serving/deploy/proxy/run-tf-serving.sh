#!/bin/sh
# TF Serving's container command (PID 1): `run-tf-serving.sh tensorflow_model_server
# --flags...`. As PID 1, TF Serving ignores SIGTERM (it sets no handler: the kernel drops
# such signals to a namespace's init; tensorflow/serving#1853) and is killed when the
# grace period ends. Here it runs as a child, where SIGTERM ends it. On SIGTERM (or
# SIGINT) this waits until HAProxy has drained (run-haproxy.sh touched $DRAIN_MARKER),
# at most $DRAIN_WAIT_SECONDS, then sends SIGTERM to the server and exits with its status.
set -u
: "${DRAIN_MARKER:?}" "${DRAIN_WAIT_SECONDS:?}"
"$@" &
pid=$!
stop() {
    waited=0
    while [ ! -e "$DRAIN_MARKER" ] && [ "$waited" -lt "$DRAIN_WAIT_SECONDS" ]; do
        sleep 1
        waited=$((waited + 1))
    done
    kill -TERM "$pid" 2>/dev/null
}
trap stop TERM INT
while :; do
    wait "$pid"
    status=$?
    kill -0 "$pid" 2>/dev/null || break   # a trapped signal interrupted the wait
done
exit "$status"
