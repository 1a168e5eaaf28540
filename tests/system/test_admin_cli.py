"""`parley admin ...` run as a real child process against a real database: create and reset
users, make and revoke admins, lock, registration tokens; checked in the database and over
HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg

from tests.system.proc import child_env, parley


async def test_admin_cli(fresh_database: str, tmp_path: Path) -> None:
    env = child_env(PARLEY_DATABASE_URL=fresh_database, PARLEY_DATA_DIR=str(tmp_path / "data"),
                    PARLEY_SERVER_NAME="cli.test", PARLEY_LOG_LEVEL="WARNING")

    def run(*args: str) -> str:
        out = parley("admin", *args, env=env, cwd=tmp_path)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    assert "created @ops:cli.test" in run("create-user", "--user", "ops", "--password",
                                          "first-pass-1")
    conn = await asyncpg.connect(fresh_database)
    try:
        async def flag(column: str) -> bool:
            return bool(await conn.fetchval(f"SELECT {column} FROM users WHERE user_id = $1",
                                            "@ops:cli.test"))

        assert not await flag("is_admin")
        run("make-admin", "--user", "ops")
        assert await flag("is_admin")
        run("revoke-admin", "--user", "@ops:cli.test")
        assert not await flag("is_admin")
        run("lock", "--user", "ops")
        assert await flag("locked")
        run("unlock", "--user", "ops")
        assert not await flag("locked")
        before = await conn.fetchval("SELECT password_hash FROM users WHERE user_id = $1",
                                     "@ops:cli.test")
        run("reset-password", "--user", "ops", "--password", "second-pass-2")
        after = await conn.fetchval("SELECT password_hash FROM users WHERE user_id = $1",
                                    "@ops:cli.test")
        assert before != after

        made = json.loads(run("create-token", "--uses", "3", "--token", "invite-1"))
        assert made["token"] == "invite-1" and made["uses_allowed"] == 3
        random = json.loads(run("create-token", "--length", "24", "--expires-in-days", "2"))
        assert len(random["token"]) == 24 and random["expiry_time"] > 0
        listed = [json.loads(line) for line in run("list-tokens").splitlines()]
        assert {t["token"] for t in listed} == {"invite-1", random["token"]}
        run("delete-token", "invite-1")
        listed = [json.loads(line) for line in run("list-tokens").splitlines()]
        assert [t["token"] for t in listed] == [random["token"]]
    finally:
        await conn.close()

    missing = parley("admin", "make-admin", "--user", "nobody", env=env, cwd=tmp_path)
    assert missing.returncode == 1 and "M_NOT_FOUND" in missing.stderr
    assert "Traceback" not in missing.stderr
    # `--token=VALUE`: a generated token may begin with "-", which as a separate argument
    # would read as an option.
    taken = parley("admin", "create-token", f"--token={random['token']}", env=env, cwd=tmp_path)
    assert taken.returncode == 1 and "M_INVALID_PARAM" in taken.stderr
