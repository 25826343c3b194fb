#!/usr/bin/env bash
# Provisions the Azure side of Bridgehead's two stamps, idempotently (each resource is shown
# first and created only when missing), with the Azure CLI:
#   resource group, Azure Container Registry, Event Hubs namespace (Standard) + hub + a send-only
#   policy, storage account + file share (the cloud spool), AKS with the ACR attached, workload
#   identity and the Application Gateway ingress add-on, a managed identity federated with the
#   forwarder's ServiceAccount, and the Flux extension + configuration on the AKS cluster and on
#   the Arc-connected on-prem cluster (AKS hybrid); with ONPREM_HOST, a Traffic Manager profile
#   (priority routing, probing each stamp's /readyz over HTTPS) for clients that cannot fail over.
#   With --azure-monitor: an Azure Monitor workspace, managed Prometheus on both clusters (the AKS
#   add-on, the Arc extension Microsoft.AzureMonitor.Containers.Metrics), the kit's PodMonitors
#   (deploy/kustomize/azure-monitor/<stamp>) as a second Kustomization of each Flux configuration,
#   and the alerts as a Prometheus rule group per stamp (deploy/monitoring/azure-prometheus-rules.json).
# Then it writes each stamp's cluster values and secrets with deploy/stamp-config.sh.
# See docs/deploy.md for the order of the steps and what comes before (AKS hybrid, Arc, NFS).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib/common.sh
. "$here/../lib/common.sh"

usage() {
  cat <<'EOF'
Usage: deploy/azure/provision.sh [--dry-run] [--stamp all|cloud|onprem] [--azure-monitor] [--teardown --yes]

  --dry-run     print every az/kubectl command instead of running it (nothing is changed)
  --stamp S     cloud: Azure resources + AKS; onprem: shared resources + the Arc cluster's Flux
                configuration and pull token; all (default): both
  --azure-monitor  also Azure Monitor managed Prometheus for the stamps: the workspace, the
                metrics agent on each cluster, the PodMonitors that scrape the stamp (Flux) and the
                alerts as Azure Monitor rule groups (docs/deploy.md, "Azure Monitor"); needs
                METRICS_KEY_FILE
  --teardown    delete the Flux configurations, the ACR pull token (with --azure-monitor, the Arc
                cluster's metrics extension) and the resource group
                (the Event Hubs namespace, the storage account WITH THE CLOUD SPOOL, ACR, AKS,
                the Traffic Manager profile, the Azure Monitor workspace and rule groups); the
                Arc-connected on-prem cluster itself is left alone. Needs --yes.
  --yes         confirm --teardown
  -h, --help    this text

Settings (environment variables, defaults in brackets):
  LOCATION [westeurope]  PREFIX [bridgehead]  RESOURCE_GROUP [$PREFIX-rg]
  ACR_NAME [${PREFIX}acr]  EVENTHUBS_NAMESPACE [$PREFIX-ehns]  EVENTHUB_NAME [bridgehead]
  EVENTHUB_PARTITIONS [4]  STORAGE_ACCOUNT [${PREFIX}spool]  FILE_SHARE [spool]
  FILE_SHARE_QUOTA_GIB [100]  AKS_NAME [$PREFIX-aks]  AKS_NODE_COUNT [3]
  AKS_NODE_VM_SIZE [Standard_D4ds_v5]  APPGW_NAME [$PREFIX-appgw]
  APPGW_SUBNET_CIDR [10.225.0.0/16]  IDENTITY_NAME [$PREFIX-forwarder]
  API_HOST [api.bridgehead.example.com]  the cloud stamp's public host name
  ARC_CLUSTER_NAME []  the Arc-connected on-prem cluster (required for --stamp onprem|all)
  ARC_RESOURCE_GROUP [$RESOURCE_GROUP]
  ONPREM_CONTEXT []  kubectl context of the on-prem cluster; when set, its pull secret and
                     cluster values are written too (else the commands are printed for later)
  NFS_SERVER []  NFS_PATH [/srv/bridgehead/spool]  the on-prem spool export (deploy/nfs)
  GIT_URL [https://github.com/bridgehead-dev/bridgehead]  GIT_BRANCH [main]  the repository and
                    branch Flux syncs: a fork sets its own
  GIT_SECRET []  for a private repository: a Secret in namespace cluster-config with its
                 credentials (username/password or identity/known_hosts, Flux's GitRepository
                 secret format), created beforehand; passed as --local-auth-ref
  STORAGE_SKU [Premium_ZRS]  the spool's storage account: zone-redundant premium files, which
                 survive a zone of the three-zone cluster; Premium_LRS where the region offers no
                 Premium_ZRS (docs/deploy.md)
  AUTH_FILE []  the principals file (bridgehead auth new); when set, stored as bridgehead-auth
  TLS_CERT_FILE, TLS_KEY_FILE []  the on-prem API's TLS pair
  INGRESS_TLS_CERT_FILE, INGRESS_TLS_KEY_FILE []  the cloud ingress's TLS pair (API_HOST and
                  FAILOVER_HOST in its names), stored as Secret bridgehead-ingress-tls
  ONPREM_HOST []  the on-prem API's host name as the internet reaches it (port 443). When set, a
                  Traffic Manager profile answers TRAFFIC_MANAGER_DNS_NAME.trafficmanager.net
                  with ONPREM_HOST (priority 1) while its /readyz answers 200 over HTTPS, else
                  with API_HOST (priority 2); see docs/failover.md
  TRAFFIC_MANAGER_NAME [$PREFIX-tm]  TRAFFIC_MANAGER_DNS_NAME [$PREFIX] (globally unique)
  TRAFFIC_MANAGER_TTL [30]  seconds resolvers may cache an answer: a failover reaches a client
                            up to this long after Traffic Manager noticed it
  FAILOVER_HOST []  the name clients use through Traffic Manager (a CNAME to it); the cloud
                    ingress answers it as well as API_HOST (stamp-config.sh --failover-host)
With --azure-monitor:
  AZURE_MONITOR_WORKSPACE [$PREFIX-amw]  the Azure Monitor workspace both stamps' metrics go to
  METRICS_KEY_FILE []  the key of a principal of AUTH_FILE that ama-metrics presents to /metrics
                       (no trailing newline); stored as Secret kube-system/bridgehead-metrics-scrape
  GRAFANA_RESOURCE_ID []  an Azure Managed Grafana to link to the workspace (optional)
  ACTION_GROUP_ID []  an action group the alerts notify (optional)
  RUNBOOK_BASE_URL [https://github.com/bridgehead-dev/bridgehead/blob/main/]  where the alerts'
                    runbook links (docs/runbook.md#<alert>) point
EOF
}

STAMP=all
TEARDOWN=0
YES=0
AZURE_MONITOR=0
while [ "$#" -gt 0 ]; do
  case "$1" in
    --dry-run) DRY_RUN=1 ;;
    --stamp)
      [ "$#" -ge 2 ] || die "--stamp needs a value"
      STAMP="$2"
      shift
      ;;
    --stamp=*) STAMP="${1#--stamp=}" ;;
    --teardown) TEARDOWN=1 ;;
    --azure-monitor) AZURE_MONITOR=1 ;;
    --yes) YES=1 ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      usage >&2
      die "unknown argument: $1"
      ;;
  esac
  shift
