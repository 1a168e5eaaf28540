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

NAME=compare_keys.sh
SYN_PORT="${SYNAPSE_PORT:-18608}"
PAR_PORT="${PARLEY_PORT:-18610}"
# shellcheck source=bench/sitting.sh
. "$(dirname "${BASH_SOURCE[0]}")/sitting.sh"

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
printf 'label\tkind\trevision\tloadavg_start\tstarted_utc\tended_utc\tjson\n' >"$meta"

pick_client aiohttp uvloop signedjson

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
  start_synapse synapse_keys
  run_keys "Synapse $syn_ver" synapse "$syn_ver" "http://127.0.0.1:$SYN_PORT" "$syn_pid" \
    "$base-synapse.json"
  files+=("$OUT/$base-synapse.json")
  stop_synapse synapse_keys
fi

# ---------------------------------------------------------------- Parley
prepare_revision "$rev"
start_parley "$rev" parley_keys "$logs/parley-$short.log"
run_keys "Parley $short" parley "$rev $short" "http://127.0.0.1:$PAR_PORT" "$par_pid" \
  "$base-parley-$short.json"
files+=("$OUT/$base-parley-$short.json")
stop_parley parley_keys

# ---------------------------------------------------------------- the table
say "done in $(( $(date +%s) - t_begin )) s"
present=()
for f in "${files[@]}"; do [ -f "$f" ] && present+=("$f"); done
[ ${#present[@]} -gt 0 ] || die "no results written"
"$PY" "$here/bench_keys.py" --table "${present[@]}" | tee "$OUT/$base-table.md"
