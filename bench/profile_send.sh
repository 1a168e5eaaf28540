#!/usr/bin/env bash
# Where a Parley message PUT spends its time, under bench.py scenario f (10 senders sharing one
# access token, one room): py-spy CPU profile of the server, server and PostgreSQL CPU per send,
# and every asyncpg round trip counted and timed (bench/pgtrace.py), over one measured window.
#
#   bench/profile_send.sh [SRC]      # SRC: a Parley checkout with .venv (default: this one)
#   SCENARIO=e bench/profile_send.sh # the same under scenario e (one client, sequential sends)
#
# Environment: PYSPY (py-spy binary; default `py-spy` on PATH; `pip install py-spy`),
#   PYSPY_ARGS (extra py-spy record arguments, e.g. "--native --nonblocking"; PYSPY=none: no
#   profile, just CPU and SQL), TRACE (1: count SQL with pgtrace.py, the default; 0: not),
#   DURATION (measured seconds, default 15), PARLEY_PORT (18520), PGHOST/PGPORT/PGUSER,
#   BENCH_PYTHON (client interpreter, default SRC's venv), OUT (default: a mktemp folder).
# The database parley_profile is DROPPED and re-created. py-spy needs ptrace rights (root, or
# kernel.yama.ptrace_scope=0). Prints a summary; the raw files stay in OUT.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="$(cd "${1:-$here/..}" && pwd)"
export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"
PYSPY="${PYSPY:-py-spy}"
DURATION="${DURATION:-15}"
PORT="${PARLEY_PORT:-18520}"
venv="$src/.venv"
PY="${BENCH_PYTHON:-$venv/bin/python}"
OUT="${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/parley-profile.XXXXXX")}"
mkdir -p "$OUT"
db=parley_profile
TRACE="${TRACE:-1}"
[ "$PYSPY" = none ] || command -v "$PYSPY" >/dev/null \
  || { echo "profile_send.sh: no py-spy (set PYSPY)" >&2; exit 1; }
if [ "$TRACE" = 1 ]; then wrapper=("$here/pgtrace.py" --out "$OUT/sql" --); else wrapper=(); fi
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
   PARLEY_LISTEN="127.0.0.1:$PORT" PARLEY_DATA_DIR="$OUT/data" PARLEY_REGISTRATION=open \
   PARLEY_RATE_LIMITS=off PARLEY_LOG_LEVEL=WARNING \
   exec "$venv/bin/python" "${wrapper[@]}" -m homeserver run) \
   >"$OUT/server.log" 2>&1 </dev/null &
pid=$!
for _ in $(seq 1 120); do
  curl -fsS "http://127.0.0.1:$PORT/_matrix/client/versions" >/dev/null 2>&1 && break; sleep 0.25
done

cpu_ticks() {  # sum of utime+stime of the given pids
  local t=0 p
  for p in "$@"; do
    [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$t"
}
pg_pids() {  # this database's backends
  psql -Atc "select pid from pg_stat_activity where datname = '$db'"
}
aux_pids() {  # the cluster's WAL writer, checkpointer, bgwriter (shared with any other DB!)
  psql -Atc "select pid from pg_stat_activity where backend_type in
             ('walwriter', 'checkpointer', 'background writer')"
}

warm=5
SCENARIO="${SCENARIO:-f}"
case "$SCENARIO" in
  f) sc_args=(--f-warmup "$warm" --f-duration "$((DURATION + 4))"); started="f: .* senders" ;;
  e) sc_args=(--put-warmup 200 --put-messages 10000000 --put-max-time "$((warm + DURATION + 4))")
     started="e: .* sequential" ;;  # runs until --put-max-time
  *) echo "SCENARIO must be e or f" >&2; exit 2 ;;
esac
"$PY" "$here/bench.py" --url "http://127.0.0.1:$PORT" --scenarios "$SCENARIO" --uvloop \
  "${sc_args[@]}" --json "$OUT/bench.json" >"$OUT/bench.out" 2>"$OUT/bench.err" &
