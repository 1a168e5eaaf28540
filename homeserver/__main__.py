"""The `parley` command line: run, generate-config, register-user, migrate, rotate-key.

With no configuration at all, `parley run` makes a data folder holding a generated config, a
fresh signing key and an embedded PostgreSQL (pgserver), so a newcomer needs one command.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import asyncpg

from homeserver.config import Config, ConfigError, generate_config_yaml, load_config
from homeserver.errors import MatrixError
from homeserver.signing import ServerSigningKey, rotate_key
from homeserver.types import is_valid_server_name

log = logging.getLogger("parley")
CONFIG_NAME = "homeserver.yaml"


def _config_path(args: argparse.Namespace) -> Path | None:
    """--config, else PARLEY_CONFIG, else <data dir>/homeserver.yaml (generated if missing)."""
    explicit = args.config or os.environ.get("PARLEY_CONFIG")
    if explicit:
        return Path(explicit)
    data_dir = Path(os.environ.get("PARLEY_DATA_DIR", "parley-data")).resolve()
    path = data_dir / CONFIG_NAME
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        name = os.environ.get("PARLEY_SERVER_NAME", "localhost")
        path.write_text(generate_config_yaml(name, "."))
        print(f"parley: wrote a new config to {path}")
    return path


def load_key(config: Config) -> ServerSigningKey:
    path = config.signing_key_path
    if path.exists():
        return ServerSigningKey.from_file(path, config.server_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = ServerSigningKey.generate(config.server_name)
    key.save(path)
    os.chmod(path, 0o600)
    print(f"parley: generated a signing key at {path}")
    return key


def database_dsn(config: Config) -> tuple[str, Any]:
    """The DSN to use, starting an embedded PostgreSQL when none is configured."""
    if config.database_url:
        return config.database_url, None
    import warnings

    # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, cron); /tmp is fine.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    import pgserver

    logging.getLogger("pgserver").setLevel(logging.WARNING)
    pgdata = config.data_dir / "postgres"
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    _forget_dead_handles(pgdata)
    server = pgserver.get_server(pgdata, cleanup_mode="stop")
    server.psql("SELECT 1")
    exists = server.psql("SELECT 1 FROM pg_database WHERE datname = 'parley'")
    if "1 row" not in exists:
        server.psql("CREATE DATABASE parley")
    return server.get_uri("parley"), server


def _forget_dead_handles(pgdata: Path) -> None:
    """pgserver stops PostgreSQL when the last process holding a handle exits, counting handles
    in a pid list; a parley killed with SIGKILL never removes its pid, so the embedded server
    would then outlive every later run. Drop pids that no longer exist before taking a handle."""
    import json

    path = pgdata / ".handle_pids.json"
    try:
        pids = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    alive = []
    for pid in pids:
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            continue
        except (PermissionError, ValueError, TypeError):
            pass
        alive.append(pid)
    if alive != pids:
        path.write_text(json.dumps(alive))


def _stop_on_sigterm() -> None:
    """Until the event loop installs its own handlers, turn SIGTERM into SystemExit so `finally`
    blocks (which stop the embedded PostgreSQL) still run during start-up."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def _setup_logging(level: str, fmt: str = "text") -> None:
    from homeserver.observability.logs import setup_logging

    setup_logging(level, fmt)


async def _run(config: Config, dsn: str, key: ServerSigningKey) -> None:
    from homeserver.app import serve

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async for _ in serve(config, dsn, key):
        scheme = "https" if config.shared_listener else "http"
        url = f"{scheme}://{config.listen_host}:{config.listen_port}/"
        print(f"parley: serving {config.server_name} on {url}", flush=True)
        if config.federation_enabled and config.federation_listen_port \
                and not config.shared_listener:
            print(f"parley: federation on https://{config.federation_listen_host}:"
                  f"{config.federation_listen_port}/", flush=True)
        if config.metrics_listen_port:
            print(f"parley: metrics on http://{config.metrics_listen_host}:"
                  f"{config.metrics_listen_port}/metrics", flush=True)
        print(f"parley: data folder {config.data_dir}", flush=True)
        if config.registration == "closed":
            print("parley: registration is closed. Add a user with `parley register-user`, or "
                  "set PARLEY_REGISTRATION=open (or registration.mode in the config).",
                  flush=True)
        else:
            print(f"parley: registration is {config.registration}", flush=True)
        await stop.wait()


def cmd_run(args: argparse.Namespace) -> int:
    config = load_config(_config_path(args))
    _setup_logging(config.log_level, config.log_format)
    _stop_on_sigterm()
    key = load_key(config)
    dsn, server = database_dsn(config)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    try:
        asyncio.run(_run(config, dsn, key))
    finally:
        if server is not None:
            server.cleanup()
    return 0


def cmd_generate_config(args: argparse.Namespace) -> int:
    if not is_valid_server_name(args.server_name):
        raise ConfigError(f"invalid server_name {args.server_name!r}")
    text = generate_config_yaml(args.server_name)
    if args.output:
        Path(args.output).write_text(text)
        print(f"wrote {args.output}")
    else:
        sys.stdout.write(text)
    return 0


