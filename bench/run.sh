#!/usr/bin/env bash
# The side-by-side benchmark of issue 11 (see BENCHMARKS.md):
#
#   bench/run.sh [--no-litellm] [--no-moe] [switchyard-bench suite flags...]
#   bench/run.sh --cluster [switchyard-bench suite flags...]
#
# Builds the release binaries, installs LiteLLM's proxy in bench/.venv (once),
# starts on 127.0.0.1, each on a free port: the fake upstream
# (switchyard-mock), the floor proxy (`switchyard-bench floor`: JSON in and
# out, nothing else), Switchyard twice (lexical and moe classifier, same
# config otherwise) and LiteLLM's proxy, waits until each answers, then runs
# `switchyard-bench suite` over seven targets and prints one table. Everything
# is stopped on exit. Suite flags (defaults: --rounds 3 --step 3 --warmup 1
# --p99-budget-ms 50 --connections 64) pass through, e.g. `--rounds 5`.
# Outputs (logs, targets.json, result.json, table.txt) go to bench/out/<time>/.
#
# --cluster measures 1 node against a 3-node cluster instead (issue 11, part
# 3): the fake upstream, one node and three raft voters, all with the
# lexical classifier; the load is spread over the three nodes' HTTP ports.
# Each is driven by model id (no pin) and with a new X-Model-Affinity
# session on every request (a pin write per request: redb on one node,
# the raft log with a majority's fsync on three).
set -euo pipefail
cd "$(dirname "$0")/.."

litellm=1 moe=1 cluster=0 suite_args=()
for arg in "$@"; do
    case "$arg" in
        --cluster) cluster=1 litellm=0 moe=0 ;;
        --no-litellm) litellm=0 ;;
        --no-moe) moe=0 ;;
        *) suite_args+=("$arg") ;;
    esac
done

out="bench/out/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
echo "bench: outputs in $out" >&2

cargo build --release --locked -p switchyard -p switchyard-mock -p switchyard-bench >&2
bin=target/release

if [ "$moe" = 1 ] && [ ! -f models/cache/all-minilm-l6-v2/model.safetensors ]; then
    models/fetch.sh >&2
fi
if [ "$litellm" = 1 ] && ! bench/.venv/bin/litellm --version 2>/dev/null | grep -q '1\.108\.0'; then
    python3 -m venv bench/.venv
    bench/.venv/bin/pip install --quiet 'litellm[proxy]==1.108.0' >&2
fi

pids=()
cleanup() {
    # Each server leads its own process group (setsid): stop it and its children.
    for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_ready NAME PID URL [CURL ARGS...]: poll until URL answers 200.
wait_ready() {
    local name=$1 pid=$2 url=$3 deadline=$((SECONDS + 180))
    shift 3
    until [ "$(curl -s -o /dev/null -w '%{http_code}' "$@" "$url")" = 200 ]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "bench: $name exited; last log lines:" >&2
            tail -20 "$out/$name.log" >&2
            exit 1
        fi
        if [ $SECONDS -ge $deadline ]; then
            echo "bench: $name not ready after 180 s" >&2
            exit 1
        fi
        sleep 0.2
    done
    echo "bench: $name ready (pid $pid)" >&2
}

mock_port=$(free_port)
setsid "$bin/switchyard-mock" --listen "127.0.0.1:$mock_port" >"$out/mock.log" 2>&1 &
mock_pid=$!
pids+=("$mock_pid")
mock_url="http://127.0.0.1:$mock_port/v1"
wait_ready mock "$mock_pid" "$mock_url/models"

sed "s|__MOCK_URL__|$mock_url|" bench/switchyard.yaml >"$out/switchyard.yaml"

# The request every target gets: one user turn about a crash (route
# `debugging`), a 12-word answer. The new-turn target sends a conversation
# whose first two turns repeat (cached after the first request) and whose
# last user turn is new every time ({n}: a token unique to each request).
ask='I get a NullPointerException stack trace when my tests run'
body_model="{\"model\":\"gpt-5-mini\",\"max_tokens\":12,\"messages\":[{\"role\":\"user\",\"content\":\"$ask\"}]}"
body_router="{\"model\":\"router:software-engineering\",\"max_tokens\":12,\"messages\":[{\"role\":\"user\",\"content\":\"$ask\"}]}"
body_turn="{\"model\":\"router:software-engineering\",\"max_tokens\":12,\"messages\":[{\"role\":\"user\",\"content\":\"$ask\"},{\"role\":\"assistant\",\"content\":\"Which line of the stack trace points into your own code?\"},{\"role\":\"user\",\"content\":\"The exception is thrown in Parser.parse and the test crashes, build {n}\"}]}"
route='{"name": "x-model-router-selected-route", "value": "debugging"}'
chat=/v1/chat/completions

# run_suite DEFAULT_RATES [DEFAULT_BUDGETS]: describes the machine, then runs
# the suite over $out/targets.json (common rates DEFAULT_RATES unless --rates
# was given; the added-latency budget searches DEFAULT_BUDGETS, separated by
# spaces, unless --added-budget was given).
run_suite() {
    {
        echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/Mem:/ {print $2}') GiB; $(uname -sr)"
        echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates bench || echo ' (modified)')"
    } | tee "$out/machine.txt" >&2
    case " ${suite_args[*]} " in
        *" --rates"*) ;;
        *) suite_args=(--rates "$1" "${suite_args[@]}") ;;
    esac
    case " ${suite_args[*]} " in
        *" --added-budget"*) ;;
        *) for budget in ${2:-}; do suite_args=(--added-budget "$budget" "${suite_args[@]}"); done ;;
    esac
    "$bin/switchyard-bench" suite --targets "$out/targets.json" --out "$out/result.json" \
        "${suite_args[@]}" | tee "$out/table.txt"
}