done
case "$STAMP" in all | cloud | onprem) ;; *) die "--stamp must be all, cloud or onprem" ;; esac
export DRY_RUN

LOCATION="${LOCATION:-westeurope}"
PREFIX="${PREFIX:-bridgehead}"
RESOURCE_GROUP="${RESOURCE_GROUP:-$PREFIX-rg}"
ACR_NAME="${ACR_NAME:-${PREFIX//-/}acr}"
EVENTHUBS_NAMESPACE="${EVENTHUBS_NAMESPACE:-$PREFIX-ehns}"
EVENTHUB_NAME="${EVENTHUB_NAME:-bridgehead}"
EVENTHUB_PARTITIONS="${EVENTHUB_PARTITIONS:-4}"
EVENTHUB_SEND_RULE="${EVENTHUB_SEND_RULE:-onprem-send}"
STORAGE_ACCOUNT="${STORAGE_ACCOUNT:-${PREFIX//-/}spool}"
FILE_SHARE="${FILE_SHARE:-spool}"
FILE_SHARE_QUOTA_GIB="${FILE_SHARE_QUOTA_GIB:-100}"
AKS_NAME="${AKS_NAME:-$PREFIX-aks}"
AKS_NODE_COUNT="${AKS_NODE_COUNT:-3}"
AKS_NODE_VM_SIZE="${AKS_NODE_VM_SIZE:-Standard_D4ds_v5}"
APPGW_NAME="${APPGW_NAME:-$PREFIX-appgw}"
APPGW_SUBNET_CIDR="${APPGW_SUBNET_CIDR:-10.225.0.0/16}"
IDENTITY_NAME="${IDENTITY_NAME:-$PREFIX-forwarder}"
API_HOST="${API_HOST:-api.bridgehead.example.com}"
ARC_CLUSTER_NAME="${ARC_CLUSTER_NAME:-}"
ARC_RESOURCE_GROUP="${ARC_RESOURCE_GROUP:-$RESOURCE_GROUP}"
ONPREM_CONTEXT="${ONPREM_CONTEXT:-}"
NFS_SERVER="${NFS_SERVER:-}"
NFS_PATH="${NFS_PATH:-/srv/bridgehead/spool}"
GIT_URL="${GIT_URL:-https://github.com/bridgehead-dev/bridgehead}"
GIT_BRANCH="${GIT_BRANCH:-main}"
GIT_SECRET="${GIT_SECRET:-}"
STORAGE_SKU="${STORAGE_SKU:-Premium_ZRS}"
case "$STORAGE_SKU" in
  Premium_ZRS | Premium_LRS) ;;
  *) die "STORAGE_SKU must be Premium_ZRS or Premium_LRS (premium file shares)" ;;
