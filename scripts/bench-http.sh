#!/usr/bin/env bash
# The API over HTTP, loaded by wrk: four server processes side by side in one run, each on its own
# port, each at every connection count of CONNS:
#   new       bridgehead serve --role api, built from the work tree, on a fresh spool
#   old       the same, built from the commit BASELINE
#   nop       the same ingest handler with nothing persisted (test/benchhttp/nop)
#   fsyncref  net/http appending each body to one file with an fdatasync per request, under a
#             mutex: the fsync floor a lone client cannot beat (test/benchhttp/fsyncref)
#
# Rounds alternate: each round starts the four servers (spool servers on a fresh spool, since
# nothing drains an API-only spool and its once-a-second capacity scan lists every segment; the
# spools of every round stay until the end, so that no round pays for another's deletions on ext4,
# see docs/performance.md), then runs every (server, conns) cell once: for each connection count,
# each server in turn, the order rotated round by round so that no server always goes first. A
# cell is a warm-up of WARMUP then DURATION of wrk with the same connections.
#
# Output: one line per cell in OUT (round server conns req/s p50-ms p99-ms non2xx sockerr, after
# # lines saying what ran where), wrk's own reports in OUT's .wrk.out beside it, and on stdout the
# markdown summary of test/benchhttp/summary (medians over rounds; the goals' ratios round by
# round, then their medians). Exits 1 after the summary if any request failed.
#
# Parameters (environment):
#   ROUNDS (5), DURATION (10s), WARMUP (1s), CONNS ("1 64 256"), BASELINE (500e2f2),
#   SERVERS ("new old nop fsyncref": a subset runs only those), OUT (bench-http.out),
#   SPOOL_DIR_PARENT (default: a temporary directory beside the repository, on its file system),
#   SETTLE (0: seconds to wait before the first round, for the file system to recover from the
#   deletions of an earlier benchmark), GO (go), BENCH_PRIORITY (a Priority header on every
#   request, test/benchhttp/post.lua; none by default).
#
#   ROUNDS=1 DURATION=2s CONNS="1 64" scripts/bench-http.sh
set -euo pipefail

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-1s}
CONNS=${CONNS:-1 64 256}
BASELINE=${BASELINE:-500e2f2}
SERVERS=${SERVERS:-new old nop fsyncref}
OUT=${OUT:-bench-http.out}
SETTLE=${SETTLE:-0}
GO=${GO:-go}

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
lua=$repo/test/benchhttp/post.lua
body='{"senderId":"bench","value":"x"}'
wrklog=${OUT%.out}.wrk.out

die() { echo "bench-http: $*" >&2; exit 1; }
say() { echo "bench-http: $*" >&2; }

[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS=$ROUNDS: want a positive integer"
[[ $SETTLE =~ ^[0-9]+$ ]] || die "SETTLE=$SETTLE: want seconds"
read -r -a conns <<<"$CONNS"
read -r -a servers <<<"$SERVERS"
[ "${#conns[@]}" -gt 0 ] || die "CONNS is empty"
for c in "${conns[@]}"; do [[ $c =~ ^[1-9][0-9]*$ ]] || die "CONNS: $c is not a connection count"; done
for s in "${servers[@]}"; do
  case $s in new | old | nop | fsyncref) ;; *) die "SERVERS: unknown server $s (want new, old, nop, fsyncref)" ;; esac
done

if ! command -v wrk >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then sudo=sudo; else sudo=; fi
  say "installing wrk"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq wrk
fi

tmp=$(mktemp -d)
if [ -n "${SPOOL_DIR_PARENT:-}" ]; then
  mkdir -p "$SPOOL_DIR_PARENT"
  data=$(mktemp -d "$SPOOL_DIR_PARENT/bench-http.XXXXXX")
elif [ -w "$(dirname "$repo")" ]; then
  data=$(mktemp -d "$(dirname "$repo")/bench-http.XXXXXX")
else
  data=$(mktemp -d "$repo/bench-http.XXXXXX")
fi
declare -A pid=() url=()

stop() { # stop <server>: SIGTERM, then SIGKILL after 30 s
  local p=${pid[$1]:-}
  [ -n "$p" ] || return 0
  unset "pid[$1]"
  kill "$p" 2>/dev/null || return 0
  for _ in $(seq 300); do
    kill -0 "$p" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
}
cleanup() {
  for s in "${!pid[@]}"; do stop "$s"; done
  rm -rf "$tmp" "$data"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Everything is built before the first round: the work tree may change while this runs.
# Only the servers asked for: SERVERS="old nop fsyncref" runs while cmd/ does not build.
"$GO" build -trimpath -o "$tmp/summary" ./test/benchhttp/summary
for s in "${servers[@]}"; do
  case $s in
    new) say "building new from the work tree"; "$GO" build -trimpath -o "$tmp/new" ./cmd/bridgehead ;;
    nop | fsyncref) say "building $s"; "$GO" build -trimpath -o "$tmp/$s" "./test/benchhttp/$s" ;;
  esac
done
old=$(git rev-parse --verify --quiet "$BASELINE^{commit}") || die "BASELINE=$BASELINE is not a commit"
if [[ " ${servers[*]} " == *" old "* ]]; then
  say "building old from $BASELINE (git archive)"
  mkdir "$tmp/old-src"
  git archive "$old" | tar -x -C "$tmp/old-src"
  (cd "$tmp/old-src" && "$GO" build -trimpath -o "$tmp/old" ./cmd/bridgehead)
  rm -rf "$tmp/old-src"
fi

