#!/usr/bin/env bash
# One sitting, one command: the E2EE key endpoints (bench_keys.py k, l, m) on Synapse, then on
# one Parley revision, each on a fresh database and a freshly started process; one table.
#
#   bench/compare_keys.sh [--quick] [--no-synapse] [--tag NAME] [REV]
#
# REV is a git revision of this repository (default HEAD), exported with `git archive` into its
# own venv as compare.sh does (the same cache, so a revision compare.sh installed is reused), or
# WORKTREE: this checkout as it is on disk, with its own .venv.
#   k  100 users x 3 devices upload signed device keys + 50 signed one-time keys; 30 timed
#      /keys/query for all 100 users (after 3 warm-up), each checked for 300 devices
#   l  10 rounds (after 1 warm-up) of 100 concurrent /keys/claim, 100 claimers on distinct
#      targets, then one round all on one user; no key may be handed out twice
#   m  300 sequential message PUTs alone, then with 4 /keys/query loops + 1 loop uploading
#      one-time keys (each claimed back, so the count stays under Synapse's cap of 500) flat
#      out ("hammer"), then with the same loops paced to 30 queries/s + 2 uploads/s ("paced":
#      the same offered load on both servers)
# The client runs on uvloop (bench_keys.py --uvloop; m's PUTs use bench.py's lean sender) and
# is given the server's pid, so server CPU per query is reported too.
# Writes bench/results/<tag>-<UTC stamp>-{synapse,parley-<sha>}.json, -meta.tsv (commit, load
# averages, times) and -table.md, and prints the table (metric | Synapse | Parley | ratio,
# the ratio being Parley / Synapse: below 1 is faster for a latency).
#
# --quick      small counts (a trial: a couple of minutes; the numbers mean little). Tag "trial".
# --no-synapse Parley only
#
# Environment (all optional), as compare.sh:
#   BENCH_WORK     cache for exported revisions, their venvs and the Synapse venv
#                  (default ${TMPDIR:-/tmp}/parley-compare)
#   BENCH_OUT      where the JSON and table go (default: bench/results of this checkout)
#   BENCH_PYTHON   client interpreter (needs aiohttp, uvloop, signedjson; default this
#                  checkout's .venv if it has them, else a venv made in BENCH_WORK)
#   SYNAPSE_VENV   (default $BENCH_WORK/synapse-venv)  SYNAPSE_VERSION (default ==1.163.2)
#   SYNAPSE_PORT   (default 18608)   PARLEY_PORT (default 18610)
#   PGHOST PGPORT PGUSER  PostgreSQL (default 127.0.0.1 5432 postgres, trust auth). Databases
#                  synapse_keys and parley_keys are DROPPED and re-created.
#   BENCH_KEYS_ARGS  extra arguments for bench_keys.py (after the defaults, so they win)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"
WORK="${BENCH_WORK:-${TMPDIR:-/tmp}/parley-compare}"
OUT="${BENCH_OUT:-$here/results}"
SYN_PORT="${SYNAPSE_PORT:-18608}"
PAR_PORT="${PARLEY_PORT:-18610}"

quick=0; synapse=1; tag=""; rev=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --no-synapse) synapse=0 ;;
    --tag) tag="$2"; shift ;;
    -h|--help) sed -n '2,37p' "$0"; exit 0 ;;
    -*) echo "compare_keys.sh: unknown option $1" >&2; exit 2 ;;
    *) [ -z "$rev" ] || { echo "compare_keys.sh: one revision only" >&2; exit 2; }; rev="$1" ;;
  esac
  shift
done
[ -n "$rev" ] || rev=HEAD
[ -n "$tag" ] || { [ $quick = 1 ] && tag=trial-keys || tag=keys; }

if [ $quick = 1 ]; then
  keys_args=(--key-users 20 --claimers 20 --claim-rounds 3 --queries 10 --query-warmup 2
             --put-messages 100 --put-warmup 10 --pause 1)
else
  keys_args=()
fi
# shellcheck disable=SC2206
keys_args+=(${BENCH_KEYS_ARGS:-})