esac
AUTH_FILE="${AUTH_FILE:-}"
TLS_CERT_FILE="${TLS_CERT_FILE:-}"
INGRESS_TLS_CERT_FILE="${INGRESS_TLS_CERT_FILE:-}"
INGRESS_TLS_KEY_FILE="${INGRESS_TLS_KEY_FILE:-}"
TLS_KEY_FILE="${TLS_KEY_FILE:-}"
ONPREM_HOST="${ONPREM_HOST:-}"
TRAFFIC_MANAGER_NAME="${TRAFFIC_MANAGER_NAME:-$PREFIX-tm}"
TRAFFIC_MANAGER_DNS_NAME="${TRAFFIC_MANAGER_DNS_NAME:-$PREFIX}"
TRAFFIC_MANAGER_TTL="${TRAFFIC_MANAGER_TTL:-30}"
FAILOVER_HOST="${FAILOVER_HOST:-}"
AZURE_MONITOR_WORKSPACE="${AZURE_MONITOR_WORKSPACE:-$PREFIX-amw}"
METRICS_KEY_FILE="${METRICS_KEY_FILE:-}"
GRAFANA_RESOURCE_ID="${GRAFANA_RESOURCE_ID:-}"
ACTION_GROUP_ID="${ACTION_GROUP_ID:-}"
RUNBOOK_BASE_URL="${RUNBOOK_BASE_URL:-}"

# Fixed names the manifests rely on.
K8S_NAMESPACE=bridgehead
FORWARDER_SA=bridgehead-forwarder            # deploy/kustomize/base/serviceaccounts.yaml
FLUX_CONFIG=bridgehead-gitops                # the Azure fluxConfiguration resource
FLUX_CONFIG_NAMESPACE="cluster-config"        # where the extension keeps its own source
ACR_TOKEN=onprem-pull                        # pull-only ACR token for the on-prem cluster
ACR_LOGIN_SERVER="$ACR_NAME.azurecr.io"
AMA_METRICS_EXTENSION=azuremonitor-metrics   # the Arc cluster's metrics extension
AZMON_KUSTOMIZATION=azure-monitor            # the Flux configuration's Kustomization of the PodMonitors
# The alerts as an ARM template, generated by deploy/monitoring (go generate ./deploy/monitoring).
RULES_TEMPLATE="$(cd "$here/../monitoring" && pwd)/azure-prometheus-rules.json"

if [ "$AZURE_MONITOR" = 1 ] && [ "$TEARDOWN" != 1 ] && [ -z "$METRICS_KEY_FILE" ]; then
  die "--azure-monitor needs METRICS_KEY_FILE: the key of a principal of the auth file, which the scrapes present (/metrics asks for one; docs/deploy.md)"
fi
if [ "$STAMP" != cloud ] && [ -z "$ARC_CLUSTER_NAME" ]; then
  die "ARC_CLUSTER_NAME is required for --stamp $STAMP (the Arc-connected on-prem cluster); use --stamp cloud to skip it"
fi
# az_flux_config CLUSTER_TYPE CLUSTER RG STAMP: the Flux extension and a configuration that
# syncs deploy/flux/clusters/STAMP (the GitRepository + Kustomization of that stamp).
az_flux_config() {
  local type="$1" cluster="$2" rg="$3" stamp="$4" auth=()
  [ -z "$GIT_SECRET" ] || auth=(--local-auth-ref "$GIT_SECRET")
  step "Flux extension on $cluster ($type)"
  exists az k8s-extension show --cluster-type "$type" --cluster-name "$cluster" --resource-group "$rg" --name flux ||
    run az k8s-extension create --cluster-type "$type" --cluster-name "$cluster" --resource-group "$rg" \
      --name flux --extension-type microsoft.flux --scope cluster
  step "Flux configuration $FLUX_CONFIG on $cluster: ./deploy/flux/clusters/$stamp"
  # Existing configurations are left as they are: change one with az k8s-configuration flux update.
  exists az k8s-configuration flux show --cluster-type "$type" --cluster-name "$cluster" --resource-group "$rg" --name "$FLUX_CONFIG" ||
    run az k8s-configuration flux create --cluster-type "$type" --cluster-name "$cluster" --resource-group "$rg" \
      --name "$FLUX_CONFIG" --namespace "$FLUX_CONFIG_NAMESPACE" --scope cluster \
      --url "$GIT_URL" --branch "$GIT_BRANCH" --interval 5m "${auth[@]}" \
      --kustomization name=stamp path="./deploy/flux/clusters/$stamp" prune=true
}