# start <server> <round>: runs it on a free port and waits until a POST answers 200.
start() {
  local s=$1 dir=$data/r$2-$1 log=$tmp/$1.r$2
  local cmd
  mkdir -p "$dir"
  case $s in
    new | old) cmd=("$tmp/$s" serve --role api --spool-dir "$dir/spool" --listen 127.0.0.1:0) ;;
    nop) cmd=("$tmp/nop" -listen 127.0.0.1:0) ;;
    fsyncref) cmd=("$tmp/fsyncref" -listen 127.0.0.1:0 -file "$dir/fsyncref.ndjson") ;;
  esac
  "${cmd[@]}" >"$log.stdout" 2>"$log.stderr" & # a simple command, so that $! is the server itself
  pid[$s]=$!
  local u="" code=""
  for _ in $(seq 300); do
    kill -0 "${pid[$s]}" 2>/dev/null || { cat "$log.stdout" "$log.stderr" >&2; die "$s exited at start"; }
    if [ -z "$u" ]; then
      u=$(sed -n 's|.*listening on *\(https\{0,1\}://[^ ]*\).*|\1|p' "$log.stdout" | head -n 1)
    fi
    if [ -n "$u" ]; then
      code=$(curl -s -o "$log.ready" -w '%{http_code}' -H 'Content-Type: application/json' \
        -d "$body" "$u/ServiceAPI/message" || true)
      if [ "$code" = 200 ]; then
        url[$s]=$u/ServiceAPI/message
        return 0
      fi
    fi
    sleep 0.1
  done
  cat "$log.stdout" "$log.stderr" "$log.ready" >&2 2>/dev/null || true
  die "$s did not answer 200 within 30 s (url ${u:-not printed}, last status ${code:-none})"
}

# What ran where, for the record.
src=$(df --output=source "$data" | tail -n 1)
fstype=$(findmnt -no FSTYPE -T "$data" 2>/dev/null || stat -f -c %T "$data")
fs="$fstype ($src"
if [ "$fstype" = ext4 ]; then # a journaled ext4 has a jbd2 entry for its device
  if compgen -G "/proc/fs/jbd2/$(basename "$src")-*" >/dev/null; then fs+=", journal"; else fs+=", no journal"; fi
fi
fs+="; mount options $(findmnt -no OPTIONS -T "$data" 2>/dev/null || echo unknown))"
case $fstype in tmpfs | ramfs | overlayfs | overlay) say "WARNING: spools on $fstype, not a disk: fsync costs nothing there" ;; esac
if [ "$(stat -c %d "$data")" != "$(stat -c %d "$repo")" ]; then
  say "note: the spools are not on the repository's file system"
fi
dirty=""
git --no-optional-locks diff --quiet HEAD -- 2>/dev/null || dirty=" with uncommitted changes"
{
  echo "# bench-http $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname): $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)), $("$GO" env GOVERSION), $(wrk -v 2>&1 | head -n 1 | cut -d' ' -f1-2)"
  echo "# new: work tree at $(git rev-parse --short HEAD)$dirty; old: $BASELINE = $(git log -1 --format='%h %s' "$old" | cut -c1-80)"
  echo "# spools and fsyncref's file: $data on $fs"
  echo "# rounds: $ROUNDS, each cell $DURATION after a $WARMUP warm-up; conns: $CONNS; servers: $SERVERS (order rotated each round); POST /ServiceAPI/message, 287-byte JSON"
  echo "round server conns rps p50_ms p99_ms non2xx sockerr"
} >"$OUT"
: >"$wrklog"

if [ "$SETTLE" -gt 0 ]; then
  say "waiting ${SETTLE} s for the file system to settle"
  sleep "$SETTLE"
fi

failed=0
n=${#servers[@]}
for round in $(seq "$ROUNDS"); do
  order=()
  for i in $(seq 0 $((n - 1))); do order+=("${servers[$(((i + round - 1) % n))]}"); done
  for s in "${order[@]}"; do start "$s" "$round"; done
  say "round $round/$ROUNDS: order ${order[*]}"
  for c in "${conns[@]}"; do
    threads=2
    [ "$c" -eq 1 ] && threads=1
    for s in "${order[@]}"; do
      kill -0 "${pid[$s]}" 2>/dev/null || { cat "$tmp/$s.r$round.stderr" >&2; die "$s (round $round) exited"; }
      wrk -t"$threads" -c"$c" -d"$WARMUP" -s "$lua" "${url[$s]}" >/dev/null
      report=$(wrk -t"$threads" -c"$c" -d"$DURATION" --timeout 5s --latency -s "$lua" "${url[$s]}")
      printf '=== round %s server %s conns %s\n%s\n' "$round" "$s" "$c" "$report" >>"$wrklog"
      read -r rps p50 p99 non2xx sock < <(sed -n 's/^RESULT //p' <<<"$report") ||
        { echo "$report" >&2; die "no RESULT line from wrk"; }
      echo "$round $s $c $rps $p50 $p99 $non2xx $sock" >>"$OUT"
      say "$(printf 'round %d %-8s conns %3d: %9s req/s  p50 %7s ms  p99 %7s ms' "$round" "$s" "$c" "$rps" "$p50" "$p99")"
      if [ "$non2xx" -ne 0 ] || [ "$sock" -ne 0 ]; then
        failed=1
        say "!!!!!!!! round $round $s conns $c: $non2xx non-2xx responses, $sock socket errors !!!!!!!!"
        tail -n 5 "$tmp/$s.r$round.stderr" >&2 || true
      fi
    done
  done
  for s in "${order[@]}"; do stop "$s"; done
done

"$tmp/summary" "$OUT"
if [ "$failed" -ne 0 ]; then
  die "FAILED REQUESTS: some cells had non-2xx responses or socket errors (see above and $OUT)"
fi
