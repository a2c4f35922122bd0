#!/usr/bin/env bash
# The benchmark behind the README's Performance table: one run, one table, every figure beside its
# target. It installs what it measures with (wrk, Flask and mongomock, dynalite, cargo-lambda),
# builds (release: the server, the axum hello-world baseline, the arm64 Lambda zip), then measures
# everything inside a loopback-only network namespace (scripts/bench/run.sh).
#
#   ./scripts/bench.sh                # as root (apt, unshare)
#
# Settings (environment): DURATION (wrk, default 10s), THREADS (2), CONNECTIONS (32), PASSES (20,
# full passes of the unindexed filter), REQUESTS (30, sequential DynamoDB queries), INIT_RUNS (20,
# Lambda cold starts), LAMBDA_ZIP=0 to skip the arm64 build (its sizes then read "not built"),
# SIZES ("1000 1000000", the entries of issue 22's rows), REPEAT (20, requests per row there).
# Benchmarks are not tests: scripts/test.sh never runs this.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n==> %s\n' "$*" >&2; }

step "tools"
command -v wrk >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk; }
python3 -c 'import flask, mongomock' 2>/dev/null ||
  python3 -m pip install -q --disable-pip-version-check -r scripts/bench/requirements.txt
[ -d node_modules/dynalite ] || npm ci --no-audit --no-fund --loglevel=error
if [ "${LAMBDA_ZIP:-1}" = 1 ]; then
  command -v cargo-lambda >/dev/null ||
    python3 -m pip install -q --disable-pip-version-check "$(grep '^cargo-lambda==' requirements-test.txt)"
  rustup target list --installed | grep -qx aarch64-unknown-linux-gnu ||
    rustup target add aarch64-unknown-linux-gnu
fi

step "release builds"
target=${CARGO_TARGET_DIR:-target}
# Two invocations: an example brings in the dev-dependencies, whose features must not leak into
# the server binary being measured.
cargo build --release --locked --bin registry-db
cargo build --release --locked --example hello
lambda_dir=""
if [ "${LAMBDA_ZIP:-1}" = 1 ]; then
  # Exactly what SAM's rust-cargolambda build runs for template.yaml (release profile, arm64).
  cargo lambda build --release --locked --arm64 --bin registry-db --output-format zip
  lambda_dir=$target/lambda/registry-db
fi

step "measuring, inside a loopback-only network namespace"
export BENCH_BIN=$target/release/registry-db
export BENCH_HELLO=$target/release/examples/hello
# arm64 does not run here: Lambda init is timed on the x86_64 build of the same code and profile.
export BENCH_LAMBDA_BIN=$target/release/registry-db
export BENCH_LAMBDA_DIR=$lambda_dir
unshare -n scripts/bench/run.sh
# Issue 22's rows: the store at 1,000 and at 1,000,000 entries (SIZES), import, start-up, the
# front page, facets and a name search, peak RSS (scripts/bench/million.sh).
step "1,000 and 1,000,000 entries"
exec unshare -n bash -c 'ip link set lo up && exec scripts/bench/million.sh'