if [ "$cluster" = 1 ]; then
    # One node: its own raft of one, as `switchyard serve` runs out of the box.
    one_port=$(free_port)
    setsid "$bin/switchyard" serve --config "$out/switchyard.yaml" --listen "127.0.0.1:$one_port" \
        --data-dir "$out/data-one" >"$out/switchyard-one.log" 2>&1 &
    one_pid=$!
    pids+=("$one_pid")
    # Three voters: an overlay each with its node id, gRPC port and the peers.
    http=() grpc=() three_pids=()
    for n in 1 2 3; do http+=("$(free_port)"); grpc+=("$(free_port)"); done
    for n in 1 2 3; do
        {
            echo "cluster:"
            echo "  node_id: $n"
            echo "  listen: 127.0.0.1:${grpc[n-1]}"
            echo "  peers:"
            for m in 1 2 3; do
                echo "    - { id: $m, raft: 127.0.0.1:${grpc[m-1]}, http: 127.0.0.1:${http[m-1]} }"
            done
        } >"$out/node-$n.yaml"
        setsid "$bin/switchyard" serve --config "$out/switchyard.yaml" --overlay "$out/node-$n.yaml" \
            --listen "127.0.0.1:${http[n-1]}" --data-dir "$out/data-node-$n" >"$out/switchyard-node-$n.log" 2>&1 &
        three_pids+=($!)
        pids+=($!)
    done
    wait_ready switchyard-one "$one_pid" "http://127.0.0.1:$one_port/readyz"
    for n in 1 2 3; do
        wait_ready "switchyard-node-$n" "${three_pids[n-1]}" "http://127.0.0.1:${http[n-1]}/readyz"
    done

    # A pin target's answer must say the session was new (a pin written).
    miss='{"name": "x-model-router-affinity", "value": "miss"}'
    session='{"X-Model-Affinity": "bench-{n}"}'
    one="\"http://127.0.0.1:$one_port$chat\""
    three="[\"http://127.0.0.1:${http[0]}$chat\", \"http://127.0.0.1:${http[1]}$chat\", \"http://127.0.0.1:${http[2]}$chat\"]"
    three_pid_list="${three_pids[0]}, ${three_pids[1]}, ${three_pids[2]}"
    {
        echo '{"baseline": "fake", "ratios": [["three-model", "one-model"], ["three-pin", "one-pin"]], "targets": ['
        echo "{\"name\": \"fake\", \"label\": \"fake upstream, direct\", \"url\": \"$mock_url/chat/completions\", \"pids\": [$mock_pid], \"start_rate\": 1000, \"body\": $body_model},"
        echo "{\"name\": \"one-model\", \"label\": \"1 node, model id\", \"url\": $one, \"pids\": [$one_pid], \"start_rate\": 1000, \"body\": $body_model},"
        echo "{\"name\": \"three-model\", \"label\": \"3 nodes, model id\", \"url\": $three, \"pids\": [$three_pid_list], \"start_rate\": 1000, \"body\": $body_model},"
        echo "{\"name\": \"one-pin\", \"label\": \"1 node, new session (pin write)\", \"url\": $one, \"pids\": [$one_pid], \"start_rate\": 200, \"headers\": $session, \"expect_header\": $miss, \"body\": $body_router},"
        echo "{\"name\": \"three-pin\", \"label\": \"3 nodes, new session (raft pin write)\", \"url\": $three, \"pids\": [$three_pid_list], \"start_rate\": 200, \"headers\": $session, \"expect_header\": $miss, \"body\": $body_router}"
        echo ']}'
    } >"$out/targets.json"
    run_suite '20,0.5*max:one-model'
    # A pin write that failed is logged and counted, and the request still
    # succeeds: show the nodes' own counts, so a failed write cannot hide.
    for port in "$one_port" "${http[@]}"; do
        echo "pin writes on :$port: $(curl -s "http://127.0.0.1:$port/metrics" | grep '^switchyard_pin_writes_total' | tr '\n' ' ')"
    done | tee -a "$out/table.txt"
    exit 0
fi

