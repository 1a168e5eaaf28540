"""Synapse (the reference homeserver) as a federation peer for interop tests.

Synapse comes from PyPI into a venv of its own (`PARLEY_SYNAPSE_VENV`, else one made under the
system temp folder on first use and reused), runs with a TLS listener serving client and
federation on one port, a certificate from the test's local CA, SQLite, no key notaries, and an
IP blacklist that is Synapse's default minus loopback (its server name is an IP literal with a
port, to which it applies only that list).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.conftest import free_port
from tests.federation.pki import Cert

SYNAPSE_DEFAULT_BLACKLIST = [
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "192.0.0.0/24",
    "169.254.0.0/16", "192.88.99.0/24", "198.18.0.0/15", "192.0.2.0/24", "198.51.100.0/24",
    "203.0.113.0/24", "224.0.0.0/4", "fe80::/10", "fc00::/7", "2001:db8::/32", "ff00::/8",
    "fec0::/10",
]  # Synapse's default ip_range_blacklist without 127.0.0.0/8 and ::1


def synapse_python() -> Path:
    venv = Path(os.environ.get("PARLEY_SYNAPSE_VENV")
                or Path(tempfile.gettempdir()) / "parley-synapse-venv")
    py = venv / "bin" / "python"
    check = [str(py), "-c", "import synapse"]
    if py.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return py
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", "matrix-synapse"], check=True)
    return py


@dataclass
class Synapse:
    name: str
    url: str
    proc: subprocess.Popen[bytes]
    folder: Path

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> None:
        """Start it again on the same port, configuration and database (after `stop`)."""
        self.proc = _launch(self.folder)

    def log_tail(self) -> str:
        p = self.folder / "homeserver.log"
        return p.read_text()[-4000:] if p.exists() else ""


def start_synapse(folder: Path, cert: Cert, ca_file: Path,
                  database: dict[str, object] | None = None, presence: bool = False) -> Synapse:
    """`database`: Synapse's `database` setting (default SQLite in `folder`); `presence`
    turns Synapse's presence on (off by default, as it slows Synapse down)."""
    py = synapse_python()
    port = free_port()
    name = f"127.0.0.1:{port}"
    cfg_path = folder / "homeserver.yaml"
    subprocess.run([str(py), "-m", "synapse.app.homeserver", "--server-name", name,
                    "--config-path", str(cfg_path), "--generate-config", "--report-stats=no"],
                   cwd=folder, check=True, capture_output=True)
    cfg = yaml.safe_load(cfg_path.read_text())
    big = {"per_second": 1000000, "burst_count": 1000000}
    cfg.update({
        "listeners": [{"port": port, "bind_addresses": ["127.0.0.1"], "type": "http",
                       "tls": True, "x_forwarded": False,
                       "resources": [{"names": ["client", "federation"], "compress": False}]}],
        "tls_certificate_path": str(cert.cert),
        "tls_private_key_path": str(cert.key),
        "database": database or {"name": "sqlite3",
                                 "args": {"database": str(folder / "homeserver.db")}},
        "federation_verify_certificates": True,
        "federation_custom_ca_list": [str(ca_file)],
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "ip_range_blacklist": SYNAPSE_DEFAULT_BLACKLIST,
        "ip_range_whitelist": ["127.0.0.0/8", "::1/128"],
        "enable_registration": True,
        "enable_registration_without_verification": True,
        "bcrypt_rounds": 4,
        "report_stats": False,
        "enable_metrics": False,
        "presence": {"enabled": presence},
        "room_list_publication_rules": [{"action": "allow"}],
        "allow_public_rooms_over_federation": True,  # off by default in Synapse
        "url_preview_enabled": False,
        "rc_message": big, "rc_registration": big, "rc_login": {
            "address": big, "account": big, "failed_attempts": big},
        "rc_joins": {"local": big, "remote": big}, "rc_joins_per_room": big,
        "rc_invites": {"per_room": big, "per_user": big, "per_sender": big},
        "rc_federation": {"window_size": 1000, "sleep_limit": 1000000, "sleep_delay": 0,
                          "reject_limit": 1000000, "concurrent": 1000000},
        # Retry a server that was down within seconds (the default waits 10 minutes), so the
        # restart tests do not wait for it.
        "federation": {"destination_min_retry_interval": 500,
                       "destination_max_retry_interval": 2000},
    })
    log_cfg = folder / "log.config"
    log_cfg.write_text(yaml.safe_dump({
        "version": 1,
        "formatters": {"precise": {"format": "%(asctime)s %(name)s %(levelname)s %(message)s"}},
        "handlers": {"file": {"class": "logging.FileHandler", "formatter": "precise",
                              "filename": str(folder / "homeserver.log")}},
        "root": {"level": "INFO", "handlers": ["file"]},
        "disable_existing_loggers": False,
    }))
    cfg["log_config"] = str(log_cfg)
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return Synapse(name, f"https://{name}", _launch(folder), folder)


def _launch(folder: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([str(synapse_python()), "-m", "synapse.app.homeserver",
                             "--config-path", str(folder / "homeserver.yaml")], cwd=folder,
                            stdout=subprocess.DEVNULL,
                            stderr=open(folder / "stderr.log", "ab"))  # noqa: SIM115


def wait_until_up(s: Synapse, ca_file: Path, timeout: float = 90.0) -> None:
    import ssl
    import urllib.request

    ctx = ssl.create_default_context(cafile=str(ca_file))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if s.proc.poll() is not None:
            raise RuntimeError("Synapse exited: " + (s.folder / "stderr.log").read_text()[-3000:])
        try:
            with urllib.request.urlopen(s.url + "/_matrix/client/versions", context=ctx,
                                        timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("Synapse did not start in time")
