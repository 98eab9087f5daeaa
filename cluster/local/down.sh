#!/usr/bin/env bash
# Stops the nodes cluster/local/up.sh started (and node 4, if it runs from
# run/node-4.pid): SIGTERM, so in-flight requests finish, then SIGKILL for a
# node still up after 40 s. Their data stays in cluster/local/run/node-N/;
# delete that directory to start from an empty cluster.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
run="$root/cluster/local/run"

for pidfile in "$run"/node-*.pid; do
  [[ -e "$pidfile" ]] || continue
  pid="$(cat "$pidfile")"
  node="$(basename "$pidfile" .pid)"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 400); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "$node (pid $pid) still running after 40 s: killing it" >&2
      kill -KILL "$pid" || true
    fi
    echo "$node stopped"
  fi
  rm -f "$pidfile"
done
