#!/usr/bin/env bash
# One sitting, one command: Synapse, then each Parley revision, every scenario, one table.
#
#   bench/compare.sh [--quick] [--no-synapse] [--tag NAME] [REV ...]
#
# REV is any git revision of this repository (default: 90c93ee HEAD); the first is "before",
# the last "after". WORKTREE means this checkout as it is on disk (uncommitted edits included,
# run with its own .venv). For each server, on a fresh database and a freshly started process:
#   g  bench_realtime.py connections --mode longpoll: 1,000 parked /sync long-polls (100 users),
#      the server's RSS before and after / 1,000. Runs first, so the process is fresh.
#   a-d bench.py: a 1:1 delivery, b 100-member fan-out, c 20 senders, d initial sync
#      (defaults and client unchanged, so figures compare with RESULTS.md), then p: b with
#      a pusher per member aimed at the harness's loopback push gateway (both servers are
#      allowed to reach 127.0.0.1 for it);
#   e,f bench.py --uvloop: e sequential PUT latency, f 10 senders on one access token (a
#      second client process with a leaner client; its CPU is reported).
# Writes bench/results/<tag>-<UTC stamp>-*.json (raw, per server), <tag>-<stamp>-manifest.tsv
# (which files are which server, load average, times) and <tag>-<stamp>-table.md, and
# prints the table (metric | Synapse | Parley <rev> ... | after/before).
#
# --quick      small counts (trial runs: a few minutes; the numbers mean little). Tag "trial".
# --no-synapse skip Synapse (e.g. to re-run Parley only)
#
# Environment (all optional):
#   BENCH_WORK     cache folder for exported revisions, their venvs and the Synapse venv,
#                  reused between runs (default ${TMPDIR:-/tmp}/parley-compare)
#   BENCH_OUT      where the JSON and table go (default: bench/results of this checkout)
#   BENCH_PYTHON   interpreter for the benchmark client (needs aiohttp and uvloop; default
#                  this checkout's .venv if it has both, else a venv made in BENCH_WORK)
#   SYNAPSE_VENV   venv with matrix-synapse[postgres] (default $BENCH_WORK/synapse-venv, made
#                  and filled by synapse.sh if missing, a few minutes the first time)
#   SYNAPSE_VERSION  pip spec for a new Synapse venv (default ==1.163.2, as in RESULTS.md)
#   SYNAPSE_PORT   (default 18508)   PARLEY_PORT (default 18510)
#   PGHOST PGPORT PGUSER  PostgreSQL (default 127.0.0.1 5432 postgres, trust auth). Databases
#                  synapse_compare and parley_compare_N are DROPPED and re-created.
#   CONNECTIONS    parked long-polls for g (default 1000; --quick 200)
#   BENCH_ARGS     extra arguments for bench.py (after the defaults, so they win)
#   SCENARIOS      only these bench.py scenarios (e.g. b,p for the push cost), and neither g
#                  nor the e,f run (default: everything above)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"
WORK="${BENCH_WORK:-${TMPDIR:-/tmp}/parley-compare}"
OUT="${BENCH_OUT:-$here/results}"
SYN_PORT="${SYNAPSE_PORT:-18508}"
PAR_PORT="${PARLEY_PORT:-18510}"

quick=0; synapse=1; tag=""; revs=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --no-synapse) synapse=0 ;;
    --tag) tag="$2"; shift ;;
    -h|--help) sed -n '2,35p' "$0"; exit 0 ;;
    -*) echo "compare.sh: unknown option $1" >&2; exit 2 ;;
    *) revs+=("$1") ;;
  esac
  shift
