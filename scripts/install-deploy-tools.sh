#!/usr/bin/env bash
# Installs what the deploy/ tests (go test ./deploy/...) need on a fresh Debian/Ubuntu machine:
#   - shellcheck            lints every shell script under deploy/ and the workflows' run: steps
#   - azure-cli (az)        `az <group> <cmd> --help` checks every az command the provisioning
#                           script's --dry-run prints
#   - the Flux controllers' and prometheus-operator's module zips (Go module proxy), which hold
#     the CRDs (OpenAPI schemas) of the custom kinds the kit uses
# Idempotent: does nothing when everything is present. Runs as root, or through sudo otherwise.
set -euo pipefail

cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi

need_apt=()
command -v shellcheck >/dev/null 2>&1 || need_apt+=(shellcheck)
command -v az >/dev/null 2>&1 || need_apt+=(azure-cli)

if [ "${#need_apt[@]}" -gt 0 ]; then
  echo "install-deploy-tools: apt-get install ${need_apt[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# The CRDs live in the controllers' root modules, not in the api modules go.mod requires. Download
# the root module at the same version as the api module (Flux tags both together). `go mod
# download` runs outside this module so that it never touches go.mod or go.sum.
go_bin="${GO:-go}"
modcache="$("$go_bin" env GOMODCACHE)"
# api module, root module, the CRD directory in the root module.
while read -r api root crddir; do
  version="$("$go_bin" list -m -f '{{.Version}}' "$api" 2>/dev/null || true)"
  if [ -z "$version" ]; then
    echo "install-deploy-tools: $api is not in go.mod; skipping its CRDs" >&2
    continue
  fi
  if [ -d "$modcache/$root@$version/$crddir" ]; then
    continue
  fi
  echo "install-deploy-tools: go mod download $root@$version" >&2
  tmp="$(mktemp -d)"
  (cd "$tmp" && GOFLAGS=-mod=mod GO111MODULE=on "$go_bin" mod download "$root@$version")
  rm -rf "$tmp"
done <<'EOF'
github.com/fluxcd/kustomize-controller/api github.com/fluxcd/kustomize-controller config/crd/bases
github.com/fluxcd/source-controller/api github.com/fluxcd/source-controller config/crd/bases
github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring github.com/prometheus-operator/prometheus-operator example/prometheus-operator-crd
EOF
