#!/usr/bin/env bash
# Sets up an Ubuntu 22.04 NFS server as the on-prem stamp's spool (the seed's "Deploy NFS
# Server" step), with what the seed says production needs and docs/spool.md requires:
#   - one export, limited to the cluster's subnet, NFSv4.1+ only (v2/v3 off: no rpcbind/mountd)
#   - `sync` (the server answers only once data and metadata are on stable storage: the spool's
#     durability rests on it), `root_squash`, `no_subtree_check`, `sec=sys`
#   - the export owned by the image's nonroot user (UID/GID 65532), mode 0770
#   - a firewall (ufw) that lets only the cluster's subnet reach NFS (TCP 2049) and keeps SSH
# Idempotent: run it again to change the subnet or to repair the settings. Run as root.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib/common.sh
. "$here/../lib/common.sh"

usage() {
  cat <<'EOF_USAGE'
Usage: sudo deploy/nfs/setup-nfs-server.sh --client-cidr CIDR [options] [--dry-run]

  --client-cidr CIDR   the on-prem cluster's node subnet, e.g. 192.168.0.0/24 (required)
  --export-dir DIR     [/srv/bridgehead/spool]
  --uid UID --gid GID  owner of the export [65532 65532] (the image's nonroot user)
  --ssh-cidr CIDR      who may reach SSH once the firewall is on [any]
  --no-firewall        leave ufw alone (when another firewall guards the host)
  --dry-run            print every command instead of running it
EOF_USAGE
}

CLIENT_CIDR=""
EXPORT_DIR=/srv/bridgehead/spool
OWNER_UID=65532
OWNER_GID=65532
SSH_CIDR=any
FIREWALL=1
# switch NAME sets the switch NAME.
switch() {
  case "$1" in
    --no-firewall) FIREWALL=0 ;;
    *) return 1 ;;
  esac
}
# option NAME VALUE sets the option NAME.
option() {
  case "$1" in
    --client-cidr) CLIENT_CIDR="$2" ;;
    --export-dir) EXPORT_DIR="$2" ;;
    --uid) OWNER_UID="$2" ;;
    --gid) OWNER_GID="$2" ;;
    --ssh-cidr) SSH_CIDR="$2" ;;
    *) return 1 ;;
  esac
}
parse_args switch option "$@"

[ -n "$CLIENT_CIDR" ] || die "--client-cidr is required (never export to the world)"
[[ "$CLIENT_CIDR" =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}/([89]|[12][0-9]|3[0-2])$ ]] ||
  die "--client-cidr $CLIENT_CIDR: want an IPv4 subnet such as 192.168.0.0/24 (prefix /8 or longer)"
case "$EXPORT_DIR" in /*) ;; *) die "--export-dir must be absolute" ;; esac
[[ "$OWNER_UID" =~ ^[0-9]+$ && "$OWNER_GID" =~ ^[0-9]+$ ]] || die "--uid and --gid must be numbers"
if [ "$DRY_RUN" != 1 ] && [ "$(id -u)" -ne 0 ]; then die "run as root (sudo)"; fi

EXPORTS_FILE=/etc/exports.d/bridgehead.exports
EXPORT_LINE="\"$EXPORT_DIR\" $CLIENT_CIDR(rw,sync,root_squash,no_subtree_check,sec=sys)"

# write_file PATH CONTENT writes a file only when its content differs.
write_file() {
  local path="$1" content="$2"
  if [ "$DRY_RUN" = 1 ]; then
    printf 'cat > %q <<EOF_FILE\n%s\nEOF_FILE\n' "$path" "$content" >&3
    return 0
  fi
  if [ -f "$path" ] && [ "$(cat "$path")" = "$content" ]; then return 0; fi
  printf '%s\n' "$content" >"$path.tmp"
  mv "$path.tmp" "$path"
}

step "Packages"
run apt-get update
run env DEBIAN_FRONTEND=noninteractive apt-get install -y nfs-kernel-server ufw

step "Export directory $EXPORT_DIR owned by $OWNER_UID:$OWNER_GID, mode 0770"
run install -d -m 0770 -o "$OWNER_UID" -g "$OWNER_GID" "$EXPORT_DIR"
run chown "$OWNER_UID:$OWNER_GID" "$EXPORT_DIR"
run chmod 0770 "$EXPORT_DIR"

step "NFS versions: 4.1 and 4.2 only"
run nfsconf --set nfsd vers3 n
run nfsconf --set nfsd vers4.0 n
run nfsconf --set nfsd vers4.1 y
run nfsconf --set nfsd vers4.2 y

step "Export $EXPORT_DIR to $CLIENT_CIDR only ($EXPORTS_FILE)"
run install -d -m 0755 /etc/exports.d
write_file "$EXPORTS_FILE" "# Managed by deploy/nfs/setup-nfs-server.sh: the Bridgehead spool.
$EXPORT_LINE"
run systemctl enable --now nfs-server
run systemctl restart nfs-server
run exportfs -ra

if [ "$FIREWALL" = 1 ]; then
  step "Firewall: SSH from $SSH_CIDR, NFS (TCP 2049) from $CLIENT_CIDR only"
  run ufw default deny incoming
  run ufw default allow outgoing
  if [ "$SSH_CIDR" = any ]; then
    run ufw allow OpenSSH
  else
    run ufw allow from "$SSH_CIDR" to any port 22 proto tcp
  fi
  run ufw allow from "$CLIENT_CIDR" to any port 2049 proto tcp
  run ufw --force enable
fi

step "Check"
run exportfs -v
log "mount from a node with: mount -t nfs -o hard,nfsvers=4.1,actimeo=3,lookupcache=positive,nconnect=4 <this-host>:$EXPORT_DIR /mnt"
