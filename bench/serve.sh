#!/usr/bin/env bash
# Load and start-up benchmark of `twotower serve` on loopback (a benchmark, not a test).
#
#   bash bench/serve.sh [MODEL_DIR]
#
# Trains the default preset on u1 into MODEL_DIR when it holds no model, then reports:
# start-up (launch → /healthz ready, median of 5), saturation throughput and latency
# (wrk, 2 threads, 32 connections, 30 s), a paced ~1,000 requests/s run for 60 s with the
# server's resident memory sampled every 10 s, and the same paced run while 50 slow clients
# and 5 over-budget clients (bench/hostile_clients.py) are active. Needs wrk
# (apt-get install -y wrk), curl and python3. TWOTOWER_BIN=PATH benchmarks another build
# of the binary (for side-by-side runs); PHASES="paced hostile" runs only those phases.
set -euo pipefail
cd "$(dirname "$0")/.."
model="${1:-target/bench-model}"
port="${PORT:-18080}"
bin="${TWOTOWER_BIN:-target/release/twotower}"
phases="${PHASES:-startup saturation paced hostile}"
export TWOTOWER_DATA_DIR="${TWOTOWER_DATA_DIR:-$(cd .. && pwd)/shared/data}"

[ -n "${TWOTOWER_BIN:-}" ] || cargo build --release --quiet
[ -f "$model/model.json" ] || "$bin" train --preset ids --out "$model" --show-user "" > /dev/null

server=""
stop() { [ -n "$server" ] && kill -TERM "$server" 2>/dev/null && wait "$server" 2>/dev/null || true; server=""; }
trap stop EXIT

start() {
  "$bin" serve --model "$model" --addr "127.0.0.1:$port" > /dev/null 2>&1 &
  server=$!
}

has() { case " $phases " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

if has startup; then
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
fi

start
until curl -sf "http://127.0.0.1:$port/healthz" > /dev/null; do sleep 0.01; done
if has saturation; then
echo "== saturation: wrk -t2 -c32 -d30s, GET /v1/recommend?k=10 over random users"
wrk -t2 -c32 -d30s -s bench/recommend.lua "http://127.0.0.1:$port" | tail -1
fi

paced() {
  ( for i in 0 1 2 3 4 5 6; do
      echo "  t=$((i * 10)) s: $(awk '/VmRSS/ {print $2, $3}' /proc/$server/status)"
      sleep 10
    done ) &
  sampler=$!
  RATE_DELAY_MS=9 wrk -t2 -c10 -d60s -s bench/recommend.lua "http://127.0.0.1:$port" | tail -1
  wait "$sampler"
}

if has paced; then
echo "== ~1,000 requests/s for 60 s (10 connections, 9 ms pause each), resident memory every 10 s"
paced
fi

if has hostile; then
echo "== the same paced run while 50 slow clients and 5 over-budget clients are active"
python3 bench/hostile_clients.py "$port" 62 &
hostile=$!
sleep 1
paced
wait "$hostile"
fi
