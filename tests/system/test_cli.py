"""The `parley` command line, run as a real child process: generate-config, register-user,
migrate, config errors, and the zero-config `parley run` with an embedded PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import asyncpg
import pytest
import yaml

from tests.conftest import free_port
from tests.helpers import Client
from tests.system.proc import ServerProcess, child_env, parley


async def _login(url: str, user: str, password: str) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as s:
        c = Client(url, s)
        status, body = await c.request("POST", "/login", {
            "type": "m.login.password", "password": password,
            "identifier": {"type": "m.id.user", "user": user}})
        if status == 200:
            who_status, who = await c.request("GET", "/account/whoami",
                                              token=body["access_token"])
            assert who_status == 200, who
            assert who["user_id"] == body["user_id"]
        return status, body


async def test_generate_config_prints_yaml_with_the_server_name(tmp_path: Path) -> None:
    out = parley("generate-config", "--server-name", "chat.example.org",
                 env=child_env(), cwd=tmp_path, timeout=60)
    assert out.returncode == 0, out.stderr
    cfg = yaml.safe_load(out.stdout)
    assert cfg["server_name"] == "chat.example.org"
    assert cfg["registration"]["mode"] == "closed"

    # --output writes a file that `load_config` accepts, with data_dir relative to the file.
    from homeserver.config import load_config

    target = tmp_path / "etc" / "homeserver.yaml"
    target.parent.mkdir()
    out = parley("generate-config", "--server-name", "chat.example.org", "-o", str(target),
                 env=child_env(), cwd=tmp_path, timeout=60)
    assert out.returncode == 0, out.stderr
    cfg = load_config(target, env={})
    assert cfg.server_name == "chat.example.org"
    assert cfg.data_dir == tmp_path / "etc" / "parley-data"
    assert cfg.signing_key_path == tmp_path / "etc" / "parley-data" / "signing.key"


async def test_register_user_then_login_over_http(fresh_database: str, tmp_path: Path) -> None:
    env = child_env(PARLEY_DATABASE_URL=fresh_database, PARLEY_DATA_DIR=str(tmp_path / "data"),
                    PARLEY_SERVER_NAME="cli.test", PARLEY_LOG_LEVEL="WARNING")
    out = parley("register-user", "--user", "admin", "--password", "correct horse", "--admin",
                 env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "@admin:cli.test" in out.stdout

    # Registering the same user again fails cleanly, without a traceback.
    again = parley("register-user", "--user", "admin", "--password", "x", env=env, cwd=tmp_path)
    assert again.returncode != 0
    assert "M_USER_IN_USE" in again.stderr and "Traceback" not in again.stderr

    conn = await asyncpg.connect(fresh_database)
    try:
        is_admin = await conn.fetchval("SELECT is_admin FROM users WHERE user_id = $1",
                                       "@admin:cli.test")
        assert is_admin is True
    finally:
        await conn.close()

    env["PARLEY_LISTEN"] = f"127.0.0.1:{free_port()}"  # registration stays closed
    hs = ServerProcess(env, tmp_path, tmp_path / "server.log")
    try:
        hs.start()
        await hs.wait_ready()
        status, body = await _login(hs.url, "admin", "correct horse")
        assert status == 200, body
        assert body["user_id"] == "@admin:cli.test"
        status, body = await _login(hs.url, "admin", "wrong")
        assert status == 403 and body["errcode"] == "M_FORBIDDEN"
        assert hs.terminate() == 0
    finally:
        hs.stop()


async def test_migrate_twice_is_idempotent(fresh_database: str, tmp_path: Path) -> None:
    env = child_env(PARLEY_DATABASE_URL=fresh_database, PARLEY_DATA_DIR=str(tmp_path / "data"))
    first = parley("migrate", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "applied migrations: [1" in first.stdout
    conn = await asyncpg.connect(fresh_database)
    try:
        before = await conn.fetch("SELECT version, applied_ts FROM schema_migrations")
    finally:
        await conn.close()
    second = parley("migrate", env=env, cwd=tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "none (up to date)" in second.stdout
    conn = await asyncpg.connect(fresh_database)
    try:
        after = await conn.fetch("SELECT version, applied_ts FROM schema_migrations")
    finally:
        await conn.close()
    assert before and sorted(map(tuple, before)) == sorted(map(tuple, after))


@pytest.mark.parametrize(("setting", "message"), [
    ({"PARLEY_SERVER_NAME": "not a server name!"}, "invalid server_name"),
    ({"PARLEY_REGISTRATION": "sometimes"}, "registration must be one of open, token, closed"),
    ({"PARLEY_LISTEN": "nowhere"}, "listen address must be host:port"),
    ({"file": "server_name: [unclosed"}, "not valid YAML"),
    ({"file": "listeners: [{port: eighty}]"}, "bad value"),
])
async def test_invalid_config_exits_non_zero_with_a_clear_message(
        tmp_path: Path, setting: dict[str, str], message: str) -> None:
    env = child_env(PARLEY_DATABASE_URL="postgresql://nobody@127.0.0.1:1/none",
                    PARLEY_DATA_DIR=str(tmp_path / "data"))
    if "file" in setting:
        path = tmp_path / "bad.yaml"
        path.write_text(setting.pop("file"))
        env["PARLEY_CONFIG"] = str(path)
    env.update(setting)
    for command in (["run"], ["migrate"]):
        out = parley(*command, env=env, cwd=tmp_path, timeout=60)
        assert out.returncode == 2, (command, out.stdout, out.stderr)
        assert "parley: config error:" in out.stderr and message in out.stderr, out.stderr
        assert "Traceback" not in out.stderr


async def test_generate_config_rejects_a_bad_server_name(tmp_path: Path) -> None:
    out = parley("generate-config", "--server-name", "bad name", env=child_env(), cwd=tmp_path,
                 timeout=60)
    assert out.returncode == 2 and "invalid server_name" in out.stderr, out.stderr


async def test_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    out = parley("--config", str(tmp_path / "missing.yaml"), "migrate", env=child_env(),
                 cwd=tmp_path, timeout=60)
    assert out.returncode == 2 and "cannot read config file" in out.stderr, out.stderr


def _postmaster_running(pgdata: Path) -> bool:
    pid_file = pgdata / "postmaster.pid"
    if not pid_file.exists():
        return False
    import os

    try:
        os.kill(int(pid_file.read_text().split()[0]), 0)
    except (ProcessLookupError, ValueError):
        return False
    return True


async def test_zero_config_run_uses_embedded_postgres_and_keeps_its_data(tmp_path: Path) -> None:
    """`parley run` with only a data folder and a listen address: no database configured."""
    data = tmp_path / "data"
    env = child_env(PARLEY_DATA_DIR=str(data), PARLEY_LISTEN=f"127.0.0.1:{free_port()}")
    pgdata = data / "postgres"
    first = ServerProcess(env, tmp_path, tmp_path / "first.log")
    try:
        first.start()
        await first.wait_ready()
        assert (data / "homeserver.yaml").is_file()
        assert (data / "signing.key").is_file()
        assert (pgdata / "PG_VERSION").is_file(), "no embedded PostgreSQL in the data folder"
        assert yaml.safe_load((data / "homeserver.yaml").read_text())["server_name"] == "localhost"
        banner = first.log()
        assert "registration is closed" in banner and "parley register-user" in banner
        # Registration is closed by default; the operator adds a user while the server runs.
        out = parley("register-user", "--user", "zoe", "--password", "zero config pw",
                     env=env, cwd=tmp_path)
        assert out.returncode == 0, out.stdout + out.stderr
        status, body = await _login(first.url, "zoe", "zero config pw")
        assert status == 200, body
        key = (data / "signing.key").read_text()
        # SIGTERM: a clean exit that also stops the embedded PostgreSQL.
        assert first.terminate() == 0, first.log()
        assert not _postmaster_running(pgdata), "embedded PostgreSQL outlived `parley run`"
    finally:
        first.stop()

    second = ServerProcess(env, tmp_path, tmp_path / "second.log")
    try:
        second.start()
        await second.wait_ready()
        assert "wrote a new config" not in second.log()
        assert (data / "signing.key").read_text() == key
        status, body = await _login(second.url, "zoe", "zero config pw")
        assert status == 200, body
        assert body["user_id"] == "@zoe:localhost"
        assert second.terminate() == 0, second.log()
        assert not _postmaster_running(pgdata)
        assert json.loads((pgdata / ".handle_pids.json").read_text()) == []
    finally:
        second.stop()
