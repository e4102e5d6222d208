#!/bin/sh
# The proxy container's command (PID 1): HAProxy as a child, so a stop signal drains it.
# On SIGTERM (or SIGUSR1/SIGINT: containerd sends the image's STOPSIGNAL, SIGUSR1 in
# HAProxy's official image) HAProxy gets SIGUSR1, its soft stop: listeners close at
# once, requests in flight finish (at most hard-stop-after, haproxy.cfg), then it exits.
# When it has exited, this touches $DRAIN_MARKER (in an emptyDir shared with TF Serving's
# container, whose run-tf-serving.sh waits for it) and exits with HAProxy's status.
#   HAPROXY_CONFIG  haproxy.cfg;  DRAIN_MARKER  the file to touch;  HAPROXY  the binary
set -u
: "${HAPROXY_CONFIG:?}" "${DRAIN_MARKER:?}"
rm -f "$DRAIN_MARKER"   # a restarted container has not drained yet
"${HAPROXY:-haproxy}" -db -f "$HAPROXY_CONFIG" &
pid=$!
trap 'kill -USR1 "$pid" 2>/dev/null' TERM USR1 INT
while :; do
    wait "$pid"
    status=$?
    kill -0 "$pid" 2>/dev/null || break   # a trapped signal interrupted the wait
done
: > "$DRAIN_MARKER"
exit "$status"