teardown() {
  if [ "$YES" != 1 ] && [ "$DRY_RUN" != 1 ]; then
    die "--teardown deletes resource group $RESOURCE_GROUP, including the cloud spool share (undelivered messages) and the Event Hubs namespace: add --yes"
  fi
  need_cmd az
  if [ -n "$ARC_CLUSTER_NAME" ]; then
    step "Remove the Flux configuration from the on-prem cluster $ARC_CLUSTER_NAME (the cluster stays)"
    run az k8s-configuration flux delete --cluster-type connectedClusters --cluster-name "$ARC_CLUSTER_NAME" \
      --resource-group "$ARC_RESOURCE_GROUP" --name "$FLUX_CONFIG" --yes
    run az acr token delete --name "$ACR_TOKEN" --registry "$ACR_NAME" --yes
    if [ "$AZURE_MONITOR" = 1 ]; then
      # Its workspace goes with the resource group; the agent would keep trying to send there.
      run az k8s-extension delete --cluster-type connectedClusters --cluster-name "$ARC_CLUSTER_NAME" \
        --resource-group "$ARC_RESOURCE_GROUP" --name "$AMA_METRICS_EXTENSION" --yes
    fi
  fi
  step "Delete resource group $RESOURCE_GROUP and everything in it"
  if [ "$ARC_RESOURCE_GROUP" = "$RESOURCE_GROUP" ] && [ -n "$ARC_CLUSTER_NAME" ]; then
    log "note: the Arc cluster resource $ARC_CLUSTER_NAME is in $RESOURCE_GROUP and is deleted with it (the on-prem cluster keeps running; reconnect it with az connectedk8s connect)"
  fi
  run az group delete --name "$RESOURCE_GROUP" --yes --no-wait
}

shared() {
  need_cmd az kubectl
  step "CLI extensions and resource providers"
  run az extension add --name k8s-configuration --upgrade --yes
  run az extension add --name k8s-extension --upgrade --yes
  run az extension add --name connectedk8s --upgrade --yes
  local ns
  for ns in Microsoft.ContainerService Microsoft.ContainerRegistry Microsoft.EventHub Microsoft.Storage \
    Microsoft.ManagedIdentity Microsoft.Kubernetes Microsoft.KubernetesConfiguration Microsoft.ExtendedLocation \
    Microsoft.Network; do
    run az provider register --namespace "$ns" --wait
  done
  if [ "$AZURE_MONITOR" = 1 ]; then
    # The workspace, rule groups, and the agent's data collection rules and endpoints.
    for ns in Microsoft.Monitor Microsoft.AlertsManagement Microsoft.Insights Microsoft.Dashboard; do
      run az provider register --namespace "$ns" --wait
    done
  fi

  step "Resource group $RESOURCE_GROUP in $LOCATION"
  exists az group show --name "$RESOURCE_GROUP" ||
    run az group create --name "$RESOURCE_GROUP" --location "$LOCATION" --tags app=bridgehead

  step "Container registry $ACR_NAME (admin user off: AKS pulls by attachment, on-prem by a pull-only token)"
  exists az acr show --name "$ACR_NAME" --resource-group "$RESOURCE_GROUP" ||
    run az acr create --name "$ACR_NAME" --resource-group "$RESOURCE_GROUP" --location "$LOCATION" \
      --sku Standard --admin-enabled false

  step "Event Hubs namespace $EVENTHUBS_NAMESPACE (Standard) and hub $EVENTHUB_NAME"
  exists az eventhubs namespace show --name "$EVENTHUBS_NAMESPACE" --resource-group "$RESOURCE_GROUP" ||
    run az eventhubs namespace create --name "$EVENTHUBS_NAMESPACE" --resource-group "$RESOURCE_GROUP" \
      --location "$LOCATION" --sku Standard --capacity 1 --enable-auto-inflate true \
      --maximum-throughput-units 4
  exists az eventhubs eventhub show --name "$EVENTHUB_NAME" --namespace-name "$EVENTHUBS_NAMESPACE" --resource-group "$RESOURCE_GROUP" ||
    run az eventhubs eventhub create --name "$EVENTHUB_NAME" --namespace-name "$EVENTHUBS_NAMESPACE" \
      --resource-group "$RESOURCE_GROUP" --partition-count "$EVENTHUB_PARTITIONS"
  step "Send-only policy $EVENTHUB_SEND_RULE on the hub (the on-prem forwarder's connection string)"
  exists az eventhubs eventhub authorization-rule show --name "$EVENTHUB_SEND_RULE" --eventhub-name "$EVENTHUB_NAME" \
    --namespace-name "$EVENTHUBS_NAMESPACE" --resource-group "$RESOURCE_GROUP" ||
    run az eventhubs eventhub authorization-rule create --name "$EVENTHUB_SEND_RULE" --eventhub-name "$EVENTHUB_NAME" \
      --namespace-name "$EVENTHUBS_NAMESPACE" --resource-group "$RESOURCE_GROUP" --rights Send

  if [ "$AZURE_MONITOR" = 1 ]; then
    step "Azure Monitor workspace $AZURE_MONITOR_WORKSPACE: both stamps' Prometheus metrics"
    # az resource rather than az monitor account, which azure-cli gained after 2.45: the same
    # Microsoft.Monitor/accounts resource.
    exists az resource show --resource-type Microsoft.Monitor/accounts --resource-group "$RESOURCE_GROUP" --name "$AZURE_MONITOR_WORKSPACE" ||
      run az resource create --resource-type Microsoft.Monitor/accounts --resource-group "$RESOURCE_GROUP" \
        --name "$AZURE_MONITOR_WORKSPACE" --location "$LOCATION" --properties '{}'
    AMW_ID="$(query __AZURE_MONITOR_WORKSPACE_ID__ az resource show --resource-type Microsoft.Monitor/accounts \
      --resource-group "$RESOURCE_GROUP" --name "$AZURE_MONITOR_WORKSPACE" --query id --output tsv)"
  fi
}

