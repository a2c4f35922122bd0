#!/usr/bin/env bash
# The measuring half of scripts/bench.sh: runs inside the loopback-only namespace that bench.sh
# creates, on builds bench.sh has made, and prints the table. Not meant to be run by hand.
set -euo pipefail
cd "$(dirname "$0")/../.."
ip link set lo up

bin=${BENCH_BIN:?} hello=${BENCH_HELLO:?} lambda_bin=${BENCH_LAMBDA_BIN:?}
threads=${THREADS:-2} conns=${CONNECTIONS:-32} duration=${DURATION:-10s}
client="python3 scripts/bench/client.py"
work=$(mktemp -d /dev/shm/registry-db-bench.XXXXXX) # tmpfs: seeding is not bound by fsync
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
say() { printf '%s\n' "$*" >&2; }

# start NAME CMD...: starts a server whose stdout says "... listening on URL"; sets $url.
start() {
  local name=$1; shift
  "$@" >"$work/$name.out" 2>"$work/$name.err" &
  pids+=($!)
  for _ in $(seq 600); do
    url=$(sed -n 's/.* listening on \(http:[^ ]*\).*/\1/p' "$work/$name.out")
    [ -n "$url" ] && return 0
    kill -0 "${pids[-1]}" 2>/dev/null || break
    sleep 0.05
  done
  say "$name did not start:"; cat "$work/$name.err" >&2; exit 1
}
stop_last() { kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true; unset 'pids[-1]'; }

# rps URL [LUA]: requests per second under wrk; fails on any non-2xx answer or socket error.
rps() {
  local out
  out=$(wrk -t"$threads" -c"$conns" -d"$duration" --timeout 30s ${2:+-s "$2"} "$1")
  if grep -q 'Non-2xx\|Socket errors' <<<"$out"; then say "wrk $1:"; say "$out"; exit 1; fi
  sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' <<<"$out"
}

tag_query='{"container_registry_tags": {"$in": ["gpu"]}}'
owner_query='{"container_registry_metadata.owner": "team-7"}'
lua="$work/tag_query.lua"
printf 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = %s\n' \
  "'$tag_query'" >"$lua"
# limit=1000: the 100 matches come back in one answer, so one request is the whole query.
qpath="/container_registries?limit=1000"
export RUST_LOG=${RUST_LOG:-warn}
load_start=$(cut -d' ' -f1 /proc/loadavg)

say "== hello-world baseline"
start hello "$hello" 127.0.0.1:0
r_hello=$(rps "$url/")
# What axum, the kernel and wrk can move for answers of a GET's and of the tag query's size
# (754 and 72,936 bytes with the entries client.py seeds).
r_fixed_get=$(rps "$url/bytes/${GET_BYTES:-754}")
r_fixed_query=$(rps "$url/bytes/${QUERY_BYTES:-72936}")
stop_last

say "== embedded store, 1,000 entries"
start e1k "$bin" serve --addr 127.0.0.1:0 --data "$work/e1k"
$client seed "$url" 1000
$client check "$url$qpath" "$tag_query" 100
r_get=$(rps "$url/container_registry/e000500")
r_q1k=$(rps "$url$qpath" "$lua")
# The discovery page against the JSON query behind it (same filter, same page size of 20); the
# facets of a search with more than one page come from the facet cache after the first request.
r_page_tag=$(rps "$url/?tag=gpu")
r_json_tag=$(rps "$url/container_registries?limit=20" scripts/bench/page-query.lua)
r_page_all=$(rps "$url/")
r_json_all=$(rps "$url/container_registries?limit=20" scripts/bench/page-query-all.lua)
stop_last

say "== embedded store, 20,000 entries"
start e20k "$bin" serve --addr 127.0.0.1:0 --data "$work/e20k"
$client seed "$url" 20000
$client check "$url$qpath" "$tag_query" 100
$client check "$url/container_registries" "$owner_query" 100
r_q20k=$(rps "$url$qpath" "$lua")
ms_scan=$($client passes "$url/container_registries" "$owner_query" "${PASSES:-20}")
stop_last

say "== earlier service (Flask + mongomock), 1,000 entries"
start earlier python3 scripts/bench/earlier_service.py
$client seed "$url" 1000
$client check "$url/container_registries" "$tag_query" 100
r_py=$(rps "$url/container_registries" "$lua")
stop_last

