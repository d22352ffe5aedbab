#!/usr/bin/env bash
# Load and start-up benchmark of `twotower serve` on loopback (a benchmark, not a test).
#
#   bash bench/serve.sh [MODEL_DIR]
#
# Trains the default preset on u1 into MODEL_DIR when it holds no model, then reports:
# start-up (launch → /healthz ready, median of 5), saturation throughput and latency
# (wrk, 2 threads, 32 connections, 30 s), and a paced ~1,000 requests/s run for 60 s with the
# server's resident memory sampled every 10 s. Needs wrk (apt-get install -y wrk) and curl.
set -euo pipefail
cd "$(dirname "$0")/.."
model="${1:-target/bench-model}"
port="${PORT:-18080}"
bin=target/release/twotower
export TWOTOWER_DATA_DIR="${TWOTOWER_DATA_DIR:-$(cd .. && pwd)/shared/data}"

cargo build --release --quiet
[ -f "$model/model.json" ] || "$bin" train --out "$model" --show-user "" > /dev/null

server=""
stop() { [ -n "$server" ] && kill -TERM "$server" 2>/dev/null && wait "$server" 2>/dev/null || true; server=""; }
trap stop EXIT

start() {
  "$bin" serve --model "$model" --addr "127.0.0.1:$port" > /dev/null 2>&1 &
  server=$!
}

echo "== start-up: launch to /healthz ready (5 runs)"
times=()
for _ in 1 2 3 4 5; do
  t0=$(date +%s%N)
  start
  until curl -sf "http://127.0.0.1:$port/healthz" > /dev/null; do sleep 0.001; done
  t1=$(date +%s%N)
  times+=($(( (t1 - t0) / 1000 )))
  stop
done
printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {printf "median %.1f ms (runs: ", a[int((NR+1)/2)]/1000; for (i=1;i<=NR;i++) printf "%.1f ", a[i]/1000; print "ms)"}'

start
until curl -sf "http://127.0.0.1:$port/healthz" > /dev/null; do sleep 0.01; done
echo "== saturation: wrk -t2 -c32 -d30s, GET /v1/recommend?k=10 over random users"
wrk -t2 -c32 -d30s -s bench/recommend.lua "http://127.0.0.1:$port" | tail -1

echo "== ~1,000 requests/s for 60 s (10 connections, 9 ms pause each), resident memory every 10 s"
( for i in 0 1 2 3 4 5 6; do
    echo "  t=$((i * 10)) s: $(awk '/VmRSS/ {print $2, $3}' /proc/$server/status)"
    sleep 10
  done ) &
sampler=$!
RATE_DELAY_MS=9 wrk -t2 -c10 -d60s -s bench/recommend.lua "http://127.0.0.1:$port" | tail -1
wait "$sampler"