# azure_monitor CLUSTER_TYPE CLUSTER RG STAMP: managed Prometheus on the cluster (the AKS add-on,
# or the Arc extension) and the alerts as the rule group bridgehead-STAMP, scoped to the workspace
# and the cluster.
azure_monitor() {
  local type="$1" cluster="$2" rg="$3" stamp="$4" cluster_id enabled settings
  step "Azure Monitor managed Prometheus on $cluster ($type), into $AZURE_MONITOR_WORKSPACE"
  if [ "$type" = managedClusters ]; then
    enabled="$(query "" az aks show --name "$cluster" --resource-group "$rg" --query azureMonitorProfile.metrics.enabled --output tsv)"
    local grafana=()
    [ -z "$GRAFANA_RESOURCE_ID" ] || grafana=(--grafana-resource-id "$GRAFANA_RESOURCE_ID")
    # An enabled add-on is left as it is (its workspace cannot be changed in place).
    [ "$enabled" = true ] ||
      run az aks update --name "$cluster" --resource-group "$rg" --enable-azure-monitor-metrics \
        --azure-monitor-workspace-resource-id "$AMW_ID" "${grafana[@]}"
    cluster_id="$(query __AKS_ID__ az aks show --name "$cluster" --resource-group "$rg" --query id --output tsv)"
  else
    settings=("azure-monitor-workspace-resource-id=$AMW_ID")
    [ -z "$GRAFANA_RESOURCE_ID" ] || settings+=("grafana-resource-id=$GRAFANA_RESOURCE_ID")
    exists az k8s-extension show --cluster-type "$type" --cluster-name "$cluster" --resource-group "$rg" --name "$AMA_METRICS_EXTENSION" ||
      run az k8s-extension create --cluster-type "$type" --cluster-name "$cluster" --resource-group "$rg" \
        --name "$AMA_METRICS_EXTENSION" --extension-type Microsoft.AzureMonitor.Containers.Metrics \
        --configuration-settings "${settings[@]}"
    cluster_id="$(query __ARC_CLUSTER_ID__ az connectedk8s show --name "$cluster" --resource-group "$rg" --query id --output tsv)"
  fi

  step "Alerts of the $stamp stamp: Prometheus rule group bridgehead-$stamp (deploy/monitoring/azure-prometheus-rules.json)"
  # A deployment is declarative: running it again brings the rule group to the committed rules.
  local params=(azureMonitorWorkspaceId="$AMW_ID" clusterResourceId="$cluster_id" stamp="$stamp" location="$LOCATION")
  [ -z "$ACTION_GROUP_ID" ] || params+=(actionGroupId="$ACTION_GROUP_ID")
  [ -z "$RUNBOOK_BASE_URL" ] || params+=(runbookBaseUrl="$RUNBOOK_BASE_URL")
  run az deployment group create --resource-group "$RESOURCE_GROUP" --name "bridgehead-prometheus-rules-$stamp" \
    --template-file "$RULES_TEMPLATE" --parameters "${params[@]}"
}

# azure_monitor_scrape CLUSTER_TYPE CLUSTER RG STAMP: the Flux configuration's Kustomization that
# applies the stamp's PodMonitors (deploy/kustomize/azure-monitor/STAMP). Run once the scrape
# key's Secret exists (stamp-config.sh --metrics-key-file): ama-metrics does not pick up a Secret
# created after the PodMonitor that names it.
azure_monitor_scrape() {
  local type="$1" cluster="$2" rg="$3" stamp="$4"
  step "PodMonitors of the $stamp stamp: Kustomization $AZMON_KUSTOMIZATION of $FLUX_CONFIG (./deploy/kustomize/azure-monitor/$stamp)"
  exists az k8s-configuration flux kustomization show --cluster-type "$type" --cluster-name "$cluster" --resource-group "$rg" \
    --name "$FLUX_CONFIG" --kustomization-name "$AZMON_KUSTOMIZATION" ||
    run az k8s-configuration flux kustomization create --cluster-type "$type" --cluster-name "$cluster" --resource-group "$rg" \
      --name "$FLUX_CONFIG" --kustomization-name "$AZMON_KUSTOMIZATION" --path "./deploy/kustomize/azure-monitor/$stamp" \
      --prune true --depends-on stamp
}

