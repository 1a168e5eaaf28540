#!/usr/bin/env bash
# Run Synapse (the reference Matrix homeserver) on loopback as a benchmark peer for Parley.
#
#   bench/synapse.sh start    # first time: makes a temp dir (mktemp), venv, DB, config; starts Synapse
#   bench/synapse.sh stop     # stops the Synapse whose dir is $SYNAPSE_DIR
#   bench/synapse.sh status
#
# Environment (all optional):
#   SYNAPSE_DIR     working dir holding venv/, data/ (config, signing key, logs) and synapse.pid.
#                   Unset on `start`: a fresh one is made with mktemp -d and printed; pass it back
#                   on later calls (start again, stop, status) to reuse venv, config and database.
#   SYNAPSE_VENV    an existing venv that has matrix-synapse[postgres]; default $SYNAPSE_DIR/venv
#                   (created and filled with `pip install 'matrix-synapse[postgres]'` if missing).
#   SYNAPSE_VERSION pip version spec for a new venv, e.g. '==1.163.2' (default: latest)
#   SYNAPSE_PORT    client-API port on 127.0.0.1 (default 18008)
#   SYNAPSE_SERVER_NAME  (default localhost)
#   PGHOST PGPORT PGUSER  PostgreSQL to use (default 127.0.0.1 5432 postgres, trust auth)
#   SYNAPSE_DB      database name (default synapse_bench). When a NEW config is generated the
#                   database is DROPPED and re-created (Synapse ties a DB to one server name/key).
#   SYNAPSE_BCRYPT_ROUNDS  password hashing cost (default 12, Synapse's default; lower only to
#                   speed up user registration during setup, and say so in results)
#   PYTHON          interpreter used to create the venv (default python3)
set -euo pipefail

cmd="${1:-start}"
PORT="${SYNAPSE_PORT:-18008}"
SERVER_NAME="${SYNAPSE_SERVER_NAME:-localhost}"
export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"
DB="${SYNAPSE_DB:-synapse_bench}"
PY="${PYTHON:-python3}"

die() { echo "synapse.sh: $*" >&2; exit 1; }

need_dir() {
  [ -n "${SYNAPSE_DIR:-}" ] || die "set SYNAPSE_DIR to the dir printed by 'start'"
  [ -d "$SYNAPSE_DIR" ] || die "no such dir: $SYNAPSE_DIR"
}

pid_alive() {
  [ -f "$SYNAPSE_DIR/synapse.pid" ] && kill -0 "$(cat "$SYNAPSE_DIR/synapse.pid")" 2>/dev/null
}

wait_up() {
  local i
  for i in $(seq 1 120); do
    if curl -fsS "http://127.0.0.1:$PORT/_matrix/client/versions" >/dev/null 2>&1; then
      return 0
    fi
    pid_alive || { tail -n 40 "$SYNAPSE_DIR/data/stdout.log" >&2 || true; die "Synapse exited during start-up"; }
    sleep 0.5
  done
  die "Synapse did not answer on port $PORT within 60 s"
}

