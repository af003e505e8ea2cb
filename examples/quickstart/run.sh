#!/usr/bin/env bash
# The quickstart: five echo backends standing in for homelab apps, and pyingress serving the
# manifests in this folder. Ctrl-C (or SIGTERM) stops pyingress and the backends.
#
#   curl -H 'Host: grafana.homelab.local' http://127.0.0.1:8080/
#
# Ports can be moved with HTTP_PORT, HTTPS_PORT and HEALTH_PORT; the backends' ports are the
# ones in the EndpointSlices (18081-18085).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python3}"
pids=()

stop_backends() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    wait "${pids[@]}" 2>/dev/null || true
}
trap stop_backends EXIT

start_echo() {
    "$python" -m pyingress echo --port "$1" --name "$2" &
    pids+=("$!")
}

start_echo 18081 grafana-a
start_echo 18082 grafana-b
start_echo 18083 prometheus
start_echo 18084 argocd
start_echo 18085 default-backend

"$python" -m pyingress serve \
    --manifests "$here" \
    --http-port "${HTTP_PORT:-8080}" \
    --https-port "${HTTPS_PORT:-8443}" \
    --health-port "${HEALTH_PORT:-10254}" \
    "$@" &
serve="$!"
trap 'kill -TERM "$serve" 2>/dev/null || true' INT TERM
status=0
wait "$serve" || status=$?
# A trapped signal ends the first wait early: wait again while pyingress drains and exits.
if kill -0 "$serve" 2>/dev/null; then
    status=0
    wait "$serve" || status=$?
fi
exit "$status"