cloud() {
  step "Storage account $STORAGE_ACCOUNT (premium files) and share $FILE_SHARE: the cloud spool"
  exists az storage account show --name "$STORAGE_ACCOUNT" --resource-group "$RESOURCE_GROUP" ||
    run az storage account create --name "$STORAGE_ACCOUNT" --resource-group "$RESOURCE_GROUP" --location "$LOCATION" \
      --kind FileStorage --sku "$STORAGE_SKU" --https-only true --min-tls-version TLS1_2 \
      --allow-blob-public-access false --tags app=bridgehead
  exists az storage share-rm show --name "$FILE_SHARE" --storage-account "$STORAGE_ACCOUNT" --resource-group "$RESOURCE_GROUP" ||
    run az storage share-rm create --name "$FILE_SHARE" --storage-account "$STORAGE_ACCOUNT" \
      --resource-group "$RESOURCE_GROUP" --quota "$FILE_SHARE_QUOTA_GIB" --enabled-protocols SMB

  step "AKS cluster $AKS_NAME: ACR attached, OIDC issuer + workload identity, network policy, App Gateway ingress"
  exists az aks show --name "$AKS_NAME" --resource-group "$RESOURCE_GROUP" ||
    run az aks create --name "$AKS_NAME" --resource-group "$RESOURCE_GROUP" --location "$LOCATION" \
      --node-count "$AKS_NODE_COUNT" --node-vm-size "$AKS_NODE_VM_SIZE" --zones 1 2 3 \
      --network-plugin azure --network-policy azure --enable-managed-identity \
      --enable-oidc-issuer --enable-workload-identity --attach-acr "$ACR_NAME" \
      --enable-addons ingress-appgw --appgw-name "$APPGW_NAME" --appgw-subnet-cidr "$APPGW_SUBNET_CIDR" \
      --generate-ssh-keys

  step "Let the AKS cluster identity manage the spool share (the Azure Files CSI driver reads the account key)"
  local aks_principal storage_id
  aks_principal="$(query __AKS_PRINCIPAL_ID__ az aks show --name "$AKS_NAME" --resource-group "$RESOURCE_GROUP" --query identity.principalId --output tsv)"
  storage_id="$(query __STORAGE_ACCOUNT_ID__ az storage account show --name "$STORAGE_ACCOUNT" --resource-group "$RESOURCE_GROUP" --query id --output tsv)"
  assign_role "$aks_principal" "Storage Account Contributor" "$storage_id"

  step "Workload identity $IDENTITY_NAME for the forwarder: federated with $K8S_NAMESPACE/$FORWARDER_SA, Event Hubs Data Sender on the hub"
  exists az identity show --name "$IDENTITY_NAME" --resource-group "$RESOURCE_GROUP" ||
    run az identity create --name "$IDENTITY_NAME" --resource-group "$RESOURCE_GROUP" --location "$LOCATION"
  local issuer client_id principal hub_id
  issuer="$(query __AKS_OIDC_ISSUER__ az aks show --name "$AKS_NAME" --resource-group "$RESOURCE_GROUP" --query oidcIssuerProfile.issuerUrl --output tsv)"
  client_id="$(query __IDENTITY_CLIENT_ID__ az identity show --name "$IDENTITY_NAME" --resource-group "$RESOURCE_GROUP" --query clientId --output tsv)"
  principal="$(query __IDENTITY_PRINCIPAL_ID__ az identity show --name "$IDENTITY_NAME" --resource-group "$RESOURCE_GROUP" --query principalId --output tsv)"
  exists az identity federated-credential show --name "$FORWARDER_SA" --identity-name "$IDENTITY_NAME" --resource-group "$RESOURCE_GROUP" ||
    run az identity federated-credential create --name "$FORWARDER_SA" --identity-name "$IDENTITY_NAME" \
      --resource-group "$RESOURCE_GROUP" --issuer "$issuer" \
      --subject "system:serviceaccount:$K8S_NAMESPACE:$FORWARDER_SA" --audiences api://AzureADTokenExchange
  hub_id="$(query __EVENTHUB_ID__ az eventhubs eventhub show --name "$EVENTHUB_NAME" --namespace-name "$EVENTHUBS_NAMESPACE" --resource-group "$RESOURCE_GROUP" --query id --output tsv)"
  assign_role "$principal" "Azure Event Hubs Data Sender" "$hub_id"

  az_flux_config managedClusters "$AKS_NAME" "$RESOURCE_GROUP" cloud

  step "Cluster values and secrets of the cloud stamp"
  run az aks get-credentials --name "$AKS_NAME" --resource-group "$RESOURCE_GROUP" --context "$AKS_NAME" --overwrite-existing
  local args=(--stamp cloud --context "$AKS_NAME" --acr-login-server "$ACR_LOGIN_SERVER"
    --eventhubs-namespace "$EVENTHUBS_NAMESPACE" --eventhub-name "$EVENTHUB_NAME"
    --resource-group "$RESOURCE_GROUP" --storage-account "$STORAGE_ACCOUNT" --file-share "$FILE_SHARE" --storage-sku "$STORAGE_SKU"
    --client-id "$client_id" --api-host "$API_HOST" --failover-host "$FAILOVER_HOST")
  [ -z "$AUTH_FILE" ] || args+=(--auth-file "$AUTH_FILE")
  [ -z "$INGRESS_TLS_CERT_FILE" ] || args+=(--tls-cert-file "$INGRESS_TLS_CERT_FILE" --tls-key-file "$INGRESS_TLS_KEY_FILE")
  [ "$AZURE_MONITOR" != 1 ] || args+=(--metrics-key-file "$METRICS_KEY_FILE")
  "$here/../stamp-config.sh" "${args[@]}"

  if [ "$AZURE_MONITOR" = 1 ]; then
    azure_monitor managedClusters "$AKS_NAME" "$RESOURCE_GROUP" cloud
    azure_monitor_scrape managedClusters "$AKS_NAME" "$RESOURCE_GROUP" cloud
  fi
}

