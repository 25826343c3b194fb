#!/usr/bin/env bash
# Writes what a stamp's cluster needs besides Git, idempotently (create-or-update):
#   - ConfigMap cluster-config/bridgehead-cluster-vars: the site values Flux substitutes into the
#     overlay (deploy/flux/clusters/<stamp>/bridgehead.yaml, postBuild.substituteFrom), in the
#     namespace of the Flux configuration, where its Kustomization reads it
#   - Secret bridgehead/bridgehead-auth: the principals file (`bridgehead auth new`)
#   - on-prem: Secret bridgehead/bridgehead-eventhubs (send-only connection string) and
#     Secret bridgehead/bridgehead-tls (the API's certificate and key)
#   - cloud: Secret bridgehead/bridgehead-ingress-tls (the Application Gateway's certificate)
#   - with --metrics-key-file: Secret kube-system/bridgehead-metrics-scrape, the key Azure Monitor's
#     ama-metrics presents to /metrics (deploy/kustomize/azure-monitor, docs/deploy.md)
# Secrets are read from files or standard input, never from the command line.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib/common.sh
. "$here/lib/common.sh"

usage() {
  cat <<'EOF'
Usage: deploy/stamp-config.sh --stamp onprem|cloud --acr-login-server HOST [options] [--dry-run]

Both stamps:
  --context CTX                 kubectl context of the stamp's cluster (default: current)
  --acr-login-server HOST       e.g. bridgeheadacr.azurecr.io (required)
  --eventhub-name NAME          [bridgehead]
  --auth-file FILE              principals file for --auth required; stored as Secret bridgehead-auth
  --metrics-key-file FILE|-     the key of a principal of that file, for Azure Monitor's scrapes of
                                /metrics; stored as Secret kube-system/bridgehead-metrics-scrape
                                (docs/deploy.md, "Azure Monitor")
On-prem (--stamp onprem):
  --nfs-server HOST             the NFS server (deploy/nfs) (required)
  --nfs-path PATH               the export [/srv/bridgehead/spool]
  --eventhubs-connection-string-file FILE|-   the send-only policy's connection string
  --tls-cert-file FILE --tls-key-file FILE     the API's TLS pair (PEM)
Cloud (--stamp cloud):
  --eventhubs-namespace NAME    Event Hubs namespace (without .servicebus.windows.net) (required)
  --resource-group RG --storage-account NAME --file-share NAME   the spool share (required)
  --storage-sku SKU             the storage account's SKU: Premium_ZRS or Premium_LRS [Premium_ZRS]
  --client-id ID                the forwarder's workload identity client id (required)
  --api-host HOST               public host name of the Application Gateway ingress (required)
  --tls-cert-file FILE --tls-key-file FILE     the ingress's TLS pair (PEM), listing --api-host
                                and --failover-host; stored as Secret bridgehead-ingress-tls
  --failover-host HOST          the name clients of the Traffic Manager profile use (a CNAME to
                                <profile>.trafficmanager.net, docs/failover.md): the ingress
                                answers it too. Give it on every run [the --api-host value]
EOF
}

STAMP=""
CONTEXT=""
ACR_LOGIN_SERVER=""
EVENTHUB_NAME=bridgehead
AUTH_FILE=""
METRICS_KEY_FILE=""
NFS_SERVER=""
NFS_PATH=/srv/bridgehead/spool
EH_CONN_FILE=""
TLS_CERT_FILE=""
TLS_KEY_FILE=""
EVENTHUBS_NAMESPACE=""
RESOURCE_GROUP=""
STORAGE_ACCOUNT=""
FILE_SHARE=""
STORAGE_SKU=Premium_ZRS
CLIENT_ID=""
API_HOST=""
FAILOVER_HOST=""

# is_host NAME succeeds when NAME can be an Ingress host: a lowercase DNS name (RFC 1123
# subdomain, at most 253 characters, labels of at most 63), not an IPv4 address.
is_host() {
  local label labels
  [ "${#1}" -le 253 ] || return 1
  [[ "$1" =~ ^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$ ]] || return 1
  [[ ! "$1" =~ ^[0-9.]+$ ]] || return 1
  IFS=. read -r -a labels <<<"$1"
  for label in "${labels[@]}"; do
    [ "${#label}" -le 63 ] || return 1
  done
}

