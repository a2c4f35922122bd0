#!/usr/bin/env bash
# Fuzzes a running local server from its own OpenAPI document (/openapi.json) with schemathesis:
# no server error (5xx) and no response that contradicts the document. Started by scripts/test.sh
# inside the loopback-only namespace; the server binds 127.0.0.1 on a port the OS picks.
set -euo pipefail
cd "$(dirname "$0")/.."

# Generated requests make the server probe whatever URLs entries hold: only where loopback is the
# whole network (scripts/test.sh runs this under unshare -n).
if tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | grep -vqx lo; then
  echo "refusing to run outside a loopback-only network namespace: use scripts/test.sh" >&2
  exit 2
fi
command -v st >/dev/null || { echo "schemathesis (st) is not installed: pip install -r requirements-test.txt" >&2; exit 2; }
bin="${CARGO_TARGET_DIR:-target}/debug/registry-db"
[ -x "$bin" ] || { echo "$bin is not built: cargo build" >&2; exit 2; }

work=$(mktemp -d)
out="$work/server.out"
"$bin" serve --addr 127.0.0.1:0 --data "$work/data" --probe-timeout-ms 300 >"$out" 2>"$work/server.log" &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -rf "$work"' EXIT

for _ in $(seq 100); do
  grep -q "listening on" "$out" 2>/dev/null && break
  sleep 0.1
done
base=$(sed -n 's/^registry-db listening on //p' "$out")
[ -n "$base" ] || { echo "the server did not start:" >&2; cat "$work/server.log" >&2; exit 1; }

echo "schemathesis against $base/openapi.json"
st --no-color --config-file tests/schemathesis/schemathesis.toml run "$base/openapi.json" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance \
  --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-60}" \
  --generation-deterministic \
  --request-timeout 10
