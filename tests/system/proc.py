"""Run the real `parley` command line as a child process, for the system tests.

Children get a clean environment (no PARLEY_* leaking in from the caller), write their output to a
log file (so a full pipe never blocks them) and are always killed by `stop()`/`kill()`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

START_TIMEOUT = 90.0  # seconds; an embedded PostgreSQL's first initdb takes a few


def child_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    env.update(overrides)
    return env


def parley(*args: str, env: dict[str, str], cwd: Path, timeout: float = 120.0
           ) -> subprocess.CompletedProcess[str]:
    """Run `python -m homeserver ARGS` to completion (bounded) and capture its output."""
    return subprocess.run([sys.executable, "-m", "homeserver", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, check=False)


def open_server_env(database_url: str, data_dir: Path, **overrides: str) -> dict[str, str]:
    """Environment for a server on its own database and a free port, open registration, no
    rate limits: what the system tests that start `parley run` have in common."""
    from tests.conftest import free_port

    env = {
        "PARLEY_DATABASE_URL": database_url,
        "PARLEY_LISTEN": f"127.0.0.1:{free_port()}",
        "PARLEY_DATA_DIR": str(data_dir),
        "PARLEY_REGISTRATION": "open",
        "PARLEY_RATE_LIMITS": "off",
        "PARLEY_LOG_LEVEL": "WARNING",
    }
    env.update(overrides)
    return child_env(**env)


class ServerProcess:
    """`python -m homeserver run` (or another `command`, e.g. an installed `parley run`) in the
    background."""

    def __init__(self, env: dict[str, str], cwd: Path, log: Path,
                 command: list[str] | None = None) -> None:
        self.env, self.cwd, self.log_path = env, cwd, log
        self.command = command or [sys.executable, "-m", "homeserver", "run"]
        self.proc: subprocess.Popen[bytes] | None = None
        host, _, port = env["PARLEY_LISTEN"].rpartition(":")
        self.url = f"http://{host}:{port}"

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command, env=self.env, cwd=self.cwd,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as s:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise AssertionError(
                        f"server exited with {self.proc.returncode}:\n{self.log()}")
                try:
                    async with s.get(self.url + "/_matrix/client/versions",
                                     timeout=aiohttp.ClientTimeout(total=2)) as resp:
                        if resp.status == 200:
                            return
                except (TimeoutError, aiohttp.ClientError):
                    pass
                await asyncio.sleep(0.2)
        raise AssertionError(f"server not ready after {timeout}s:\n{self.log()}")

    def kill(self) -> None:
        """SIGKILL, no chance to clean up (what a crash or the OOM killer does)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait for a clean exit; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(f"server ignored SIGTERM:\n{self.log()}") from None
        return self.proc.returncode

    def stop(self) -> None:
        """For finally blocks: make sure the child is gone, however the test ended."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.terminate(timeout=15)
        except AssertionError:
            pass
        finally:
            self.kill()
