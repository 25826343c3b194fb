#!/usr/bin/env bash
# Builds or fetches the control plane the API server tests (make test-k8s, deploy/apiserver) run:
#   - kube-apiserver, built from the Go module proxy (k8s.io/kubernetes $K8S_VERSION). The root
#     module's go.mod replaces every k8s.io staging module with ./staging/..., which a module zip
#     cannot use, so a wrapper module replaces each with the published v0.<minor>.<patch> instead.
#     About 20 minutes on a 2-core machine (module downloads included), once per version.
#   - etcd, from Debian's etcd-server package, unpacked (apt-get download + dpkg -x) without
#     installing a service.
# Both land in $CACHE (default ~/.cache/bridgehead-test/k8s-$K8S_VERSION): only the first run on a
# machine pays. Prints the cache directory on stdout. Idempotent.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.36.3}"
CACHE="${CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bridgehead-test/k8s-$K8S_VERSION}"
go_bin="${GO:-go}"

mkdir -p "$CACHE"

if [ ! -x "$CACHE/etcd" ]; then
  echo "k8s-binaries: etcd from Debian's etcd-server package" >&2
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  tmp="$(mktemp -d)"
  $SUDO apt-get update -qq
  (cd "$tmp" && apt-get download -qq etcd-server)
  dpkg -x "$tmp"/etcd-server_*.deb "$tmp/root"
  install -m 0755 "$tmp/root/usr/bin/etcd" "$CACHE/etcd.new"
  mv "$CACHE/etcd.new" "$CACHE/etcd"
  rm -rf "$tmp"
fi

if [ ! -x "$CACHE/kube-apiserver" ]; then
  echo "k8s-binaries: building kube-apiserver $K8S_VERSION from the module proxy (about 20 minutes on 2 cores)" >&2
  # v1.36.3 → the staging modules' v0.36.3.
  staging="v0.${K8S_VERSION#v1.}"
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  cd "$work"
  export GOFLAGS=-mod=mod GOTOOLCHAIN=local GOWORK=off
  gomod="$("$go_bin" mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
  {
    echo "module bridgehead.test/kube-apiserver"
    echo
    echo "go $(sed -n 's/^go \([0-9.]*\)$/\1/p' "$gomod")"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    # Every `k8s.io/x => ./staging/src/k8s.io/x` of the root module, pointed at the published one.
    sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\) => \./staging/.*$#replace \1 => \1 '"$staging"'#p' "$gomod"
  } >go.mod
  "$go_bin" get "k8s.io/kubernetes/cmd/kube-apiserver@$K8S_VERSION"
  v=k8s.io/component-base/version
  minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  CGO_ENABLED=0 "$go_bin" build -trimpath -o "$CACHE/kube-apiserver.new" \
    -ldflags "-s -w -X $v.gitVersion=$K8S_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean" \
    k8s.io/kubernetes/cmd/kube-apiserver
  mv "$CACHE/kube-apiserver.new" "$CACHE/kube-apiserver"
fi

echo "$CACHE"
