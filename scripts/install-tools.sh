#!/usr/bin/env bash
# Installs what `make test` needs on a fresh machine. Idempotent: does nothing when all is present.
set -euo pipefail

need_apt=()
command -v gcc >/dev/null 2>&1 || need_apt+=(gcc)   # -race needs cgo
# The console's browser test (test/e2e/console_test.go) drives Debian's headless chromium.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
# The full-share tests (internal/fulldisk) format a loop-mounted ext4 image.
{ command -v mkfs.ext4 || [ -x /sbin/mkfs.ext4 ] || [ -x /usr/sbin/mkfs.ext4 ]; } >/dev/null 2>&1 || need_apt+=(e2fsprogs)
# The cut-link test (test/e2e/cutlink_test.go) puts a stamp in a network namespace (ip netns, veth).
{ command -v ip || [ -x /sbin/ip ] || [ -x /usr/sbin/ip ]; } >/dev/null 2>&1 || need_apt+=(iproute2)

if [ "${#need_apt[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  echo "install-tools: apt-get install ${need_apt[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi

# The alert rules' checks and the real-Prometheus test (deploy/monitoring, test/e2e/monitoring_test.go)
# run Debian's prometheus and its promtool; without its recommends (node exporter, SNMP, IPMI...),
# which the tests do not use.
if ! { command -v prometheus && command -v promtool; } >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  echo "install-tools: apt-get install prometheus" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus
fi

# The deployment kit's offline validators (shellcheck, azure-cli, the Flux CRD schemas).
"$(dirname "$0")/install-deploy-tools.sh"