bpid=$!
for _ in $(seq 1 240); do grep -q "$started" "$OUT/bench.err" 2>/dev/null && break; sleep 0.25; done
sleep "$((warm + 1))"
mapfile -t pgp < <(pg_pids)
mapfile -t auxp < <(aux_pids)
events() { psql -Atc "select count(*) from events" "$db"; }
e0=$(events)
[ "$TRACE" = 1 ] && kill -USR1 "$pid"          # start of the window (sql.1.json = before it)
s0=$(cpu_ticks "$pid"); p0=$(cpu_ticks "${pgp[@]}"); a0=$(cpu_ticks "${auxp[@]}")
t0=$(date +%s.%N)
if [ "$PYSPY" = none ]; then
  sleep "$DURATION"
else
  # shellcheck disable=SC2086
  "$PYSPY" record -p "$pid" -d "$DURATION" -r 200 -f raw ${PYSPY_ARGS:-} -o "$OUT/pyspy.txt" \
    >"$OUT/pyspy.log" 2>&1
fi
s1=$(cpu_ticks "$pid"); p1=$(cpu_ticks "${pgp[@]}"); a1=$(cpu_ticks "${auxp[@]}")
t1=$(date +%s.%N); e1=$(events); load=$(cut -d' ' -f1-3 /proc/loadavg)
[ "$TRACE" = 1 ] && kill -USR1 "$pid"          # end of the window: sql.2.json
wait "$bpid" || true; bpid=""
hz=$(getconf CLK_TCK)
"$PY" - "$OUT" "$s0" "$s1" "$p0" "$p1" "$t0" "$t1" "$hz" "$SCENARIO" "$((e1 - e0))" \
  "$((a1 - a0))" "$load" <<'EOF'
import json, sys
out, s0, s1, p0, p1, t0, t1, hz, scenario, n_events, aux, load = sys.argv[1:]
s_cpu = (int(s1) - int(s0)) / int(hz); p_cpu = (int(p1) - int(p0)) / int(hz)
a_cpu = int(aux) / int(hz)
wall = float(t1) - float(t0)
import os
sql = json.load(open(f"{out}/sql.2.json")) if os.path.exists(f"{out}/sql.2.json") else None
res = json.load(open(f"{out}/bench.json"))[scenario]
sends = int(n_events)  # events stored during the window (the room's own events came before)
print(f"scenario {scenario}: {sends / wall:.1f} sends/s in the window ({sends} events stored in "
      f"{wall:.1f} s); whole run: PUT p50 / p99 {res['put_latency'].get('p50_ms')} / "
      f"{res['put_latency'].get('p99_ms')} ms")
print(f"load average at the end: {load}")
print(f"CPU: Parley {s_cpu / wall:.2f} cores = {s_cpu * 1000 / sends:.3f} ms/send; "
      f"its PostgreSQL backends {p_cpu / wall:.2f} cores = {p_cpu * 1000 / sends:.3f} ms/send; "
      f"WAL writer+checkpointer+bgwriter (whole cluster) {a_cpu / wall:.2f} cores")
if sql:
    print("\nSQL per send (count / sends, wall ms per call, share of window wall time):")
    for st in sql["statements"]:
        print(f"  {st['count'] / sends:6.3f}  {st['mean_ms']:7.3f} ms  "
              f"{st['total_ms'] / 1000 / wall * 100:5.1f}%  {st['sql'][:110]}")
    rt = sum(s["count"] for s in sql["statements"] if not s["sql"].startswith("(pool"))
    print(f"  = {rt / sends:.2f} round trips per send (pool acquires not counted)")
EOF
if [ -s "$OUT/pyspy.txt" ]; then echo; "$PY" "$here/pyspy_summary.py" "$OUT/pyspy.txt"; fi
echo "raw files in $OUT"