onprem() {
  step "Arc-connected on-prem cluster $ARC_CLUSTER_NAME (connected by the AKS hybrid guide: az connectedk8s connect)"
  exists az connectedk8s show --name "$ARC_CLUSTER_NAME" --resource-group "$ARC_RESOURCE_GROUP" ||
    [ "$DRY_RUN" = 1 ] ||
    die "Arc cluster $ARC_CLUSTER_NAME not found in $ARC_RESOURCE_GROUP: connect it first (docs/deploy.md step 2)"

  az_flux_config connectedClusters "$ARC_CLUSTER_NAME" "$ARC_RESOURCE_GROUP" onprem

  step "Pull-only ACR token $ACR_TOKEN for the on-prem cluster"
  exists az acr token show --name "$ACR_TOKEN" --registry "$ACR_NAME" ||
    run az acr token create --name "$ACR_TOKEN" --registry "$ACR_NAME" --scope-map _repositories_pull --no-passwords

  [ "$AZURE_MONITOR" != 1 ] || azure_monitor connectedClusters "$ARC_CLUSTER_NAME" "$ARC_RESOURCE_GROUP" onprem

  if [ -z "$ONPREM_CONTEXT" ]; then
    step "ONPREM_CONTEXT is not set: run these against the on-prem cluster (docs/deploy.md step 4)"
    local later=(
      "az acr token credential generate --name $ACR_TOKEN --registry $ACR_NAME --password1 --expiration-in-days 365 --query 'passwords[0].value' --output tsv | deploy/onprem/registry-secret.sh --server $ACR_LOGIN_SERVER --username $ACR_TOKEN"
      "az eventhubs eventhub authorization-rule keys list --name $EVENTHUB_SEND_RULE --eventhub-name $EVENTHUB_NAME --namespace-name $EVENTHUBS_NAMESPACE --resource-group $RESOURCE_GROUP --query primaryConnectionString --output tsv | deploy/stamp-config.sh --stamp onprem --acr-login-server $ACR_LOGIN_SERVER --eventhub-name $EVENTHUB_NAME --nfs-server NFS_SERVER --nfs-path $NFS_PATH --eventhubs-connection-string-file - --auth-file AUTH_FILE --tls-cert-file CERT --tls-key-file KEY")
    if [ "$AZURE_MONITOR" = 1 ]; then
      # The scrape key's Secret first, then the PodMonitors (see azure_monitor_scrape).
      later[1]+=" --metrics-key-file METRICS_KEY_FILE"
      later+=("az k8s-configuration flux kustomization create --cluster-type connectedClusters --cluster-name $ARC_CLUSTER_NAME --resource-group $ARC_RESOURCE_GROUP --name $FLUX_CONFIG --kustomization-name $AZMON_KUSTOMIZATION --path ./deploy/kustomize/azure-monitor/onprem --prune true --depends-on stamp")
    fi
    printf '%s\n' "${later[@]}" | sed 's/^/#   /' >&3
    return 0
  fi
  [ -n "$NFS_SERVER" ] || [ "$DRY_RUN" = 1 ] || die "NFS_SERVER is required with ONPREM_CONTEXT"

  step "Pull secret and cluster values of the on-prem stamp (context $ONPREM_CONTEXT)"
  if [ "$DRY_RUN" = 1 ]; then
    show_cmd az acr token credential generate --name "$ACR_TOKEN" --registry "$ACR_NAME" --password1 \
      --expiration-in-days 365 --query 'passwords[0].value' --output tsv
    "$here/../onprem/registry-secret.sh" --dry-run --context "$ONPREM_CONTEXT" --server "$ACR_LOGIN_SERVER" --username "$ACR_TOKEN" </dev/null
  else
    az acr token credential generate --name "$ACR_TOKEN" --registry "$ACR_NAME" --password1 \
      --expiration-in-days 365 --query 'passwords[0].value' --output tsv |
      "$here/../onprem/registry-secret.sh" --context "$ONPREM_CONTEXT" --server "$ACR_LOGIN_SERVER" --username "$ACR_TOKEN"
  fi
  local args=(--stamp onprem --context "$ONPREM_CONTEXT" --acr-login-server "$ACR_LOGIN_SERVER"
    --eventhub-name "$EVENTHUB_NAME" --nfs-server "${NFS_SERVER:-__NFS_SERVER__}" --nfs-path "$NFS_PATH"
    --eventhubs-connection-string-file -)
  [ -z "$AUTH_FILE" ] || args+=(--auth-file "$AUTH_FILE")
  [ -z "$TLS_CERT_FILE" ] || args+=(--tls-cert-file "$TLS_CERT_FILE" --tls-key-file "$TLS_KEY_FILE")
  [ "$AZURE_MONITOR" != 1 ] || args+=(--metrics-key-file "$METRICS_KEY_FILE")
  if [ "$DRY_RUN" = 1 ]; then
    show_cmd az eventhubs eventhub authorization-rule keys list --name "$EVENTHUB_SEND_RULE" --eventhub-name "$EVENTHUB_NAME" \
      --namespace-name "$EVENTHUBS_NAMESPACE" --resource-group "$RESOURCE_GROUP" --query primaryConnectionString --output tsv
    "$here/../stamp-config.sh" "${args[@]}" </dev/null
  else
    az eventhubs eventhub authorization-rule keys list --name "$EVENTHUB_SEND_RULE" --eventhub-name "$EVENTHUB_NAME" \
      --namespace-name "$EVENTHUBS_NAMESPACE" --resource-group "$RESOURCE_GROUP" --query primaryConnectionString --output tsv |
      "$here/../stamp-config.sh" "${args[@]}"
  fi

  [ "$AZURE_MONITOR" != 1 ] || azure_monitor_scrape connectedClusters "$ARC_CLUSTER_NAME" "$ARC_RESOURCE_GROUP" onprem
}

