# shellcheck shell=bash
# What compare.sh and compare_keys.sh share, sourced by both: one "sitting" runs Synapse and
# Parley revisions one after the other on the same machine, each on a fresh database and a
# freshly started process. The caller sets NAME (its own name, for log lines) and the ports
# SYN_PORT and PAR_PORT before sourcing, and sets `logs` (a folder) before starting servers.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"
WORK="${BENCH_WORK:-${TMPDIR:-/tmp}/parley-compare}"
OUT="${BENCH_OUT:-$here/results}"

say() { echo "[$(date -u +%H:%M:%S)] $NAME: $*" >&2; }
die() { say "$*"; exit 1; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# The benchmark client's interpreter: BENCH_PYTHON, else this checkout's .venv if it can import
# the modules named, else a venv of its own in WORK with them (pip names = module names here).
pick_client() {  # module...
  local imports
  imports="import $(IFS=,; echo "$*")"
  PY="${BENCH_PYTHON:-}"
  if [ -z "$PY" ]; then
    if "$repo/.venv/bin/python" -c "$imports" 2>/dev/null; then
      PY="$repo/.venv/bin/python"
    else
      PY="$WORK/client-venv/bin/python"
      if ! "$PY" -c "$imports" 2>/dev/null; then
        say "making a client venv with $*"
        python3 -m venv "$WORK/client-venv"
        "$WORK/client-venv/bin/pip" install -q "$@"
      fi
    fi
  fi
  "$PY" -c "$imports" || die "the client ($PY) needs $*"
}

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

# Starts Synapse on SYN_PORT with a fresh config and database; sets syn_dir, syn_pid, syn_ver.
start_synapse() {  # database
  port_free "$SYN_PORT" || die "port $SYN_PORT is in use (set SYNAPSE_PORT)"
  export SYNAPSE_VENV="${SYNAPSE_VENV:-$WORK/synapse-venv}"
  export SYNAPSE_VERSION="${SYNAPSE_VERSION:-==1.163.2}"
  syn_dir="$(mktemp -d "$WORK/synapse-run.XXXXXX")"
  say "starting Synapse (fresh config and database $1)"
  SYNAPSE_DIR="$syn_dir" SYNAPSE_PORT="$SYN_PORT" SYNAPSE_DB="$1" \
    "$here/synapse.sh" start >"$logs/synapse-start.log" 2>&1 \
    || { cat "$logs/synapse-start.log" >&2; die "Synapse did not start"; }
  syn_pid="$(cat "$syn_dir/synapse.pid")"
  grep -q synapse "/proc/$syn_pid/cmdline" || die "pid $syn_pid is not Synapse"
  syn_ver="$("$SYNAPSE_VENV/bin/python" -c 'import synapse; print(synapse.__version__)')"
}

stop_synapse() {  # database
  SYNAPSE_DIR="$syn_dir" "$here/synapse.sh" stop >/dev/null
  dropdb --if-exists "$1" || true
  rm -rf "$syn_dir"; syn_dir=""
}

# A revision ready to run: WORKTREE is this checkout with its .venv; any other revision is
# exported with `git archive` into WORK and installed into a venv there once (cached).
# Sets src, venv and short.
prepare_revision() {  # rev
  local rev="$1" sha
  if [ "$rev" = WORKTREE ]; then
    src="$repo"; venv="$repo/.venv"; short="worktree"
    [ -x "$venv/bin/python" ] || die "WORKTREE needs $venv (python3 -m venv .venv && pip install -e '.[speed]')"
    return
  fi
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
}

# Starts the prepared revision on PAR_PORT on a fresh database; sets par_pid and par_data. The
# server may reach 127.0.0.1 (the harness's push gateway is there).
start_parley() {  # rev database log-file
  port_free "$PAR_PORT" || die "port $PAR_PORT is in use (set PARLEY_PORT)"
  dropdb --if-exists "$2"; createdb "$2"
  par_data="$(mktemp -d "$WORK/parley-data.XXXXXX")"
  say "starting Parley $1 ($short) on a fresh database $2"
  (cd "$par_data" && PARLEY_DATABASE_URL="postgresql://$PGUSER@$PGHOST:$PGPORT/$2" \
      PARLEY_LISTEN="127.0.0.1:$PAR_PORT" PARLEY_DATA_DIR="$par_data" PARLEY_SERVER_NAME=localhost \
      PARLEY_REGISTRATION=open PARLEY_RATE_LIMITS=off PARLEY_LOG_LEVEL=WARNING \
      PARLEY_OUTBOUND_ALLOW=127.0.0.1/32 \
      exec "$venv/bin/python" -m homeserver run) >"$3" 2>&1 </dev/null &
  par_pid=$!
  wait_http "http://127.0.0.1:$PAR_PORT" "$par_pid" \
    || { tail -n 20 "$3" >&2; die "Parley $1 did not start"; }
}

stop_parley() {  # database
  kill "$par_pid"
  for _ in $(seq 1 40); do kill -0 "$par_pid" 2>/dev/null || break; sleep 0.25; done
  kill -0 "$par_pid" 2>/dev/null && kill -9 "$par_pid"
  par_pid=""
  dropdb --if-exists "$1" || true
  rm -rf "$par_data"
}
