# shellcheck shell=bash
# Shared by the deploy scripts (sourced, not run): logging and the --dry-run aware runners.
# With DRY_RUN=1 every command that would change something, and every read-only check, is
# printed (shell-quoted, one per line, to the script's standard output) instead of run.

DRY_RUN="${DRY_RUN:-0}"
# fd 3 is the script's real standard output, so that commands run inside $(...) still print.
exec 3>&1

log() { printf '%s\n' "$*" >&2; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

# step announces a step: a comment line in the dry-run output, a log line otherwise.
step() {
  if [ "$DRY_RUN" = 1 ]; then printf '\n# %s\n' "$*" >&3; else log "==> $*"; fi
}

# show_cmd prints a command the way a shell would read it back.
show_cmd() {
  local out
  printf -v out '%q ' "$@"
  printf '%s\n' "${out% }" >&3
}

# run runs a command that changes something; with --dry-run it only prints it.
run() {
  if [ "$DRY_RUN" = 1 ]; then show_cmd "$@"; else "$@"; fi
}

# exists runs a read-only check and succeeds when the thing exists. With --dry-run it prints
# the check and answers "no", so that the command creating the thing is printed as well.
exists() {
  if [ "$DRY_RUN" = 1 ]; then
    show_cmd "$@"
    return 1
  fi
  "$@" >/dev/null 2>&1
}

# query PLACEHOLDER CMD... runs a read-only command and prints its output; with --dry-run it
# prints the command and outputs PLACEHOLDER instead.
query() {
  local placeholder="$1"
  shift
  if [ "$DRY_RUN" = 1 ]; then
    show_cmd "$@"
    printf '%s\n' "$placeholder"
  else
    "$@"
  fi
}

# need_cmd fails unless every named command is installed (not checked in a dry run).
need_cmd() {
  [ "$DRY_RUN" = 1 ] && return 0
  local c
  for c in "$@"; do
    command -v "$c" >/dev/null 2>&1 || die "$c is not installed"
  done
}

# apply_stdin KUBECTL-ARGS... -- CREATE-ARGS... renders an object with
# `kubectl create CREATE-ARGS --dry-run=client --output=yaml` and applies it (idempotent:
# create-or-update), both with KUBECTL-ARGS (e.g. --context). Standard input, if the create
# reads /dev/stdin, passes through, so that secrets never appear on a command line.
apply_stdin() {
  local kube=()
  while [ "$#" -gt 0 ] && [ "$1" != -- ]; do
    kube+=("$1")
    shift
  done
  [ "$#" -gt 0 ] || die "apply_stdin: missing --"
  shift
  if [ "$DRY_RUN" = 1 ]; then
    local a b
    printf -v a '%q ' kubectl "${kube[@]}" create "$@" --dry-run=client --output=yaml
    printf -v b '%q ' kubectl "${kube[@]}" apply --filename=-
    printf '%s| %s\n' "$a" "${b% }" >&3
    return 0
  fi
  kubectl "${kube[@]}" create "$@" --dry-run=client --output=yaml | kubectl "${kube[@]}" apply --filename=-
}