# traffic_manager creates the DNS failover for clients that know one host name only: a profile
# with priority routing whose probes ask each stamp's /readyz over HTTPS (on 503, a refused
# connection or a timeout the stamp is degraded), an external endpoint for on-prem (priority 1)
# and one for the cloud stamp's ingress (priority 2). Fast probing (every 10 s, 5 s timeout) and
# 2 tolerated failures: Traffic Manager stops answering with a dead stamp 20-35 s after it died,
# and resolvers follow within the TTL. docs/failover.md explains the trade-offs.
traffic_manager() {
  if [ -z "$ONPREM_HOST" ]; then
    step "ONPREM_HOST is not set: no Traffic Manager profile (clients fail over themselves; docs/failover.md)"
    return 0
  fi
  step "Traffic Manager profile $TRAFFIC_MANAGER_NAME: $TRAFFIC_MANAGER_DNS_NAME.trafficmanager.net answers $ONPREM_HOST, or $API_HOST while on-prem is not ready"
  # An existing profile is left as it is: change its settings with az network traffic-manager profile update.
  exists az network traffic-manager profile show --name "$TRAFFIC_MANAGER_NAME" --resource-group "$RESOURCE_GROUP" ||
    run az network traffic-manager profile create --name "$TRAFFIC_MANAGER_NAME" --resource-group "$RESOURCE_GROUP" \
      --routing-method Priority --unique-dns-name "$TRAFFIC_MANAGER_DNS_NAME" --ttl "$TRAFFIC_MANAGER_TTL" \
      --protocol HTTPS --port 443 --path /readyz --interval 10 --timeout 5 --max-failures 2 \
      --tags app=bridgehead
  local name target priority
  for name in onprem cloud; do
    target="$ONPREM_HOST" priority=1
    [ "$name" = onprem ] || target="$API_HOST" priority=2
    exists az network traffic-manager endpoint show --name "$name" --profile-name "$TRAFFIC_MANAGER_NAME" \
      --resource-group "$RESOURCE_GROUP" --type externalEndpoints ||
      run az network traffic-manager endpoint create --name "$name" --profile-name "$TRAFFIC_MANAGER_NAME" \
        --resource-group "$RESOURCE_GROUP" --type externalEndpoints --target "$target" --priority "$priority" \
        --endpoint-status Enabled
  done
}

# assign_role PRINCIPAL ROLE SCOPE grants ROLE unless it is already granted.
assign_role() {
  local principal="$1" role="$2" scope="$3" existing
  existing="$(query "" az role assignment list --assignee "$principal" --role "$role" --scope "$scope" --query '[0].id' --output tsv)"
  [ -n "$existing" ] ||
    run az role assignment create --assignee-object-id "$principal" --assignee-principal-type ServicePrincipal \
      --role "$role" --scope "$scope"
}

if [ "$TEARDOWN" = 1 ]; then
  teardown
  exit 0
fi
shared
case "$STAMP" in
  cloud) cloud ;;
  onprem) onprem ;;
  all)
    cloud
    onprem
    ;;
esac
traffic_manager
step "Done. Flux now syncs deploy/flux/clusters/<stamp>; watch with: kubectl get kustomizations --all-namespaces"
