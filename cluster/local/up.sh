#!/usr/bin/env bash
# Starts the local 3-node cluster and returns once it has a leader.
#
#   cluster/local/up.sh          # nodes 1-3: HTTP 127.0.0.1:8081-8083, gRPC :9081-9083
#   cluster/local/down.sh        # stops them
#
# Builds nothing: it runs $SWITCHYARD_BIN (default target/release/switchyard;
# build it with `cargo build --release -p switchyard`, and fetch the encoder
# with `models/fetch.sh`). Each node keeps its data under
# cluster/local/run/node-N/, its log in run/node-N.log and its pid in
# run/node-N.pid. Set SWITCHYARD_UP_TIMEOUT (seconds, default 120) to wait
# longer for a leader.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
bin="${SWITCHYARD_BIN:-target/release/switchyard}"
run="cluster/local/run"
timeout="${SWITCHYARD_UP_TIMEOUT:-120}"

if [[ ! -x "$bin" ]]; then
  echo "up.sh: no switchyard binary at $bin; build it first: cargo build --release -p switchyard" >&2
  exit 1
fi
mkdir -p "$run"

for n in 1 2 3; do
  pidfile="$run/node-$n.pid"
  if [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "node $n already running (pid $(cat "$pidfile"))"
    continue
  fi
  nohup "$bin" serve --overlay "cluster/local/node-$n.yaml" >"$run/node-$n.log" 2>&1 &
  echo $! >"$pidfile"
  echo "node $n started (pid $!, log $run/node-$n.log)"
done

# Wait for a leader that every node agrees on.
deadline=$((SECONDS + timeout))
while true; do
  leaders=""
  for n in 1 2 3; do
    status="$(curl -fsS --max-time 2 "http://127.0.0.1:808$n/v1/cluster" 2>/dev/null || true)"
    leaders+="$(printf '%s' "$status" | sed -n 's/.*"leader":\([0-9][0-9]*\).*/\1/p') "
  done
  read -r a b c <<<"$leaders"
  if [[ -n "${a:-}" && "$a" == "${b:-}" && "$a" == "${c:-}" ]]; then
    echo "cluster up: leader is node $a"
    exit 0
  fi
  for n in 1 2 3; do
    if ! kill -0 "$(cat "$run/node-$n.pid")" 2>/dev/null; then
      echo "up.sh: node $n exited; see $run/node-$n.log" >&2
      tail -n 20 "$run/node-$n.log" >&2 || true
      exit 1
    fi
  done
  if ((SECONDS >= deadline)); then
    echo "up.sh: no leader after ${timeout}s; see $run/node-*.log" >&2
    exit 1
  fi
  sleep 0.5
done