done
[ ${#revs[@]} -gt 0 ] || revs=(90c93ee HEAD)
[ -n "$tag" ] || { [ $quick = 1 ] && tag=trial || tag=compare; }

if [ $quick = 1 ]; then
  conns="${CONNECTIONS:-200}"
  bench_args=(--messages 30 --members 20 --fanout-messages 5 --fanout-gap-ms 200
              --duration 3 --warmup 1 --rooms 10 --room-messages 5 --initial-sync-runs 3
              --put-messages 100 --put-warmup 10 --f-duration 3 --f-warmup 1 --pause 1)
else
  conns="${CONNECTIONS:-1000}"
  bench_args=()
fi
# shellcheck disable=SC2206
bench_args+=(${BENCH_ARGS:-})

mkdir -p "$WORK" "$OUT"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
base="$tag-$stamp"
manifest="$OUT/$base-manifest.tsv"
logs="$(mktemp -d "$WORK/logs-$stamp.XXXXXX")"
: >"$manifest"
say() { echo "[$(date -u +%H:%M:%S)] compare.sh: $*" >&2; }
die() { say "$*"; exit 1; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# ---------------------------------------------------------------- the benchmark client
PY="${BENCH_PYTHON:-}"
if [ -z "$PY" ]; then
  if "$repo/.venv/bin/python" -c 'import aiohttp, uvloop' 2>/dev/null; then
    PY="$repo/.venv/bin/python"
  else
    PY="$WORK/client-venv/bin/python"
    if ! "$PY" -c 'import aiohttp, uvloop' 2>/dev/null; then
      say "making a client venv with aiohttp and uvloop"
      python3 -m venv "$WORK/client-venv"
      "$WORK/client-venv/bin/pip" install -q aiohttp uvloop
    fi
  fi
fi
"$PY" -c 'import aiohttp, uvloop' || die "the client ($PY) needs aiohttp and uvloop"

# ---------------------------------------------------------------- cleanup of what we started
syn_dir=""; par_pid=""
cleanup() {
  if [ -n "$par_pid" ] && kill -0 "$par_pid" 2>/dev/null; then
    kill "$par_pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$par_pid" 2>/dev/null || break; sleep 0.25; done
  fi
  if [ -n "$syn_dir" ]; then SYNAPSE_DIR="$syn_dir" "$here/synapse.sh" stop >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_http() {  # url pid
  for _ in $(seq 1 240); do
    curl -fsS "$1/_matrix/client/versions" >/dev/null 2>&1 && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.25
  done
  return 1
}

port_free() { ! curl -sS -m 1 "http://127.0.0.1:$1/" >/dev/null 2>&1; }

# Runs g then a-f against one started server; appends its manifest line.
run_scenarios() {  # label kind revision url pid file-stem
  local label="$1" kind="$2" rev="$3" url="$4" pid="$5" stem="$6" la started
  la="$(loadavg)"; started="$(date -u +%H:%M:%S)"
  if [ -n "${SCENARIOS:-}" ]; then
    say "$label: bench.py $SCENARIOS only (load $la)"
    "$PY" "$here/bench.py" --url "$url" --label "$label" --scenarios "$SCENARIOS" \
      --server-pid "$pid" "${bench_args[@]}" --json "$OUT/$stem.json" \
      >"$logs/$stem.out" 2>"$logs/$stem.err" \
      || { say "$label: bench.py failed, see $logs/$stem.err"; tail -n 5 "$logs/$stem.err" >&2 || true; }
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t-\t-\n' "$label" "$kind" "$rev" "$la" "$started" \
      "$(date -u +%H:%M:%S)" "$stem.json" >>"$manifest"
    return
  fi
  say "$label: g, $conns parked long-polls (server pid $pid, load $la)"
  if ! "$PY" "$here/bench_realtime.py" --url "$url" --scenarios connections --mode longpoll \
      --connections "$conns" --users 100 --server-pid "$pid" --json "$OUT/$stem-rss.json" \
      >"$logs/$stem-rss.out" 2>"$logs/$stem-rss.err"; then
    say "$label: g failed, see $logs/$stem-rss.err"; tail -n 5 "$logs/$stem-rss.err" >&2 || true
  fi
  say "$label: bench.py a,b,c,d,p (client as in RESULTS.md: asyncio, aiohttp)"
  if ! "$PY" "$here/bench.py" --url "$url" --label "$label" --scenarios a,b,c,d,p \
      --server-pid "$pid" "${bench_args[@]}" --json "$OUT/$stem.json" \
      >"$logs/$stem.out" 2>"$logs/$stem.err"; then
    say "$label: bench.py a-d failed, see $logs/$stem.err"; tail -n 5 "$logs/$stem.err" >&2 || true
  fi
  say "$label: bench.py e,f (client: uvloop, hand-parsed keep-alive HTTP/1.1)"
  if ! "$PY" "$here/bench.py" --url "$url" --label "$label" --scenarios e,f --uvloop \
      "${bench_args[@]}" --json "$OUT/$stem-ef.json" \
      >"$logs/$stem-ef.out" 2>"$logs/$stem-ef.err"; then
    say "$label: bench.py e,f failed, see $logs/$stem-ef.err"; tail -n 5 "$logs/$stem-ef.err" >&2 || true
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$kind" "$rev" "$la" "$started" \
    "$(date -u +%H:%M:%S)" "$stem.json" "$stem-ef.json" "$stem-rss.json" >>"$manifest"
}

t_begin=$(date +%s)
say "sitting $base: revisions ${revs[*]}; results in $OUT; logs in $logs"

# ---------------------------------------------------------------- Synapse
if [ $synapse = 1 ]; then
  port_free "$SYN_PORT" || die "port $SYN_PORT is in use (set SYNAPSE_PORT)"
  export SYNAPSE_VENV="${SYNAPSE_VENV:-$WORK/synapse-venv}"
  export SYNAPSE_VERSION="${SYNAPSE_VERSION:-==1.163.2}"
  syn_dir="$(mktemp -d "$WORK/synapse-run.XXXXXX")"
  say "starting Synapse (fresh config and database synapse_compare)"
  SYNAPSE_DIR="$syn_dir" SYNAPSE_PORT="$SYN_PORT" SYNAPSE_DB=synapse_compare \
    "$here/synapse.sh" start >"$logs/synapse-start.log" 2>&1 \
    || { cat "$logs/synapse-start.log" >&2; die "Synapse did not start"; }
  syn_pid="$(cat "$syn_dir/synapse.pid")"
  grep -q synapse "/proc/$syn_pid/cmdline" || die "pid $syn_pid is not Synapse"
  syn_ver="$("$SYNAPSE_VENV/bin/python" -c 'import synapse; print(synapse.__version__)')"
  run_scenarios "Synapse $syn_ver" synapse "$syn_ver" "http://127.0.0.1:$SYN_PORT" \
    "$syn_pid" "$base-synapse"
  SYNAPSE_DIR="$syn_dir" "$here/synapse.sh" stop >/dev/null
  dropdb --if-exists synapse_compare || true
  rm -rf "$syn_dir"; syn_dir=""
fi

# ---------------------------------------------------------------- Parley, each revision
n=0
for rev in "${revs[@]}"; do
  n=$((n + 1))
  if [ "$rev" = WORKTREE ]; then
    src="$repo"; venv="$repo/.venv"; short="worktree"
    [ -x "$venv/bin/python" ] || die "WORKTREE needs $venv (python3 -m venv .venv && pip install -e '.[speed]')"
  else
    sha="$(git -C "$repo" rev-parse --verify --quiet "$rev^{commit}")" || die "unknown revision $rev"
    short="${sha:0:7}"
    src="$WORK/parley-${sha:0:12}"; venv="$src/.venv"
    if [ ! -f "$src/.bench-ready" ]; then
      say "exporting $rev ($short) to a temporary checkout and installing it into a venv"
      rm -rf "$src"; mkdir -p "$src"
      git -C "$repo" archive "$sha" | tar -x -C "$src"
      python3 -m venv "$venv"
      "$venv/bin/pip" install -q -e "$src[speed]" >"$logs/pip-$short.log" 2>&1 \
        || { tail -n 20 "$logs/pip-$short.log" >&2; die "pip install failed for $rev"; }
      touch "$src/.bench-ready"
    fi
  fi
  port_free "$PAR_PORT" || die "port $PAR_PORT is in use (set PARLEY_PORT)"
  db="parley_compare_$n"
  dropdb --if-exists "$db"; createdb "$db"
  data="$(mktemp -d "$WORK/parley-data.XXXXXX")"
  say "starting Parley $rev ($short) on a fresh database $db"
  (cd "$data" && PARLEY_DATABASE_URL="postgresql://$PGUSER@$PGHOST:$PGPORT/$db" \
      PARLEY_LISTEN="127.0.0.1:$PAR_PORT" PARLEY_DATA_DIR="$data" PARLEY_SERVER_NAME=localhost \
      PARLEY_REGISTRATION=open PARLEY_RATE_LIMITS=off PARLEY_LOG_LEVEL=WARNING \
      PARLEY_OUTBOUND_ALLOW=127.0.0.1/32 \
      exec "$venv/bin/python" -m homeserver run) >"$logs/parley-$n-$short.log" 2>&1 </dev/null &
  par_pid=$!
  wait_http "http://127.0.0.1:$PAR_PORT" "$par_pid" \
    || { tail -n 20 "$logs/parley-$n-$short.log" >&2; die "Parley $rev did not start"; }
  run_scenarios "Parley $rev ($short)" parley "$rev $short" "http://127.0.0.1:$PAR_PORT" \
    "$par_pid" "$base-parley$n-$short"
  kill "$par_pid"
  for _ in $(seq 1 40); do kill -0 "$par_pid" 2>/dev/null || break; sleep 0.25; done
  kill -0 "$par_pid" 2>/dev/null && kill -9 "$par_pid"
  par_pid=""
  dropdb --if-exists "$db" || true
  rm -rf "$data"
done

# ---------------------------------------------------------------- the table
say "done in $(( $(date +%s) - t_begin )) s"
"$PY" "$here/compare_table.py" "$manifest" | tee "$OUT/$base-table.md"