async def _migrate(dsn: str) -> list[int]:
    from homeserver.storage.migrate import migrate

    conn = await asyncpg.connect(dsn)
    try:
        return await migrate(conn)
    finally:
        await conn.close()


def cmd_migrate(args: argparse.Namespace) -> int:
    config = load_config(_config_path(args))
    dsn, server = database_dsn(config)
    try:
        applied = asyncio.run(_migrate(dsn))
        print(f"applied migrations: {applied or 'none (up to date)'}")
    finally:
        if server is not None:
            server.cleanup()
    return 0


async def _register(config: Config, dsn: str, key: ServerSigningKey, user: str,
                    password: str, admin: bool) -> str:
    from homeserver.app import build_homeserver
    from homeserver.storage.database import Database

    db = await Database.connect(dsn, 1, 2)
    try:
        hs = await build_homeserver(config, db, key)
        return await hs.accounts.register(user, password, is_admin=admin)
    finally:
        await db.close()


def cmd_register_user(args: argparse.Namespace) -> int:
    config = load_config(_config_path(args))
    password = args.password or os.environ.get("PARLEY_PASSWORD") or getpass.getpass()
    key = load_key(config)
    dsn, server = database_dsn(config)
    try:
        user_id = asyncio.run(_register(config, dsn, key, args.user, password, args.admin))
        print(f"registered {user_id}{' (admin)' if args.admin else ''}")
    finally:
        if server is not None:
            server.cleanup()
    return 0


async def _admin(config: Config, dsn: str, key: ServerSigningKey, args: argparse.Namespace,
                 password: str | None) -> list[str]:
    from homeserver.admin import cli
    from homeserver.app import build_homeserver
    from homeserver.storage.database import Database

    db = await Database.connect(dsn, 1, 2)
    try:
        hs = await build_homeserver(config, db, key)
        assert hs.admin is not None
        return await cli.run(args, hs.admin.users, hs.admin.tokens, password)
    finally:
        await db.close()


def cmd_admin(args: argparse.Namespace) -> int:
    """`parley admin ACTION ...` (homeserver/admin/cli.py)."""
    from homeserver.admin import cli

    if args.action == "rotate-key":
        return cmd_rotate_key(args)
    config = load_config(_config_path(args))
    password = None
    if cli.needs_password(args):
        password = args.password or os.environ.get("PARLEY_PASSWORD") or getpass.getpass()
    key = load_key(config)
    dsn, server = database_dsn(config)
    try:
        for line in asyncio.run(_admin(config, dsn, key, args, password)):
            print(line)
    finally:
        if server is not None:
            server.cleanup()
    return 0


def cmd_rotate_key(args: argparse.Namespace) -> int:
    """Retire the signing key (kept, published as an old verify key) and make a new one; a
    running server picks the new key up at its next start."""
    import time

    config = load_config(_config_path(args))
    if not config.signing_key_path.exists():
        load_key(config)
    old = ServerSigningKey.from_file(config.signing_key_path, config.server_name)
    new = rotate_key(config.signing_key_path, config.old_signing_keys_path,
                     config.server_name, int(time.time() * 1000))
    print(f"retired {old.key_id} (kept in {config.old_signing_keys_path}); "
          f"now signing with {new.key_id}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="parley", description="Parley Matrix homeserver")
    parser.add_argument("--config", help="config file (default: <data dir>/homeserver.yaml)")
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="start the server")
    run.add_argument("--config", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    gen = sub.add_parser("generate-config", help="print a starting config")
    gen.add_argument("--server-name", required=True)
    gen.add_argument("--output", "-o")
    reg = sub.add_parser("register-user", help="create a user (as an operator)")
    reg.add_argument("--config", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    reg.add_argument("--user", required=True, help="localpart of the new user")
    reg.add_argument("--password", help="password (default: PARLEY_PASSWORD or a prompt)")
    reg.add_argument("--admin", action="store_true", help="make the user a server admin")
    mig = sub.add_parser("migrate", help="apply database migrations and exit")
    mig.add_argument("--config", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    rot = sub.add_parser("rotate-key", help="replace the signing key, keeping the old one "
                         "as an old verify key")
    rot.add_argument("--config", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    from homeserver.admin import cli

    cli.add_parser(sub)
    args = parser.parse_args(argv)
    commands = {"run": cmd_run, "generate-config": cmd_generate_config,
                "register-user": cmd_register_user, "migrate": cmd_migrate,
                "rotate-key": cmd_rotate_key, "admin": cmd_admin}
    try:
        return commands.get(args.command or "run", cmd_run)(args)
    except ConfigError as e:
        print(f"parley: config error: {e}", file=sys.stderr)
        return 2
    except MatrixError as e:
        print(f"parley: {e.errcode}: {e.error}", file=sys.stderr)
        return 1
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
        # Port already in use, database unreachable or refusing us, unwritable data folder.
        print(f"parley: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
