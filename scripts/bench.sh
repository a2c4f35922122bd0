#!/usr/bin/env bash
# Measures the local server (release build, embedded store) with wrk on loopback, inside a
# loopback-only network namespace. Reproduces the README's throughput table:
#
#   cargo build --release && ./scripts/bench.sh
#
# Needs root (unshare) and wrk (apt-get install -y wrk). ENTRIES (default 1000), DURATION (10s).
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${CARGO_TARGET_DIR:-target}/release/registry-db"
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 2; }
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 2; }
entries="${ENTRIES:-1000}"
duration="${DURATION:-10s}"

exec unshare -n bash -s "$bin" "$entries" "$duration" <<'INNER'
set -euo pipefail
bin=$1 entries=$2 duration=$3
ip link set lo up
work=$(mktemp -d)
RUST_LOG=warn "$bin" serve --addr 127.0.0.1:0 --data "$work/data" >"$work/out" 2>"$work/err" &
server=$!
trap 'kill $server; wait $server 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do grep -q "listening on" "$work/out" 2>/dev/null && break; sleep 0.1; done
base=$(sed -n 's/^registry-db listening on //p' "$work/out")

echo "seeding $entries entries (1 in 50 tagged gpu)"
for i in $(seq 1 "$entries"); do
  tags='["cpu"]'; [ $((i % 50)) -eq 0 ] && tags='["gpu","ai"]'
  printf '{"container_registry_id":"e%05d","container_registry_name":"registry-%d","container_registry_public_url":"http://10.0.0.%d:5000","container_registry_tags":%s,"container_registry_metadata":{"owner":"team-%d"}}\n' \
    "$i" "$i" $((i % 250 + 1)) "$tags" $((i % 7))
done | while read -r body; do
  curl -sf -o /dev/null -X POST "$base/container_registry" -H 'Content-Type: application/json' -d "$body"
done

echo; echo "== GET /container_registry/{id}"
wrk -t2 -c64 -d"$duration" --latency "$base/container_registry/e00042" | sed -n '1,/Latency Distribution/p;/99%/p;/Requests\/sec/p'
echo; echo "== POST /container_registries {\"container_registry_tags\": {\"\$in\": [\"gpu\"]}} over $entries entries"
wrk -t2 -c64 -d"$duration" --latency -s scripts/bench/query.lua "$base/container_registries" | sed -n '1,/Latency Distribution/p;/99%/p;/Requests\/sec/p'
INNER
