#!/usr/bin/env bash
# Enqueue of one job array of N indices (issue 14's figure): a release master on a fresh
# SQLite file, then `cloudai enqueue --array 0-(N-1)` timed end to end (the CLI's start,
# the call, the master expanding the array and the one store write that makes every
# task, durable before it answers). No worker: nothing runs.
#
#   bench/array.sh [N] [REPS]     # defaults: 100000 3
#   CLOUDAI_BIN=/path/to/cloudai bench/array.sh ...   # another build (an A/B), not rebuilt
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
n=${1:-100000}
reps=${2:-3}
if [ -z "${CLOUDAI_BIN:-}" ]; then
  cargo build --release -q -p cloudai --manifest-path "$root/Cargo.toml"
fi
bin="${CLOUDAI_BIN:-$root/target/release/cloudai}"
dir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
for rep in $(seq 1 "$reps"); do
  for cap in "" "%8"; do
    port=$((40000 + RANDOM % 20000))
    rm -f "$dir/q.db"*
    "$bin" master --listen "127.0.0.1:$port" --store "sqlite://$dir/q.db" --http-listen off \
      >"$dir/master.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 100); do
      CLOUDAI_MASTER="http://127.0.0.1:$port" "$bin" queue stats >/dev/null 2>&1 && break
      sleep 0.1
    done
    t0=$(date +%s.%N)
    CLOUDAI_MASTER="http://127.0.0.1:$port" "$bin" enqueue --array "0-$((n - 1))$cap" \
      cloudai/busybox:test -- true >/dev/null 2>"$dir/enqueue.err"
    t1=$(date +%s.%N)
    made=$(CLOUDAI_MASTER="http://127.0.0.1:$port" "$bin" queue stats --output json |
      python3 -c 'import json,sys; c=json.load(sys.stdin)["counts"]; print(sum(c.values()))')
    printf 'rep %s  array 0-%s%-3s  %6.3f s  tasks stored: %s\n' "$rep" "$((n - 1))" "$cap" \
      "$(echo "$t1 - $t0" | bc -l)" "$made"
    kill "$pid"; wait "$pid" 2>/dev/null || true
  done
done
