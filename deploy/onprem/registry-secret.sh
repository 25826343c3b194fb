#!/usr/bin/env bash
# Creates (or updates) the image pull secret the on-prem stamp uses to pull from Azure Container
# Registry: the seed's `kubectl create secret docker-registry`, without putting the password on
# any command line (it is read from standard input). Use a pull-only ACR token, not the
# registry's admin user:
#   az acr token credential generate --name onprem-pull --registry ACR --password1 \
#     --expiration-in-days 365 --query 'passwords[0].value' --output tsv |
#     deploy/onprem/registry-secret.sh --server ACR.azurecr.io --username onprem-pull
# The overlay deploy/kustomize/overlays/onprem refers to it as bridgehead-acr-pull.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib/common.sh
. "$here/../lib/common.sh"

usage() {
  cat <<'EOF'
Usage: deploy/onprem/registry-secret.sh --server HOST --username NAME [--namespace NS]
       [--name SECRET] [--context CTX] [--dry-run]  < password

  --server     registry login server, e.g. bridgeheadacr.azurecr.io (required)
  --username   ACR token (or service principal) name (required)
  --namespace  [bridgehead]
  --name       [bridgehead-acr-pull] (the overlay's imagePullSecrets name)
  --context    kubectl context of the on-prem cluster (default: current)
  --dry-run    print the commands; the password is not read
The password is read from standard input.
EOF
}

SERVER=""
USERNAME=""
NAMESPACE=bridgehead
NAME=bridgehead-acr-pull
CONTEXT=""
# option NAME VALUE sets the option NAME.
option() {
  case "$1" in
    --server) SERVER="$2" ;;
    --username) USERNAME="$2" ;;
    --namespace) NAMESPACE="$2" ;;
    --name) NAME="$2" ;;
    --context) CONTEXT="$2" ;;
    *) return 1 ;;
  esac
}
parse_args no_switches option "$@"
[ -n "$SERVER" ] || die "--server is required"
[ -n "$USERNAME" ] || die "--username is required"
need_cmd kubectl base64

kube=()
[ -z "$CONTEXT" ] || kube+=(--context "$CONTEXT")

# json_string quotes a string for JSON.
json_string() {
  local s="$1"
  s="${s//\\/\\\\}"
  s="${s//\"/\\\"}"
  printf '"%s"' "$s"
}

step "Namespace $NAMESPACE"
apply_stdin "${kube[@]}" -- namespace "$NAMESPACE"

step "Pull secret $NAMESPACE/$NAME for $SERVER"
if [ "$DRY_RUN" = 1 ]; then
  apply_stdin "${kube[@]}" -- secret generic "$NAME" --namespace="$NAMESPACE" \
    --type=kubernetes.io/dockerconfigjson --from-file=.dockerconfigjson=/dev/stdin
  exit 0
fi
password=""
IFS= read -r password || [ -n "$password" ] || die "no password on standard input"
[ -n "$password" ] || die "empty password on standard input"
auth="$(printf '%s:%s' "$USERNAME" "$password" | base64 | tr -d '\n')"
printf '{"auths":{%s:{"username":%s,"password":%s,"auth":%s}}}' \
  "$(json_string "$SERVER")" "$(json_string "$USERNAME")" "$(json_string "$password")" "$(json_string "$auth")" |
  apply_stdin "${kube[@]}" -- secret generic "$NAME" --namespace="$NAMESPACE" \
    --type=kubernetes.io/dockerconfigjson --from-file=.dockerconfigjson=/dev/stdin
