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
#   BENCH_DB       name stem of the Parley databases instead of parley_compare (so that two
#                  sittings on one PostgreSQL do not drop each other's)
#   CONNECTIONS    parked long-polls for g (default 1000; --quick 200)
#   BENCH_ARGS     extra arguments for bench.py (after the defaults, so they win)
#   SCENARIOS      only these bench.py scenarios (e.g. b,p for the push cost), and neither g
#                  nor the e,f run (default: everything above)
set -euo pipefail

NAME=compare.sh
SYN_PORT="${SYNAPSE_PORT:-18508}"
PAR_PORT="${PARLEY_PORT:-18510}"
# shellcheck source=bench/sitting.sh
. "$(dirname "${BASH_SOURCE[0]}")/sitting.sh"

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
pick_client aiohttp uvloop

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
  start_synapse synapse_compare
  run_scenarios "Synapse $syn_ver" synapse "$syn_ver" "http://127.0.0.1:$SYN_PORT" \
    "$syn_pid" "$base-synapse"
  stop_synapse synapse_compare
fi

# ---------------------------------------------------------------- Parley, each revision
n=0
for rev in "${revs[@]}"; do
  n=$((n + 1))
  prepare_revision "$rev"
  start_parley "$rev" "${BENCH_DB:-parley_compare}_$n" "$logs/parley-$n-$short.log"
  run_scenarios "Parley $rev ($short)" parley "$rev $short" "http://127.0.0.1:$PAR_PORT" \
    "$par_pid" "$base-parley$n-$short"
  stop_parley "${BENCH_DB:-parley_compare}_$n"
done

# ---------------------------------------------------------------- the table
say "done in $(( $(date +%s) - t_begin )) s"
"$PY" "$here/compare_table.py" "$manifest" | tee "$OUT/$base-table.md"