do_start() {
  if [ -z "${SYNAPSE_DIR:-}" ]; then
    SYNAPSE_DIR="$(mktemp -d "${TMPDIR:-/tmp}/synapse-bench.XXXXXX")"
    echo "synapse.sh: new SYNAPSE_DIR=$SYNAPSE_DIR"
  fi
  mkdir -p "$SYNAPSE_DIR/data"
  local venv="${SYNAPSE_VENV:-$SYNAPSE_DIR/venv}"
  if ! "$venv/bin/python" -c 'import synapse' 2>/dev/null; then
    echo "synapse.sh: installing matrix-synapse[postgres] into $venv"
    [ -x "$venv/bin/python" ] || "$PY" -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip >/dev/null 2>&1 || true
    "$venv/bin/pip" install -q "matrix-synapse[postgres]${SYNAPSE_VERSION:-}"
  fi
  local py="$venv/bin/python"
  if pid_alive; then die "already running (pid $(cat "$SYNAPSE_DIR/synapse.pid"))"; fi

  local cfg="$SYNAPSE_DIR/data/homeserver.yaml"
  if [ ! -f "$cfg" ]; then
    echo "synapse.sh: generating config (server name $SERVER_NAME, port $PORT, db $DB)"
    (cd "$SYNAPSE_DIR/data" && "$py" -m synapse.app.homeserver --server-name "$SERVER_NAME" \
        --config-path "$cfg" --generate-config --report-stats=no >/dev/null)
    dropdb --if-exists "$DB"
    createdb --encoding=UTF8 --locale=C --template=template0 "$DB"
    SYNAPSE_CFG="$cfg" SYNAPSE_DATA="$SYNAPSE_DIR/data" PORT="$PORT" DB="$DB" \
      BCRYPT="${SYNAPSE_BCRYPT_ROUNDS:-12}" "$py" - <<'EOF'
import os, yaml
cfg_path = os.environ["SYNAPSE_CFG"]; data = os.environ["SYNAPSE_DATA"]
with open(cfg_path) as f:
    c = yaml.safe_load(f)
big = {"per_second": 1000000, "burst_count": 1000000}
c.update({
    "listeners": [{"port": int(os.environ["PORT"]), "bind_addresses": ["127.0.0.1"], "type": "http",
                   "tls": False, "x_forwarded": False,
                   "resources": [{"names": ["client"], "compress": False}]}],
    "database": {"name": "psycopg2", "args": {
        "host": os.environ["PGHOST"], "port": int(os.environ["PGPORT"]), "user": os.environ["PGUSER"],
        "database": os.environ["DB"], "cp_min": 5, "cp_max": 10}},
    "enable_registration": True,
    "enable_registration_without_verification": True,
    "bcrypt_rounds": int(os.environ["BCRYPT"]),
    "presence": {"enabled": True},
    "report_stats": False,
    "enable_metrics": False,
    "trusted_key_servers": [],
    "suppress_key_server_warning": True,
    "room_list_publication_rules": [{"action": "allow"}],
    "url_preview_enabled": False,
    # bench.py p: pushers aimed at the harness's push gateway on loopback
    "ip_range_whitelist": ["127.0.0.1/32"],
    "rc_message": big,
    "rc_registration": big,
    "rc_registration_token_validity": big,
    "rc_login": {"address": big, "account": big, "failed_attempts": big},
    "rc_joins": {"local": big, "remote": big},
    "rc_joins_per_room": big,
    "rc_invites": {"per_room": big, "per_user": big, "per_sender": big, "per_issuer": big},
    "rc_third_party_invite": big,
    "rc_presence": {"per_user": big},
    "rc_room_creation": big,
    "rc_key_requests": big,
    "rc_profile": big,
    "rc_3pid_validation": big,
    "rc_admin_redaction": big,
    "rc_media_create": big,
    "rc_reports": big,
    "rc_delayed_event_mgmt": big,
    "rc_user_directory": big,
    "rc_federation": {"window_size": 1000, "sleep_limit": 1000000, "sleep_delay": 0,
                      "reject_limit": 1000000, "concurrent": 1000000},
})
log_cfg = os.path.join(data, "log.config")
c["log_config"] = log_cfg
with open(log_cfg, "w") as f:
    yaml.safe_dump({
        "version": 1,
        "formatters": {"precise": {"format": "%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s"}},
        "handlers": {"file": {"class": "logging.FileHandler", "formatter": "precise",
                              "filename": os.path.join(data, "homeserver.log"), "encoding": "utf8"}},
        "loggers": {"synapse.storage.SQL": {"level": "WARNING"}},
        "root": {"level": "WARNING", "handlers": ["file"]},
        "disable_existing_loggers": False,
    }, f)
with open(cfg_path, "w") as f:
    yaml.safe_dump(c, f, sort_keys=False)
EOF
  fi
  echo "synapse.sh: starting Synapse $("$py" -c 'import synapse; print(synapse.__version__)') on http://127.0.0.1:$PORT"
  (cd "$SYNAPSE_DIR/data" && exec setsid "$py" -m synapse.app.homeserver --config-path "$cfg") \
      >"$SYNAPSE_DIR/data/stdout.log" 2>&1 </dev/null &
  echo $! >"$SYNAPSE_DIR/synapse.pid"
  wait_up
  echo "synapse.sh: up (pid $(cat "$SYNAPSE_DIR/synapse.pid")). Stop with: SYNAPSE_DIR=$SYNAPSE_DIR $0 stop"
}

do_stop() {
  need_dir
  if pid_alive; then
    local pid; pid="$(cat "$SYNAPSE_DIR/synapse.pid")"
    kill "$pid"
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && { echo "synapse.sh: still alive after 30 s, SIGKILL"; kill -9 "$pid"; }
    echo "synapse.sh: stopped pid $pid"
  else
    echo "synapse.sh: not running"
  fi
  rm -f "$SYNAPSE_DIR/synapse.pid"
}

case "$cmd" in
  start) do_start ;;
  stop) do_stop ;;
  status) need_dir; if pid_alive; then echo "running (pid $(cat "$SYNAPSE_DIR/synapse.pid"))"; else echo "stopped"; fi ;;
  *) die "usage: $0 start|stop|status" ;;
esac