mkdir -p "$WORK" "$OUT"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
base="$tag-$stamp"
meta="$OUT/$base-meta.tsv"
logs="$(mktemp -d "$WORK/logs-$stamp.XXXXXX")"
say() { echo "[$(date -u +%H:%M:%S)] compare_keys.sh: $*" >&2; }
die() { say "$*"; exit 1; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
printf 'label\tkind\trevision\tloadavg_start\tstarted_utc\tended_utc\tjson\n' >"$meta"

# ---------------------------------------------------------------- the benchmark client
client_ok() { "$1" -c 'import aiohttp, uvloop, signedjson' 2>/dev/null; }
PY="${BENCH_PYTHON:-}"
if [ -z "$PY" ]; then
  if client_ok "$repo/.venv/bin/python"; then
    PY="$repo/.venv/bin/python"
  else
    PY="$WORK/client-venv/bin/python"
    if ! client_ok "$PY"; then
      say "making a client venv with aiohttp, uvloop and signedjson"
      python3 -m venv "$WORK/client-venv"
      "$WORK/client-venv/bin/pip" install -q aiohttp uvloop signedjson
    fi
  fi
fi
client_ok "$PY" || die "the client ($PY) needs aiohttp, uvloop and signedjson"

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

run_keys() {  # label kind revision url pid file
  local label="$1" kind="$2" rv="$3" url="$4" pid="$5" file="$6" la started
  la="$(loadavg)"; started="$(date -u +%H:%M:%S)"
  say "$label: bench_keys.py k,l,m (server pid $pid, load $la)"
  if ! "$PY" "$here/bench_keys.py" --url "$url" --label "$label" --scenarios k,l,m --uvloop \
      --server-pid "$pid" "${keys_args[@]}" --json "$OUT/$file" \
      >"$logs/${file%.json}.out" 2>"$logs/${file%.json}.err"; then
    say "$label: bench_keys.py failed, see $logs/${file%.json}.err"
    tail -n 5 "$logs/${file%.json}.err" >&2 || true
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$kind" "$rv" "$la" "$started" \
    "$(date -u +%H:%M:%S)" "$file" >>"$meta"
}

t_begin=$(date +%s)
say "sitting $base: Parley $rev; results in $OUT; logs in $logs"
files=()

# ---------------------------------------------------------------- Synapse
if [ $synapse = 1 ]; then
  port_free "$SYN_PORT" || die "port $SYN_PORT is in use (set SYNAPSE_PORT)"
  export SYNAPSE_VENV="${SYNAPSE_VENV:-$WORK/synapse-venv}"
  export SYNAPSE_VERSION="${SYNAPSE_VERSION:-==1.163.2}"
  syn_dir="$(mktemp -d "$WORK/synapse-run.XXXXXX")"
  say "starting Synapse (fresh config and database synapse_keys)"
  SYNAPSE_DIR="$syn_dir" SYNAPSE_PORT="$SYN_PORT" SYNAPSE_DB=synapse_keys \
    "$here/synapse.sh" start >"$logs/synapse-start.log" 2>&1 \
    || { cat "$logs/synapse-start.log" >&2; die "Synapse did not start"; }
  syn_pid="$(cat "$syn_dir/synapse.pid")"
  grep -q synapse "/proc/$syn_pid/cmdline" || die "pid $syn_pid is not Synapse"
  syn_ver="$("$SYNAPSE_VENV/bin/python" -c 'import synapse; print(synapse.__version__)')"
  run_keys "Synapse $syn_ver" synapse "$syn_ver" "http://127.0.0.1:$SYN_PORT" "$syn_pid" \
    "$base-synapse.json"
  files+=("$OUT/$base-synapse.json")
  SYNAPSE_DIR="$syn_dir" "$here/synapse.sh" stop >/dev/null
  dropdb --if-exists synapse_keys || true
  rm -rf "$syn_dir"; syn_dir=""
fi

# ---------------------------------------------------------------- Parley
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
db="parley_keys"
dropdb --if-exists "$db"; createdb "$db"
data="$(mktemp -d "$WORK/parley-data.XXXXXX")"
say "starting Parley $rev ($short) on a fresh database $db"
(cd "$data" && PARLEY_DATABASE_URL="postgresql://$PGUSER@$PGHOST:$PGPORT/$db" \
    PARLEY_LISTEN="127.0.0.1:$PAR_PORT" PARLEY_DATA_DIR="$data" PARLEY_SERVER_NAME=localhost \
    PARLEY_REGISTRATION=open PARLEY_RATE_LIMITS=off PARLEY_LOG_LEVEL=WARNING \
    exec "$venv/bin/python" -m homeserver run) >"$logs/parley-$short.log" 2>&1 </dev/null &
par_pid=$!
wait_http "http://127.0.0.1:$PAR_PORT" "$par_pid" \
  || { tail -n 20 "$logs/parley-$short.log" >&2; die "Parley $rev did not start"; }
run_keys "Parley $short" parley "$rev $short" "http://127.0.0.1:$PAR_PORT" "$par_pid" \
  "$base-parley-$short.json"
files+=("$OUT/$base-parley-$short.json")
kill "$par_pid"
for _ in $(seq 1 40); do kill -0 "$par_pid" 2>/dev/null || break; sleep 0.25; done
kill -0 "$par_pid" 2>/dev/null && kill -9 "$par_pid"
par_pid=""
dropdb --if-exists "$db" || true
rm -rf "$data"

# ---------------------------------------------------------------- the table
say "done in $(( $(date +%s) - t_begin )) s"
present=()
for f in "${files[@]}"; do [ -f "$f" ] && present+=("$f"); done
[ ${#present[@]} -gt 0 ] || die "no results written"
"$PY" "$here/bench_keys.py" --table "${present[@]}" | tee "$OUT/$base-table.md"
