"""Real servers on loopback for the identity tests: a small identity server (the v2 API parts a
homeserver calls, over TLS from the test CA), a CAS server and a reCAPTCHA siteverify on one
TLS app, and an SMTP sink (Python's smtpd is gone and aiosmtpd is not installed: the few
commands a client sends are answered here)."""

from __future__ import annotations

import asyncio
import email
import re
import secrets
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

import aiohttp
from aiohttp import web
from signedjson.key import encode_verify_key_base64, generate_signing_key, get_verify_key
from signedjson.sign import sign_json

from federation.xmatrix import parse_header, request_json
from homeserver.identity.client import lookup_hash
from homeserver.signing import verify_signed_json
from tests.federation.pki import Cert

TOKEN = "is-access-token"
PEPPER = "matrixrocks"


@dataclass
class Mail:
    mail_from: str
    rcpt_to: str
    message: Message

    @property
    def text(self) -> str:
        part = self.message.get_payload(decode=True)
        return part.decode() if isinstance(part, bytes) else str(part)

    def link(self) -> str:
        found = re.search(r"(https?://\S+)", self.text)
        assert found, self.text
        return found.group(1)


class SmtpSink:
    """HELO/EHLO, MAIL, RCPT, DATA, RSET, NOOP and QUIT; every message is kept."""

    def __init__(self) -> None:
        self.mails: list[Mail] = []
        self.arrived = asyncio.Event()
        self.port = 0

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def reply(line: str) -> None:
            writer.write(line.encode() + b"\r\n")
            await writer.drain()

        await reply("220 sink ready")
        mail_from = rcpt = ""
        try:
            while line := (await reader.readline()).decode().rstrip("\r\n"):
                verb = line.split(" ", 1)[0].upper()
                if verb in ("HELO", "EHLO"):
                    await reply("250 sink")
                elif verb == "MAIL":
                    mail_from = line.split(":", 1)[1].strip()
                    await reply("250 ok")
                elif verb == "RCPT":
                    rcpt = line.split(":", 1)[1].strip()
                    await reply("250 ok")
                elif verb == "DATA":
                    await reply("354 go on")
                    data = await reader.readuntil(b"\r\n.\r\n")
                    self.mails.append(Mail(mail_from, rcpt,
                                           email.message_from_bytes(data[:-5])))
                    self.arrived.set()
                    await reply("250 kept")
                elif verb in ("RSET", "NOOP"):
                    await reply("250 ok")
                elif verb == "QUIT":
                    await reply("221 bye")
                    break
                else:
                    await reply("500 unknown command")
        finally:
            writer.close()

    async def wait(self, count: int, timeout: float = 5.0) -> Mail:
        async with asyncio.timeout(timeout):
            while len(self.mails) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.mails[count - 1]


@asynccontextmanager
async def smtp_sink() -> AsyncIterator[SmtpSink]:
    sink = SmtpSink()
    server = await asyncio.start_server(sink._client, "127.0.0.1", 0)
    sink.port = server.sockets[0].getsockname()[1]
    try:
        yield sink
    finally:
        server.close()
        await server.wait_closed()