say "== DynamoDB (dynalite), 300 and 3,000 entries"
# dynalite exits when its stdin closes: hold a FIFO open for as long as this script runs.
mkfifo "$work/dynalite.in"
node tests/it/support/dynalite.js <"$work/dynalite.in" >"$work/dynalite.port" &
pids+=($!)
exec 9>"$work/dynalite.in"
for _ in $(seq 100); do [ -s "$work/dynalite.port" ] && break; sleep 0.1; done
export AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:$(cat "$work/dynalite.port")"
export AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench
declare -A ms_ddb
for n in 300 3000; do
  start "ddb$n" "$bin" serve --addr 127.0.0.1:0 --store dynamodb --table "bench$n" --create-table
  $client seed "$url" "$n"
  $client check "$url$qpath" "$tag_query" 100
  ms_ddb[$n]=$($client latency "$url$qpath" "$tag_query" "${REQUESTS:-30}")
  stop_last
done
unset AWS_ENDPOINT_URL_DYNAMODB AWS_REGION AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY

say "== Lambda init"
init=$($client lambda-init "$lambda_bin" "${INIT_RUNS:-20}")
init_median=${init% *} init_min=${init#* }

size() { if [ -f "$1" ]; then stat -c %s "$1"; else echo ""; fi; }
mb() { [ -n "$1" ] && awk -v b="$1" 'BEGIN { printf "%.2f MB (%d bytes)", b / 1e6, b }' || echo "not built"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f×", a / b }'; }
num() { awk -v a="$1" 'BEGIN { printf (a < 100 ? "%.1f" : "%.0f"), a }'; }

cat <<TABLE

registry-db benchmark, $(date -u +%Y-%m-%d), $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo "+changes"), $(nproc) cores (load average $load_start at the start, $(cut -d' ' -f1 /proc/loadavg) at the end), wrk -t$threads -c$conns -d$duration, RUST_LOG=$RUST_LOG

| what | measured | target |
|---|---|---|
| axum hello-world (\`examples/hello.rs\`), req/s | $(num "$r_hello") | baseline |
| \`GET /container_registry/{id}\`, 1,000 entries, req/s | $(num "$r_get") = $(ratio "$r_get" "$r_hello") hello-world; axum with a fixed answer of that size: $(num "$r_fixed_get") = $(ratio "$r_fixed_get" "$r_hello") | ≥ 0.8× |
| tag query, 100 matches of 1,000 entries, req/s | $(num "$r_q1k") = $(ratio "$r_q1k" "$r_hello") hello-world; axum with a fixed answer of that size: $(num "$r_fixed_query") = $(ratio "$r_fixed_query" "$r_hello") | ≥ 0.2× |
| same query, earlier Python service (Flask dev server + mongomock), req/s | $(num "$r_py"): registry-db is $(ratio "$r_q1k" "$r_py") faster | ≥ 100× |
| discovery page \`GET /?tag=gpu\` (20 of 100 matches), req/s | $(num "$r_page_tag"), its JSON query $(num "$r_json_tag"): the page takes $(ratio "$r_json_tag" "$r_page_tag") the query's time | ≤ 2× |
| discovery page \`GET /\` (20 of 1,000), req/s | $(num "$r_page_all"), its JSON query $(num "$r_json_all"): the page takes $(ratio "$r_json_all" "$r_page_all") the query's time | ≤ 2× |
| same query, 100 matches of 20,000 entries, req/s | $(num "$r_q20k") = $(ratio "$r_q20k" "$r_q1k") the 1,000-entry throughput | ≥ 0.5× |
| metadata filter (no index), 20,000 entries, all pages, ms per pass | $ms_scan | ≤ 40 |
| DynamoDB (dynalite): tag query latency, 300 → 3,000 entries, ms | ${ms_ddb[300]} → ${ms_ddb[3000]} = $(ratio "${ms_ddb[3000]}" "${ms_ddb[300]}") | ≤ 1.5× |
| Lambda init, start to first \`invocation/next\`, ms (median, min of ${INIT_RUNS:-20}) | $init_median, $init_min | ≤ 8 |
| local server binary (\`target/release/registry-db\`, x86_64) | $(mb "$(size "$bin")") | |
| Lambda \`bootstrap\` (arm64) | $(mb "$(size "${BENCH_LAMBDA_DIR:-}/bootstrap")") | |
| Lambda \`bootstrap.zip\` (arm64) | $(mb "$(size "${BENCH_LAMBDA_DIR:-}/bootstrap.zip")") | ≤ 4 MB |
TABLE