# option NAME VALUE sets the option NAME.
option() {
  case "$1" in
    --stamp) STAMP="$2" ;;
    --context) CONTEXT="$2" ;;
    --acr-login-server) ACR_LOGIN_SERVER="$2" ;;
    --eventhub-name) EVENTHUB_NAME="$2" ;;
    --auth-file) AUTH_FILE="$2" ;;
    --metrics-key-file) METRICS_KEY_FILE="$2" ;;
    --nfs-server) NFS_SERVER="$2" ;;
    --nfs-path) NFS_PATH="$2" ;;
    --eventhubs-connection-string-file) EH_CONN_FILE="$2" ;;
    --tls-cert-file) TLS_CERT_FILE="$2" ;;
    --tls-key-file) TLS_KEY_FILE="$2" ;;
    --eventhubs-namespace) EVENTHUBS_NAMESPACE="$2" ;;
    --resource-group) RESOURCE_GROUP="$2" ;;
    --storage-account) STORAGE_ACCOUNT="$2" ;;
    --file-share) FILE_SHARE="$2" ;;
    --storage-sku) STORAGE_SKU="$2" ;;
    --client-id) CLIENT_ID="$2" ;;
    --api-host) API_HOST="$2" ;;
    --failover-host) FAILOVER_HOST="$2" ;;
    *) return 1 ;;
  esac
}
parse_args no_switches option "$@"

[ -n "$ACR_LOGIN_SERVER" ] || die "--acr-login-server is required"
if [ "$METRICS_KEY_FILE" = - ] && [ "$EH_CONN_FILE" = - ]; then
  die "--metrics-key-file and --eventhubs-connection-string-file cannot both read standard input"
fi
kube=()
[ -z "$CONTEXT" ] || kube+=(--context "$CONTEXT")
need_cmd kubectl