@dataclass
class IdentityServer:
    """An identity server's state: validated sessions, bindings, stored invites, keys."""

    name: str = ""
    hs_key: str = ""  # the homeserver's verify key, to check signed unbind requests
    hs_name: str = ""
    sessions: dict[str, tuple[str, str]] = field(default_factory=dict)
    bindings: dict[tuple[str, str], str] = field(default_factory=dict)
    invites: list[dict[str, Any]] = field(default_factory=list)
    unbinds: list[dict[str, Any]] = field(default_factory=list)
    revoked: set[str] = field(default_factory=set)
    key: Any = field(default_factory=lambda: generate_signing_key("0"))

    @property
    def public_key(self) -> str:
        return encode_verify_key_base64(get_verify_key(self.key))

    def validate(self, medium: str, address: str) -> str:
        sid = "sid" + secrets.token_hex(4)
        self.sessions[sid] = (medium, address)
        return sid

    def sign(self, obj: dict[str, Any], key: Any = None) -> dict[str, Any]:
        return sign_json(obj, self.name, key or self.key)

    def onbind_body(self, medium: str, address: str, mxid: str,
                    key: Any = None) -> dict[str, Any]:
        """What the identity server POSTs to /3pid/onbind once the address is bound."""
        self.bindings[(medium, address)] = mxid
        invites = []
        for inv in self.invites:
            if (inv["medium"], inv["address"]) == (medium, address):
                invites.append({**inv, "mxid": mxid, "signed": self.sign(
                    {"mxid": mxid, "token": inv["token"]}, key)})
        return self.sign({"medium": medium, "address": address, "mxid": mxid,
                          "invites": invites})

    def routes(self) -> web.RouteTableDef:
        r = web.RouteTableDef()
        v2 = "/_matrix/identity/v2"

        def authorised(request: web.Request) -> bool:
            return request.headers.get("Authorization") == f"Bearer {TOKEN}"

        def refuse() -> web.Response:
            return web.json_response({"errcode": "M_UNAUTHORIZED", "error": "token"},
                                     status=401)

        @r.get(v2 + "/hash_details")
        async def hash_details(request: web.Request) -> web.Response:
            if not authorised(request):
                return refuse()
            return web.json_response({"lookup_pepper": PEPPER, "algorithms": ["none", "sha256"]})

        @r.post(v2 + "/lookup")
        async def lookup(request: web.Request) -> web.Response:
            if not authorised(request):
                return refuse()
            body = await request.json()
            if body["algorithm"] == "sha256" and body["pepper"] != PEPPER:
                return web.json_response({"errcode": "M_INVALID_PEPPER"}, status=400)
            table = {(lookup_hash(a, m, PEPPER) if body["algorithm"] == "sha256"
                      else f"{a} {m}"): mxid for (m, a), mxid in self.bindings.items()}
            return web.json_response({"mappings": {k: table[k] for k in body["addresses"]
                                                   if k in table}})

        @r.post(v2 + "/store-invite")
        async def store_invite(request: web.Request) -> web.Response:
            if not authorised(request):
                return refuse()
            body = await request.json()
            token = "tok" + secrets.token_hex(4)
            self.invites.append({"medium": body["medium"], "address": body["address"],
                                 "room_id": body["room_id"], "sender": body["sender"],
                                 "token": token, "params": body})
            url = f"https://{self.name}{v2}/pubkey/isvalid"
            return web.json_response({"token": token, "display_name": "B...@example.org",
                                      "public_keys": [{"public_key": self.public_key,
                                                       "key_validity_url": url}]})

        @r.get(v2 + "/pubkey/isvalid")
        async def isvalid(request: web.Request) -> web.Response:
            key = request.query.get("public_key", "")
            return web.json_response({"valid": key == self.public_key
                                      and key not in self.revoked})

        @r.get(v2 + "/3pid/getValidated3pid")
        async def validated(request: web.Request) -> web.Response:
            if not authorised(request):
                return refuse()
            found = self.sessions.get(request.query.get("sid", ""))
            if found is None:
                return web.json_response({"errcode": "M_NO_VALID_SESSION"}, status=400)
            return web.json_response({"medium": found[0], "address": found[1],
                                      "validated_at": 1})

        @r.post(v2 + "/3pid/bind")
        async def bind(request: web.Request) -> web.Response:
            if not authorised(request):
                return refuse()
            body = await request.json()
            found = self.sessions.get(body["sid"])
            if found is None:
                return web.json_response({"errcode": "M_NO_VALID_SESSION"}, status=400)
            self.bindings[found] = body["mxid"]
            return web.json_response(self.sign({
                "medium": found[0], "address": found[1], "mxid": body["mxid"],
                "not_before": 0, "not_after": 2**40, "ts": 0}))

        @r.post(v2 + "/3pid/unbind")
        async def unbind(request: web.Request) -> web.Response:
            body = await request.json()
            # The homeserver signs its own unbind requests (X-Matrix), as the spec asks.
            auth = parse_header(request.headers["Authorization"])
            signed = request_json("POST", request.path_qs, auth.origin, auth.destination or "",
                                  body)
            signed["signatures"] = {auth.origin: {auth.key_id: auth.sig}}
            verify_signed_json(signed, self.hs_name, auth.key_id, self.hs_key)
            self.unbinds.append(body)
            key = (body["threepid"]["medium"], body["threepid"]["address"])
            if self.bindings.get(key) != body["mxid"]:
                return web.json_response({"errcode": "M_NOT_FOUND"}, status=404)
            del self.bindings[key]
            return web.json_response({})

        return r


@dataclass
class Services:
    """The TLS app: identity server, CAS and reCAPTCHA."""

    port: int
    identity: IdentityServer
    cas_answers: dict[str, str] = field(default_factory=dict)  # ticket -> user
    cas_requests: list[dict[str, str]] = field(default_factory=list)
    captcha_requests: list[dict[str, str]] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"https://localhost:{self.port}"


@asynccontextmanager
async def services(cert: Cert, port: int) -> AsyncIterator[Services]:
    ident = IdentityServer(name=f"localhost:{port}")
    svc = Services(port, ident)
    app = web.Application()
    app.add_routes(ident.routes())

    async def proxy_validate(request: web.Request) -> web.Response:
        svc.cas_requests.append(dict(request.query))
        user = svc.cas_answers.get(request.query.get("ticket", ""))
        ns = "xmlns:cas='http://www.yale.edu/tp/cas'"
        if user is None:
            return web.Response(text=f"<cas:serviceResponse {ns}><cas:authenticationFailure "
                                "code='INVALID_TICKET'/></cas:serviceResponse>")
        return web.Response(text=f"<cas:serviceResponse {ns}><cas:authenticationSuccess>"
                            f"<cas:user>{user}</cas:user></cas:authenticationSuccess>"
                            "</cas:serviceResponse>")

    async def siteverify(request: web.Request) -> web.Response:
        form = dict(await request.post())
        svc.captcha_requests.append({k: str(v) for k, v in form.items()})
        ok = form.get("secret") == "captcha-private" and form.get("response") == "human"
        return web.json_response({"success": ok})

    app.router.add_get("/cas/proxyValidate", proxy_validate)
    app.router.add_post("/recaptcha/api/siteverify", siteverify)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert.cert, cert.key)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=tls).start()
    try:
        yield svc
    finally:
        await runner.cleanup()


def client_tls(ca_file: Any) -> aiohttp.TCPConnector:
    return aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=str(ca_file)))
