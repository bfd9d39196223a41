#!/usr/bin/env bash
# One wrk run of acquire+release pairs against a fresh control plane in its own process
# (BENCHMARKS.md, "The HTTP lease path profiled"):
#
#   scripts/wrk-lease-bench.sh BINARY memory|REDIS_URL [PERF_DATA]
#
# Starts `BINARY serve` on 127.0.0.1:18080 (state in memory, or on REDIS_URL, which is
# flushed first: use a throw-away server), deploys a 50-worker pool `bench-http`, runs
# `wrk -t1 -c50 -d5s` with scripts/wrk-lease-pairs.lua, prints wrk's p99, requests/s and
# the script's pairs line, then the server's CPU time, and stops the server. With
# PERF_DATA, `perf record` samples the server for 4 s of the run (DWARF call stacks).
#
# LOAD=bench uses `BINARY bench pools --http --api` as the load generator instead of wrk
# (it chains acquire and release over h2c too: BENCH_ARGS="--http2 --connections 4"),
# with `--redis REDIS_URL` so the direct store runs in the same invocation, and prints
# its JSON report. PERF_DATA is for wrk runs only (the bench runs its stores first).
set -euo pipefail
bin="${1:?usage: scripts/wrk-lease-bench.sh BINARY memory|REDIS_URL [PERF_DATA]}"
state="${2:?usage: scripts/wrk-lease-bench.sh BINARY memory|REDIS_URL [PERF_DATA]}"
perf_data="${3:-}"
if [ "${LOAD:-wrk}" = bench ] && [ -n "$perf_data" ]; then
    echo "PERF_DATA is for wrk runs only" >&2
    exit 2
fi
here="$(cd "$(dirname "$0")" && pwd)"
api=http://127.0.0.1:18080
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/presets"
cat > "$dir/presets/bench-http.yaml" <<'YAML'
name: bench-http
description: wrk against the lease path (scripts/wrk-lease-bench.sh)
processingPools:
  - poolType: bench-http
    plugin: actor
    minInstances: 50
    maxInstances: 50
YAML
args=(serve --listen 127.0.0.1:18080 --presets "$dir/presets")
if [ "$state" != memory ]; then
    redis-cli -u "$state" flushall >/dev/null
    args+=(--redis "$state")
fi
"$bin" "${args[@]}" > "$dir/serve.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 50); do curl -sf "$api/health" >/dev/null && break; sleep 0.2; done
"$bin" deploy bench-http --api "$api" >/dev/null
status() {
    curl -s -XPOST "$api/orchestrator/processing-pool/status" \
        -H 'content-type: application/json' -d '{"poolType":"bench-http"}'
}
for _ in $(seq 100); do
    status | grep -q '"availableInstances":50' && break
    sleep 0.2
done
if [ -n "$perf_data" ]; then
    perf record -e cpu-clock -F 1999 --call-graph dwarf,16384 -p "$server" -o "$perf_data" \
        -- sleep 4 2>/dev/null &
    recorder=$!
fi
if [ "${LOAD:-wrk}" = bench ]; then
    bench=(bench pools --http --api "$api" --clients 50 --seconds 5 --json)
    if [ "$state" != memory ]; then bench+=(--redis "$state"); fi
    # shellcheck disable=SC2206 # BENCH_ARGS is a list of words
    bench+=(${BENCH_ARGS:-})
    "$bin" "${bench[@]}"
else
    POOL=bench-http wrk -t1 -c50 -d${WRK_SECONDS:-5}s -s "$here/wrk-lease-pairs.lua" --latency "$api" > "$dir/wrk.out" 2>&1
    grep -E "99%|Requests/sec|pairs:|Non-2xx" "$dir/wrk.out" | tr -s ' \n' ' '
    echo
fi
if [ -n "$perf_data" ]; then wait "$recorder"; fi
echo "server cpu: $(ps -o cputime= -p "$server")"
