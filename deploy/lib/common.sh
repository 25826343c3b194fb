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

# parse_args SWITCH_FN OPTION_FN ARGS... parses a script's arguments: --dry-run (sets DRY_RUN),
# -h/--help (prints the script's usage and exits), switches without a value (SWITCH_FN NAME
# succeeds for those it knows) and options with one (OPTION_FN NAME VALUE succeeds for those it
# knows). Anything else prints the usage and fails.
parse_args() {
  local switch_fn="$1" option_fn="$2" opt
  shift 2
  while [ "$#" -gt 0 ]; do
    opt="$1"
    case "$opt" in
      --dry-run) DRY_RUN=1 ;;
      -h | --help)
        usage
        exit 0
        ;;
      *)
        if ! "$switch_fn" "$opt"; then
          [ "$#" -ge 2 ] || die "$opt needs a value"
          "$option_fn" "$opt" "$2" || {
            usage >&2
            die "unknown argument: $opt"
          }
          shift
        fi
        ;;
    esac
    shift
  done
}

# no_switches is the SWITCH_FN of a script that has none besides --dry-run and --help.
no_switches() { return 1; }

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
