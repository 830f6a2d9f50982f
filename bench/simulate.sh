#!/usr/bin/env bash
# simulate's throughput on a generated stream: prints events/s (median, best and worst of N runs).
# Usage: bench/simulate.sh [EVENTS] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-1000000}
runs=${2:-3}
cargo build --release --quiet
bin=target/release/belofte
stream=$(mktemp --suffix=.jsonl)
trap 'rm -f "$stream"' EXIT
"$bin" generate --events "$events" > "$stream"
lines=$(wc -l < "$stream")
python3 - "$bin" "$stream" "$lines" "$runs" <<'PY'
import subprocess, sys, time, os
binary, stream, lines, runs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rates = []
for i in range(runs):
    start = time.perf_counter()
    subprocess.run([binary, "simulate", "--events", stream], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    secs = time.perf_counter() - start
    rates.append(lines / secs)
    print(f"run {i + 1}: {lines} events in {secs:.2f} s = {lines / secs:,.0f} events/s")
import statistics
print(f"simulate: median {statistics.median(rates):,.0f}, best {max(rates):,.0f}, worst {min(rates):,.0f} events/s over {runs} runs ({lines} events, {os.cpu_count()} cores)")
PY
