"""TLS contexts: the federation listener's (certificate and key from config) and the one
outbound requests verify servers with (the system store plus an optional extra CA file).

There is deliberately no way to switch verification off: tests make a local CA and pass it as
the extra CA file, as an operator with a private CA would.
"""

from __future__ import annotations

import ssl
from pathlib import Path


def server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """No SNI is required: Synapse sends none to an IP-literal server name."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert_file), str(key_file))
    return ctx


def client_context(extra_ca_file: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if extra_ca_file is not None:
        ctx.load_verify_locations(cafile=str(extra_ca_file))
    return ctx
