#!/usr/bin/env bash
# Issue 22's rows of the Performance table: a generated mongoexport of 1,000 and of 1,000,000
# entries (scripts/bench/gen-mongoexport.py) imported into a fresh embedded store each (the import
# rate), then the release server on each: its start-up (from exec to its "listening" line), the
# front page `/`, `POST /container_registries/facets` with `{}` and a name search `/?q=registry-77`
# (median of REPEAT sequential requests after one warm-up), and its peak RSS (VmHWM) after them.
#
#   scripts/bench/million.sh                 # inside a loopback-only namespace (bench.sh does it)
#   SIZES="1000 100000" scripts/bench/million.sh
#
# Needs BENCH_BIN (the release binary); the exports are cached in BENCH_DATA (/tmp/registry-db-bench).
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${BENCH_BIN:-target/release/registry-db}
data=${BENCH_DATA:-/tmp/registry-db-bench}
sizes=${SIZES:-1000 1000000}
repeat=${REPEAT:-20}
mkdir -p "$data"

declare -A row
for n in $sizes; do
  export_file=$data/export-$n.json
  [ -s "$export_file" ] || python3 scripts/bench/gen-mongoexport.py "$n" > "$export_file"
  store=$data/store-$n
  rm -rf "$store"
  start=$(date +%s.%N)
  REGISTRY_DB_STORE=embedded "$bin" import --data "$store" "$export_file" > "$data/import-$n.log"
  end=$(date +%s.%N)
  tail -1 "$data/import-$n.log" >&2
  row[import_$n]=$(python3 -c "print(f'{$n/($end-$start):,.0f} entries/s ({$end-$start:.1f} s)')")

  # Start-up: exec to the first line, which the server prints once it listens.
  log=$data/serve-$n.log
  t0=$(date +%s%N)
  coproc SERVER { exec "$bin" serve --data "$store" --addr 127.0.0.1:0 2>"$log"; }
  read -r line <&"${SERVER[0]}"
  t1=$(date +%s%N)
  base=${line#registry-db listening on }
  row[start_$n]="$(( (t1 - t0) / 1000000 )) ms"
  pid=$SERVER_PID
  read -r front facets name < <(python3 - "$base" "$repeat" <<'EOF'
import http.client, json, statistics, sys, time, urllib.parse
base, repeat = sys.argv[1], int(sys.argv[2])
u = urllib.parse.urlsplit(base)
conn = http.client.HTTPConnection(u.hostname, u.port)
def timed(method, path, body=None):
    times = []
    for i in range(repeat + 1):
        t = time.perf_counter()
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        r = conn.getresponse(); r.read()
        assert r.status == 200, (path, r.status)
        if i: times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)
# Each request after a write-free warm-up: the front page counts from the kept counts.
print(f"{timed('GET', '/'):.2f} {timed('POST', '/container_registries/facets', b'{}'):.2f} "
      f"{timed('GET', '/?q=registry-77'):.2f}")
EOF
  )
  row[front_$n]=$front
  row[facets_$n]=$facets
  row[name_$n]=$name
  row[rss_$n]="$(awk '/VmHWM/ {printf "%.0f MB", $2/1024}' /proc/$pid/status)"
  matched=$(python3 -c "
import json,urllib.request
print(json.load(urllib.request.urlopen(urllib.request.Request('$base/container_registries/facets', data=b'{}', headers={'Content-Type':'application/json'})))['data']['matched'])")
  row[matched_$n]=$matched
  kill "$pid"; wait "$pid" 2>/dev/null || true
done

set -- $sizes
small=$1; large=${!#}
ratio() { python3 -c "print(f'{$2/$1:.2f}x')"; }
printf '\n| what (issue 22) | %s entries | %s entries | ratio |\n|---|---|---|---|\n' "$small" "$large"
printf '| `registry-db import` of a mongoexport | %s | %s | |\n' "${row[import_$small]}" "${row[import_$large]}"
printf '| server start-up, exec to listening | %s | %s | |\n' "${row[start_$small]}" "${row[start_$large]}"
printf '| front page `/`, ms (median of %s) | %s | %s | %s |\n' "$repeat" "${row[front_$small]}" "${row[front_$large]}" "$(ratio "${row[front_$small]}" "${row[front_$large]}")"
printf '| facets of `{}`, ms (matched: %s, %s; complete) | %s | %s | %s |\n' "${row[matched_$small]}" "${row[matched_$large]}" "${row[facets_$small]}" "${row[facets_$large]}" "$(ratio "${row[facets_$small]}" "${row[facets_$large]}")"
printf '| name search `/?q=registry-77`, ms | %s | %s | %s |\n' "${row[name_$small]}" "${row[name_$large]}" "$(ratio "${row[name_$small]}" "${row[name_$large]}")"
printf '| server peak RSS after those requests | %s | %s | |\n' "${row[rss_$small]}" "${row[rss_$large]}"