vars=(--from-literal="ACR_LOGIN_SERVER=$ACR_LOGIN_SERVER" --from-literal="EVENTHUB_NAME=$EVENTHUB_NAME")
case "$STAMP" in
  onprem)
    [ -n "$NFS_SERVER" ] || die "--nfs-server is required for the onprem stamp"
    [ -z "$FAILOVER_HOST" ] ||
      die "--failover-host is for the cloud stamp; on-prem, list the name in the certificate of --tls-cert-file (docs/failover.md)"
    case "$NFS_PATH" in /*) ;; *) die "--nfs-path must be absolute" ;; esac
    vars+=(--from-literal="NFS_SERVER=$NFS_SERVER" --from-literal="NFS_PATH=$NFS_PATH")
    ;;
  cloud)
    for pair in "eventhubs-namespace:$EVENTHUBS_NAMESPACE" "resource-group:$RESOURCE_GROUP" \
      "storage-account:$STORAGE_ACCOUNT" "file-share:$FILE_SHARE" "client-id:$CLIENT_ID" "api-host:$API_HOST"; do
      [ -n "${pair#*:}" ] || die "--${pair%%:*} is required for the cloud stamp"
    done
    case "$STORAGE_SKU" in Premium_ZRS | Premium_LRS) ;; *) die "--storage-sku must be Premium_ZRS or Premium_LRS" ;; esac
    is_host "$API_HOST" || die "--api-host $API_HOST is not a lowercase DNS name (no IP address, no wildcard)"
    if [ -z "$FAILOVER_HOST" ]; then
      # Always written, so that the ConfigMap says what the ingress answers and a run without
      # the option takes a failover name away again.
      FAILOVER_HOST="$API_HOST"
      log "note: no --failover-host: the ingress answers $API_HOST only (docs/failover.md)"
    fi
    is_host "$FAILOVER_HOST" || die "--failover-host $FAILOVER_HOST is not a lowercase DNS name (no IP address, no wildcard)"
    vars+=(--from-literal="EVENTHUBS_NAMESPACE=$EVENTHUBS_NAMESPACE"
      --from-literal="RESOURCE_GROUP=$RESOURCE_GROUP"
      --from-literal="STORAGE_ACCOUNT=$STORAGE_ACCOUNT"
      --from-literal="FILE_SHARE=$FILE_SHARE"
      --from-literal="STORAGE_SKU=$STORAGE_SKU"
      --from-literal="WORKLOAD_IDENTITY_CLIENT_ID=$CLIENT_ID"
      --from-literal="API_HOST=$API_HOST"
      --from-literal="FAILOVER_HOST=$FAILOVER_HOST")
    ;;
  *) die "--stamp must be onprem or cloud" ;;
esac

step "Namespaces cluster-config (the Flux configuration's) and bridgehead"
apply_stdin "${kube[@]}" -- namespace cluster-config
apply_stdin "${kube[@]}" -- namespace bridgehead

step "Cluster values Flux substitutes (cluster-config/bridgehead-cluster-vars)"
apply_stdin "${kube[@]}" -- configmap bridgehead-cluster-vars --namespace=cluster-config "${vars[@]}"

if [ -n "$AUTH_FILE" ]; then
  step "Principals file (bridgehead/bridgehead-auth)"
  [ "$DRY_RUN" = 1 ] || [ -r "$AUTH_FILE" ] || die "cannot read $AUTH_FILE"
  apply_stdin "${kube[@]}" -- secret generic bridgehead-auth --namespace=bridgehead --from-file="auth.yaml=$AUTH_FILE"
else
  log "note: no --auth-file: the pods wait for Secret bridgehead/bridgehead-auth (docs/security.md)"
fi

if [ -n "$METRICS_KEY_FILE" ]; then
  # In the namespace of ama-metrics and of the PodMonitors that name it (a scrape's Secret must be
  # in its PodMonitor's namespace). Write it before the PodMonitors exist: ama-metrics' target
  # allocator does not pick up a Secret created after them (docs/deploy.md).
  step "Azure Monitor's scrape key (kube-system/bridgehead-metrics-scrape)"
  src="$METRICS_KEY_FILE"
  [ "$src" != - ] || src=/dev/stdin
  [ "$DRY_RUN" = 1 ] || [ "$src" = /dev/stdin ] || [ -r "$src" ] || die "cannot read $src"
  apply_stdin "${kube[@]}" -- secret generic bridgehead-metrics-scrape --namespace=kube-system --from-file="key=$src"
fi

if [ "$STAMP" = onprem ]; then
  if [ -n "$EH_CONN_FILE" ]; then
    step "Event Hubs send-only connection string (bridgehead/bridgehead-eventhubs)"
    src="$EH_CONN_FILE"
    [ "$src" != - ] || src=/dev/stdin
    apply_stdin "${kube[@]}" -- secret generic bridgehead-eventhubs --namespace=bridgehead --from-file="connection-string=$src"
  else
    log "note: no --eventhubs-connection-string-file: the forwarder waits for Secret bridgehead/bridgehead-eventhubs"
  fi
fi

# The TLS pair: on the API pods on-prem, at the Application Gateway in the cloud.
tls_secret=bridgehead-tls
[ "$STAMP" = onprem ] || tls_secret=bridgehead-ingress-tls
if [ -n "$TLS_CERT_FILE" ] || [ -n "$TLS_KEY_FILE" ]; then
  if [ -z "$TLS_CERT_FILE" ] || [ -z "$TLS_KEY_FILE" ]; then
    die "--tls-cert-file and --tls-key-file go together"
  fi
  step "TLS pair (bridgehead/$tls_secret)"
  apply_stdin "${kube[@]}" -- secret tls "$tls_secret" --namespace=bridgehead --cert="$TLS_CERT_FILE" --key="$TLS_KEY_FILE"
else
  log "note: no TLS pair: Secret bridgehead/$tls_secret is missing (the on-prem API pods wait for it; the cloud ingress has no certificate)"
fi
