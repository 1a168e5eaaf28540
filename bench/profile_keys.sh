#!/usr/bin/env bash
# Where Parley's time goes under bench_keys.py: a py-spy profile of the server during three
# windows of one run, k's sequential /keys/query loop, l's concurrent claim rounds and m's
# sends under key load, with the CPU of the server and of its PostgreSQL backends per window.
#
#   bench/profile_keys.sh [SRC]   # SRC: a Parley checkout with .venv (default: this one)
#
# Environment: PYSPY (py-spy binary; default `py-spy` on PATH, or SRC's .venv; `pip install
#   py-spy`), PYSPY_ARGS (extra py-spy record arguments), DURATION (seconds per window, default
#   5), PARLEY_PORT (18530), PGHOST/PGPORT/PGUSER, BENCH_PYTHON (client, default SRC's venv),
#   OUT (default: a mktemp folder), KEYS_ARGS (extra bench_keys.py arguments).
# The database parley_profile_keys is DROPPED and re-created. py-spy needs ptrace rights.
# The windows are longer than compare_keys.sh's (more queries and claim rounds, see below)
# so that each holds DURATION seconds; py-spy slows the server a little: take figures from
# compare_keys.sh, shares of time from here. Prints one summary per window.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="$(cd "${1:-$here/..}" && pwd)"
export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"
venv="$src/.venv"
PYSPY="${PYSPY:-$(command -v py-spy || echo "$venv/bin/py-spy")}"
DURATION="${DURATION:-5}"
PORT="${PARLEY_PORT:-18530}"
PY="${BENCH_PYTHON:-$venv/bin/python}"
OUT="${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/parley-profile-keys.XXXXXX")}"
mkdir -p "$OUT"
db=parley_profile_keys
[ -x "$PYSPY" ] || { echo "profile_keys.sh: no py-spy (set PYSPY)" >&2; exit 1; }
curl -s -m 1 "http://127.0.0.1:$PORT/" >/dev/null 2>&1 && { echo "port $PORT in use" >&2; exit 1; }

pid=""; bpid=""
cleanup() {
  [ -n "$bpid" ] && kill "$bpid" 2>/dev/null || true
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid"; for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  fi
  dropdb --if-exists "$db" 2>/dev/null || true
}
trap cleanup EXIT

dropdb --if-exists "$db"; createdb "$db"
(cd "$OUT" && PARLEY_DATABASE_URL="postgresql://$PGUSER@$PGHOST:$PGPORT/$db" \
   PARLEY_LISTEN="127.0.0.1:$PORT" PARLEY_DATA_DIR="$OUT/data" PARLEY_SERVER_NAME=localhost \
   PARLEY_REGISTRATION=open PARLEY_RATE_LIMITS=off PARLEY_LOG_LEVEL=WARNING \
   exec "$venv/bin/python" -m homeserver run) >"$OUT/server.log" 2>&1 </dev/null &
pid=$!
for _ in $(seq 1 120); do
  curl -fsS "http://127.0.0.1:$PORT/_matrix/client/versions" >/dev/null 2>&1 && break; sleep 0.25
done

ticks() {  # utime+stime of the given pids, in clock ticks
  local t=0 p
  for p in "$@"; do
    [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$t"
}
pg_pids() {
  psql -At -d "$db" -c "SELECT pid FROM pg_stat_activity WHERE datname = '$db'" 2>/dev/null
}

# shellcheck disable=SC2206
"$PY" "$here/bench_keys.py" --url "http://127.0.0.1:$PORT" --label profile --uvloop \
  --queries 1500 --claim-rounds 45 --claim-gap 0.05 --put-messages 3000 --put-max-time 20 \
  --server-pid "$pid" ${KEYS_ARGS:-} --json "$OUT/bench.json" >"$OUT/bench.out" 2>"$OUT/bench.err" &
bpid=$!

window() {  # name, log line that starts it, seconds to wait after the line
  local name="$1" line="$2" after="$3" s0 p0 s1 p1 pgs
  for _ in $(seq 1 2400); do grep -q -- "$line" "$OUT/bench.err" && break
    kill -0 "$bpid" 2>/dev/null || { echo "bench ended before $name" >&2; return 1; }
    sleep 0.1; done
  sleep "$after"
  pgs=$(pg_pids); s0=$(ticks "$pid"); p0=$(ticks $pgs)
  # shellcheck disable=SC2086
  "$PYSPY" record -r 200 -f raw -d "$DURATION" -p "$pid" -o "$OUT/$name.txt" ${PYSPY_ARGS:-} \
    >"$OUT/$name.pyspy.log" 2>&1 || true
  s1=$(ticks "$pid"); p1=$(ticks $pgs)
  local hz; hz=$(getconf CLK_TCK)
  echo "== $name: ${DURATION}s window: Parley CPU $(( (s1 - s0) * 100 / hz / DURATION ))% of a core," \
    "its PostgreSQL backends $(( (p1 - p0) * 100 / hz / DURATION ))% (load $(cut -d' ' -f1 /proc/loadavg))"
  "$PY" "$here/pyspy_summary.py" "$OUT/$name.txt" | head -n 60
}

window k-query "timed /keys/query" 1
window l-claim "rounds of" 1
window m-loaded "the same sends with" 2
wait "$bpid" || true; bpid=""
grep -E "^\| (k|l|m) " "$OUT/bench.out" || true
echo "raw: $OUT"