# The floor proxy: JSON in, JSON out, one upstream, nothing else; what any
# OpenAI-shaped proxy costs on this machine.
floor_port=$(free_port)
setsid "$bin/switchyard-bench" floor --listen "127.0.0.1:$floor_port" --upstream "$mock_url/chat/completions" \
    >"$out/floor.log" 2>&1 &
floor_pid=$!
pids+=("$floor_pid")
wait_ready floor "$floor_pid" "http://127.0.0.1:$floor_port$chat" -X POST -H 'content-type: application/json' -d "$body_model"

lex_port=$(free_port)
setsid "$bin/switchyard" serve --config "$out/switchyard.yaml" --listen "127.0.0.1:$lex_port" \
    --data-dir "$out/data-lexical" >"$out/switchyard-lexical.log" 2>&1 &
lex_pid=$!
pids+=("$lex_pid")

if [ "$moe" = 1 ]; then
    moe_port=$(free_port)
    setsid "$bin/switchyard" serve --config "$out/switchyard.yaml" --overlay bench/moe.yaml \
        --listen "127.0.0.1:$moe_port" --data-dir "$out/data-moe" >"$out/switchyard-moe.log" 2>&1 &
    moe_pid=$!
    pids+=("$moe_pid")
fi

if [ "$litellm" = 1 ]; then
    litellm_port=$(free_port)
    sed "s|__MOCK_URL__|$mock_url|" bench/litellm.yaml >"$out/litellm.yaml"
    export LITELLM_MASTER_KEY="sk-bench-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
    LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_TELEMETRY=False setsid bench/.venv/bin/litellm \
        --config "$out/litellm.yaml" --host 127.0.0.1 --port "$litellm_port" --num_workers 1 \
        >"$out/litellm.log" 2>&1 &
    litellm_pid=$!
    pids+=("$litellm_pid")
fi

wait_ready switchyard-lexical "$lex_pid" "http://127.0.0.1:$lex_port/readyz"
[ "$moe" = 1 ] && wait_ready switchyard-moe "$moe_pid" "http://127.0.0.1:$moe_port/readyz"
[ "$litellm" = 1 ] && wait_ready litellm "$litellm_pid" "http://127.0.0.1:$litellm_port/health/readiness"

{
    echo '{"baseline": "fake", "ratios": [["switchyard-model", "litellm"], ["switchyard-lexical", "litellm"]], "targets": ['
    echo "{\"name\": \"fake\", \"label\": \"fake upstream, direct\", \"url\": \"$mock_url/chat/completions\", \"pids\": [$mock_pid], \"start_rate\": 1000, \"body\": $body_model},"
    echo "{\"name\": \"floor\", \"label\": \"floor proxy (hyper, JSON in/out)\", \"url\": \"http://127.0.0.1:$floor_port$chat\", \"pids\": [$floor_pid], \"start_rate\": 1000, \"body\": $body_model},"
    echo "{\"name\": \"switchyard-model\", \"label\": \"switchyard, model id\", \"url\": \"http://127.0.0.1:$lex_port$chat\", \"pids\": [$lex_pid], \"start_rate\": 1000, \"body\": $body_model},"
    echo -n "{\"name\": \"switchyard-lexical\", \"label\": \"switchyard, router (lexical)\", \"url\": \"http://127.0.0.1:$lex_port$chat\", \"pids\": [$lex_pid], \"start_rate\": 1000, \"expect_header\": $route, \"body\": $body_router}"
    if [ "$moe" = 1 ]; then
        echo ","
        echo "{\"name\": \"switchyard-moe\", \"label\": \"switchyard, router (moe, cached)\", \"url\": \"http://127.0.0.1:$moe_port$chat\", \"pids\": [$moe_pid], \"start_rate\": 500, \"expect_header\": $route, \"body\": $body_router},"
        echo -n "{\"name\": \"switchyard-moe-turn\", \"label\": \"switchyard, router (moe, new turn)\", \"url\": \"http://127.0.0.1:$moe_port$chat\", \"pids\": [$moe_pid], \"start_rate\": 25, \"expect_header\": $route, \"body\": $body_turn}"
    fi
    if [ "$litellm" = 1 ]; then
        echo ","
        echo -n "{\"name\": \"litellm\", \"label\": \"litellm proxy 1.108.0, model id\", \"url\": \"http://127.0.0.1:$litellm_port$chat\", \"pids\": [$litellm_pid], \"start_rate\": 50, \"headers\": {\"Authorization\": \"Bearer $LITELLM_MASTER_KEY\"}, \"body\": $body_model}"
    fi
    echo ']}'
} >"$out/targets.json"

# Common rates: 20 req/s (light: every target sustains it), a fixed 4000
# req/s (the same load in every run, whatever the machine's state that day)
# and half of Switchyard's highest sustained rate by model id (heavy, same
# round; it moves with the machine). And, each round, the highest rate at
# which Switchyard by model id stays within 1 ms p99 of the fake hit
# directly (issue 11's latency target), both measured at each tried rate;
# the same for the floor proxy, the least any proxy costs here.
run_suite '20,4000,0.5*max:switchyard-model' 'switchyard-model:1 floor:1'
