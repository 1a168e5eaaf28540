"""Third-party identifiers through HTTP against real servers on loopback: e-mail validation
over SMTP, registration and login by e-mail, binding and unbinding at an identity server, the
deprecated and the UIA ways of adding a 3PID, the reCAPTCHA stage and CAS single sign-on.
A server with none of it configured offers none of it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from homeserver.config import CasConfig, EmailConfig, RecaptchaConfig
from tests.conftest import PgAdmin, Server, free_port, start_server
from tests.conftest import test_config as make_config
from tests.federation.pki import LocalCA
from tests.helpers import Client, User
from tests.identity_mocks import TOKEN, Services, SmtpSink, services, smtp_sink

LOOPBACK = ("127.0.0.0/8", "::1/128")


@dataclass
class World:
    c: Client
    server: Server
    svc: Services
    smtp: SmtpSink

    @property
    def id_server(self) -> str:
        return self.svc.identity.name


@pytest.fixture
async def world(pg_admin: PgAdmin, tmp_path_factory: pytest.TempPathFactory
                ) -> AsyncIterator[World]:
    tmp = tmp_path_factory.mktemp("ident")
    ca = LocalCA(tmp)
    cert = ca.issue("services")
    port = free_port()
    name = await pg_admin.create()
    try:
        async with smtp_sink() as smtp, services(cert, free_port()) as svc:
            cfg = make_config(tmp, listen_port=port, public_baseurl=f"http://127.0.0.1:{port}/",
                              federation_ca_file=ca.ca_file, outbound_allow=LOOPBACK)
            cfg = replace(
                cfg,
                email=EmailConfig(smtp_host="127.0.0.1", smtp_port=smtp.port,
                                  notif_from="hs@parley.test"),
                recaptcha=RecaptchaConfig(public_key="captcha-public",
                                          private_key="captcha-private",
                                          siteverify_url=svc.base + "/recaptcha/api/siteverify"),
                cas=CasConfig(server_url=svc.base + "/cas"))
            async for server in start_server(cfg, pg_admin.dsn_for(name)):
                svc.identity.hs_name = cfg.server_name
                svc.identity.hs_key = server.hs.key.verify_key_base64
                async with aiohttp.ClientSession() as http:
                    yield World(Client(server.url, http), server, svc, smtp)
    finally:
        await pg_admin.drop(name)


async def _validate_email(w: World, path: str, address: str, secret: str = "s3cret",
                          attempt: int = 1) -> str:
    """requestToken, then follow the link in the mail; the session id."""
    before = len(w.smtp.mails)
    status, body = await w.c.request("POST", path, {
        "client_secret": secret, "email": address, "send_attempt": attempt,
        "id_server": w.id_server, "id_access_token": TOKEN})
    assert status == 200, body
    mail = await w.smtp.wait(before + 1)
    assert mail.rcpt_to == f"<{address.lower()}>" and "hs@parley.test" in mail.mail_from
    link = mail.link()
    assert link.startswith(w.server.url + "/_matrix/client/")
    async with w.c.session.get(link) as resp:
        assert resp.status == 200
    return str(body["sid"])


async def test_nothing_unconfigured_is_offered(c: Client) -> None:
    status, body = await c.request("POST", "/register", {})
    assert status == 401
    assert body["flows"] == [{"stages": ["m.login.dummy"]}] and body["params"] == {}
    status, body = await c.request("GET", "/login")
    assert body == {"flows": [{"type": "m.login.password"},
                              {"type": "m.login.token", "get_login_token": True}]}
    status, body = await c.request("POST", "/register/email/requestToken", {
        "client_secret": "abc", "email": "a@b.c", "send_attempt": 1})
    assert (status, body["errcode"]) == (400, "M_THREEPID_MEDIUM_NOT_SUPPORTED")
    status, body = await c.request("GET", "/login/sso/redirect",
                                   params={"redirectUrl": "https://c"})
    assert status == 404
    status, body = await c.request("POST", "/login", {"type": "m.login.token", "token": "x"})
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")  # no such token
    status, body = await c.request("POST", "/register", {
        "auth": {"type": "m.login.recaptcha", "response": "human"}})
    assert status == 401 and body["errcode"] == "M_UNRECOGNIZED"
    user = await c.register()
    status, body = await c.request("GET", "/capabilities", token=user.access_token)
    assert body["capabilities"]["m.3pid_changes"] == {"enabled": False}


async def test_configured_flows(world: World) -> None:
    c = world.c
    status, body = await c.request("POST", "/register", {})
    assert status == 401
    assert body["flows"] == [{"stages": ["m.login.dummy"]},
                             {"stages": ["m.login.email.identity"]}]
    assert body["params"] == {"m.login.recaptcha": {"public_key": "captcha-public"}}
    status, body = await c.request("GET", "/login")
    assert body["flows"] == [{"type": "m.login.password"},
                             {"type": "m.login.token", "get_login_token": True},
                             {"type": "m.login.sso"}, {"type": "m.login.cas"}]
    user = await c.register()
    status, body = await c.request("GET", "/capabilities", token=user.access_token)
    assert body["capabilities"]["m.3pid_changes"] == {"enabled": True}


async def test_register_and_log_in_by_email(world: World) -> None:
    c = world.c
    status, first = await c.request("POST", "/register", {"username": "mailer",
                                                          "password": "pw-secret-1"})
    assert status == 401
    session = first["session"]
    # Not yet validated: the stage fails.
    status, body = await c.request("POST", "/register/email/requestToken", {
        "client_secret": "s3cret", "email": "Mail@Example.org", "send_attempt": 1})
    assert status == 200
    sid = body["sid"]
    status, body = await c.request("POST", "/register", {"auth": {
        "type": "m.login.email.identity", "session": session,
        "threepid_creds": {"sid": sid, "client_secret": "s3cret"}}})
    assert status == 401 and body["errcode"] == "M_FORBIDDEN"
    # The same send_attempt again: the same session, and no second mail.
    status, again = await c.request("POST", "/register/email/requestToken", {
        "client_secret": "s3cret", "email": "mail@example.org", "send_attempt": 1})
    assert (status, again["sid"]) == (200, sid)
    mail = await world.smtp.wait(1)
    assert len(world.smtp.mails) == 1
    # A wrong token validates nothing.
    token = parse_qs(urlsplit(mail.link()).query)["token"][0]
    status, body = await c.request("POST", "/_matrix/client/unstable/parley/email/submit_token",
                                   {"sid": sid, "client_secret": "s3cret", "token": "nope"})
    assert (status, body["errcode"]) == (400, "M_THREEPID_AUTH_FAILED")
    status, body = await c.request("POST", "/_matrix/client/unstable/parley/email/submit_token",
                                   {"sid": sid, "client_secret": "s3cret", "token": token})
    assert (status, body) == (200, {"success": True})
    # The wrong secret does not pass the stage even once validated.
    status, body = await c.request("POST", "/register", {"auth": {
        "type": "m.login.email.identity", "session": session,
        "threepid_creds": {"sid": sid, "client_secret": "other"}}})
    assert status == 401 and body["errcode"] == "M_FORBIDDEN"
    status, body = await c.request("POST", "/register", {"auth": {
        "type": "m.login.email.identity", "session": session,
        "threepid_creds": {"sid": sid, "client_secret": "s3cret"}}})
    assert status == 200, body
    user = User(body["user_id"], body["access_token"], body["device_id"])
    assert user.user_id == "@mailer:parley.test"
    status, body = await c.request("GET", "/account/3pid", token=user.access_token)
    assert [(t["medium"], t["address"]) for t in body["threepids"]] == [
        ("email", "mail@example.org")]
    # Login by the address: the identifier, and the old top-level fields.
    status, body = await c.request("POST", "/login", {
        "type": "m.login.password", "password": "pw-secret-1",
        "identifier": {"type": "m.id.thirdparty", "medium": "email",
                       "address": "MAIL@example.org"}})
    assert (status, body.get("user_id")) == (200, user.user_id)
    status, body = await c.request("POST", "/login", {
        "type": "m.login.password", "password": "pw-secret-1", "medium": "email",
        "address": "mail@example.org"})
    assert (status, body.get("user_id")) == (200, user.user_id)
    for ident in ({"type": "m.id.thirdparty", "medium": "email", "address": "x@example.org"},
                  {"type": "m.id.thirdparty", "medium": "email", "address": "not an email"}):
        status, body = await c.request("POST", "/login", {
            "type": "m.login.password", "password": "pw-secret-1", "identifier": ident})
        assert status in (400, 403) and body["errcode"] in ("M_FORBIDDEN", "M_INVALID_PARAM")
    status, body = await c.request("POST", "/login", {
        "type": "m.login.password", "password": "wrong", "medium": "email",
        "address": "mail@example.org"})
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    # The address is taken now; a password reset may use it, an unknown one may not.
    status, body = await c.request("POST", "/register/email/requestToken", {
        "client_secret": "s3cret2", "email": "mail@example.org", "send_attempt": 1})
    assert (status, body["errcode"]) == (400, "M_THREEPID_IN_USE")
    status, body = await c.request("POST", "/account/password/email/requestToken", {
        "client_secret": "s3cret2", "email": "mail@example.org", "send_attempt": 1})
    assert status == 200
    status, body = await c.request("POST", "/account/password/email/requestToken", {
        "client_secret": "s3cret2", "email": "nobody@example.org", "send_attempt": 1})
    assert (status, body["errcode"]) == (400, "M_THREEPID_NOT_FOUND")


@pytest.mark.parametrize("body, errcode", [
    ({"client_secret": "a b", "email": "a@b.c", "send_attempt": 1}, "M_INVALID_PARAM"),
    ({"client_secret": "abc", "email": "nope", "send_attempt": 1}, "M_INVALID_PARAM"),
    ({"client_secret": "abc", "email": "a@b.c", "send_attempt": "1"}, "M_INVALID_PARAM"),
    ({"client_secret": "abc", "email": "a@b.c"}, "M_INVALID_PARAM"),
    ({"client_secret": "abc", "email": "a@b.c", "send_attempt": 1, "next_link": "javascript:x"},
     "M_INVALID_PARAM"),
])
async def test_request_token_bad_input(world: World, body: dict[str, Any], errcode: str) -> None:
    status, answer = await world.c.request("POST", "/account/3pid/email/requestToken", body)
    assert (status, answer["errcode"]) == (400, errcode)
    assert world.smtp.mails == []


async def test_bind_unbind_delete_and_deactivate(world: World) -> None:
    c, ident = world.c, world.svc.identity
    user = await c.register(password="pw-secret-1")
    # Bind through the homeserver: the identity server validated the session.
    sid = ident.validate("email", "bob@example.org")
    status, body = await c.request("POST", "/account/3pid/bind", {
        "id_server": ident.name, "id_access_token": TOKEN, "sid": sid,
        "client_secret": "cs"}, token=user.access_token)
    assert status == 200, body
    assert ident.bindings[("email", "bob@example.org")] == user.user_id
    # /unbind without an id_server: the server it was bound at.
    status, body = await c.request("POST", "/_matrix/client/unstable/account/3pid/unbind", {
        "medium": "email", "address": "bob@example.org"}, token=user.access_token)
    assert (status, body) == (200, {"id_server_unbind_result": "success"})
    assert ("email", "bob@example.org") not in ident.bindings
    # Nothing known to unbind from: no-support.
    status, body = await c.request("POST", "/account/3pid/unbind", {
        "medium": "email", "address": "bob@example.org"}, token=user.access_token)
    assert (status, body) == (200, {"id_server_unbind_result": "no-support"})
    # Bound out of band: /delete naming the identity server unbinds there.
    ident.bindings[("email", "oob@example.org")] = user.user_id
    status, body = await c.request("POST", "/account/3pid/delete", {
        "medium": "email", "address": "oob@example.org", "id_server": ident.name},
        token=user.access_token)
    assert (status, body) == (200, {"id_server_unbind_result": "success"})
    assert ("email", "oob@example.org") not in ident.bindings
    # An identity server that does not know the binding: no-support, not an error.
    status, body = await c.request("POST", "/account/3pid/delete", {
        "medium": "email", "address": "never@example.org", "id_server": ident.name},
        token=user.access_token)
    assert (status, body) == (200, {"id_server_unbind_result": "no-support"})
    # A bad session at the identity server is its error, passed on as a 400.
    status, body = await c.request("POST", "/account/3pid/bind", {
        "id_server": ident.name, "id_access_token": TOKEN, "sid": "unknown",
        "client_secret": "cs"}, token=user.access_token)
    assert (status, body["errcode"]) == (400, "M_NO_VALID_SESSION")
    # Deactivation unbinds what was bound through the homeserver.
    sid = ident.validate("email", "deact@example.org")
    status, body = await c.request("POST", "/account/3pid/bind", {
        "id_server": ident.name, "id_access_token": TOKEN, "sid": sid,
        "client_secret": "cs"}, token=user.access_token)
    assert status == 200
    status, body = await c.request("POST", "/account/deactivate", {"auth": {
        "type": "m.login.password", "password": "pw-secret-1",
        "identifier": {"type": "m.id.user", "user": user.user_id}}}, token=user.access_token)
    assert (status, body) == (200, {"id_server_unbind_result": "success"})
    assert ("email", "deact@example.org") not in ident.bindings
    assert all(u["mxid"] == user.user_id for u in ident.unbinds)


@pytest.mark.parametrize("path, body", [
    ("/account/3pid/bind", {"id_access_token": TOKEN, "sid": "s", "client_secret": "c"}),
    ("/account/3pid/bind", {"id_server": "x.example", "sid": "s", "client_secret": "c"}),
    ("/account/3pid/bind", {"id_server": "x.example", "id_access_token": TOKEN,
                            "sid": "s s", "client_secret": "c"}),
    ("/account/3pid/bind", {"id_server": "not a server", "id_access_token": TOKEN,
                            "sid": "s", "client_secret": "c"}),
    ("/account/3pid/unbind", {"medium": "email"}),
    ("/account/3pid/unbind", {"medium": "carrier pigeon", "address": "roof"}),
    ("/account/3pid/delete", {"medium": "email", "address": "a@b.c", "id_server": 5}),
    ("/account/3pid", {"three_pid_creds": "no"}),
    ("/account/3pid", {"three_pid_creds": {"sid": "s", "client_secret": "c"}, "bind": "yes"}),
    ("/account/3pid/add", {"sid": "s"}),
])
async def test_account_3pid_bad_input(world: World, path: str, body: dict[str, Any]) -> None:
    user = await world.c.register()
    status, answer = await world.c.request("POST", path, body, token=user.access_token)
    assert status == 400, answer
    assert answer["errcode"].startswith("M_")


async def test_adding_3pids(world: World) -> None:
    c, ident = world.c, world.svc.identity
    user = await c.register(password="pw-secret-1")
    # The deprecated POST /account/3pid: a session validated at the identity server, bound.
    sid = ident.validate("email", "old@example.org")
    status, body = await c.request("POST", "/account/3pid", {
        "three_pid_creds": {"id_server": ident.name, "id_access_token": TOKEN, "sid": sid,
                            "client_secret": "cs"}, "bind": True}, token=user.access_token)
    assert status == 200, body
    assert ident.bindings[("email", "old@example.org")] == user.user_id
    # ... or one this server validated (the mail link), not bound.
    sid = await _validate_email(world, "/account/3pid/email/requestToken", "new@example.org")
    status, body = await c.request("POST", "/account/3pid", {
        "three_pid_creds": {"sid": sid, "client_secret": "s3cret"}}, token=user.access_token)
    assert status == 200, body
    # POST /account/3pid/add needs the password too.
    sid = await _validate_email(world, "/account/3pid/email/requestToken", "add@example.org",
                                secret="other")
    status, body = await c.request("POST", "/account/3pid/add", {
        "sid": sid, "client_secret": "other"}, token=user.access_token)
    assert status == 401
    assert body["flows"] == [{"stages": ["m.login.password"]}, {"stages": ["m.login.sso"]}]
    status, body = await c.request("POST", "/account/3pid/add", {
        "sid": sid, "client_secret": "other", "auth": {
            "type": "m.login.password", "password": "pw-secret-1", "session": body["session"],
            "identifier": {"type": "m.id.user", "user": user.user_id}}},
        token=user.access_token)
    assert status == 200, body
    status, body = await c.request("GET", "/account/3pid", token=user.access_token)
    assert sorted(t["address"] for t in body["threepids"]) == [
        "add@example.org", "new@example.org", "old@example.org"]
    # An unvalidated session adds nothing; another account cannot take a held address.
    status, body = await c.request("POST", "/account/3pid", {
        "three_pid_creds": {"sid": "unknown", "client_secret": "cs"}}, token=user.access_token)
    assert (status, body["errcode"]) == (400, "M_THREEPID_AUTH_FAILED")
    other = await c.register()
    sid = ident.validate("email", "old@example.org")
    status, body = await c.request("POST", "/account/3pid", {
        "three_pid_creds": {"id_server": ident.name, "id_access_token": TOKEN, "sid": sid,
                            "client_secret": "cs"}}, token=other.access_token)
    assert (status, body["errcode"]) == (400, "M_THREEPID_IN_USE")
    # Deleting takes it off the account; the address can then be registered again.
    status, body = await c.request("POST", "/account/3pid/delete", {
        "medium": "email", "address": "new@example.org"}, token=user.access_token)
    assert (status, body) == (200, {"id_server_unbind_result": "no-support"})
    status, body = await c.request("POST", "/register/email/requestToken", {
        "client_secret": "again", "email": "new@example.org", "send_attempt": 1})
    assert status == 200


async def test_recaptcha_stage(world: World) -> None:
    c = world.c
    status, body = await c.request("POST", "/register", {"username": "captcha", "auth": {
        "type": "m.login.recaptcha", "response": "robot"}})
    assert status == 401 and body["errcode"] == "M_FORBIDDEN" and body["completed"] == []
    status, body = await c.request("POST", "/register", {"username": "captcha", "auth": {
        "type": "m.login.recaptcha", "response": "human"}})
    # Verified and recorded, though no flow needs it: the flow still goes on.
    assert status == 401 and body["completed"] == ["m.login.recaptcha"]
    assert world.svc.captcha_requests[-1]["secret"] == "captcha-private"
    status, body = await c.request("POST", "/register", {"auth": {
        "type": "m.login.dummy", "session": body["session"]}})
    assert status == 200 and body["user_id"] == "@captcha:parley.test"


async def test_cas_single_sign_on(world: World) -> None:
    c, svc = world.c, world.svc
    redirect = "https://client.example/after?x=1"
    async with c.session.get(c.base + "/_matrix/client/v3/login/sso/redirect",
                             params={"redirectUrl": redirect}, allow_redirects=False) as resp:
        assert resp.status == 302
        location = resp.headers["Location"]
    assert location.startswith(svc.base + "/cas/login?service=")
    service = parse_qs(urlsplit(location).query)["service"][0]
    assert service.startswith(world.server.url + "/_matrix/client/r0/login/cas/ticket?")
    # CAS sends the browser back with a ticket.
    svc.cas_answers["ST-1"] = "Cas User!"
    async with c.session.get(service + "&ticket=ST-1") as resp:
        assert resp.status == 200
        page = await resp.text()
    assert svc.cas_requests[-1] == {"ticket": "ST-1", "service": service}
    href = page.split('href="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    assert href.startswith(redirect + "&loginToken=")
    token = parse_qs(urlsplit(href).query)["loginToken"][0]
    status, body = await c.request("POST", "/login", {"type": "m.login.token", "token": token})
    assert status == 200, body
    assert body["user_id"] == "@cas=20user=21:parley.test"
    # One use only.
    status, body = await c.request("POST", "/login", {"type": "m.login.token", "token": token})
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    # The same CAS user again: the same account.
    svc.cas_answers["ST-2"] = "Cas User!"
    async with c.session.get(service + "&ticket=ST-2") as resp:
        page = await resp.text()
    token = page.split("loginToken=", 1)[1].split('"', 1)[0]
    status, body = await c.request("POST", "/login", {"type": "m.login.token", "token": token})
    assert body["user_id"] == "@cas=20user=21:parley.test"
    # A ticket CAS does not confirm, and missing parameters.
    status, body = await c.request("GET", "/_matrix/client/r0/login/cas/ticket",
                                   params={"ticket": "forged", "redirectUrl": redirect})
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, body = await c.request("GET", "/_matrix/client/r0/login/cas/ticket",
                                   params={"redirectUrl": redirect})
    assert (status, body["errcode"]) == (400, "M_MISSING_PARAM")
    status, body = await c.request("GET", "/login/sso/redirect")
    assert (status, body["errcode"]) == (400, "M_MISSING_PARAM")
    status, body = await c.request("GET", "/login/sso/redirect/github",
                                   params={"redirectUrl": redirect})
    assert status == 404
    status, body = await c.request("POST", "/login", {"type": "m.login.token"})
    assert (status, body["errcode"]) == (400, "M_MISSING_PARAM")


async def _cas_login(w: World, cas_user: str, device_id: str | None = None) -> dict[str, Any]:
    ticket = "ST-" + cas_user
    w.svc.cas_answers[ticket] = cas_user
    status, page = await w.c.request("GET", "/_matrix/client/r0/login/cas/ticket", params={
        "ticket": ticket, "redirectUrl": "https://client.example/"})
    assert status == 200, page
    token = page.split("loginToken=", 1)[1].split('"', 1)[0]
    body: dict[str, Any] = {"type": "m.login.token", "token": token}
    if device_id:
        body["device_id"] = device_id
    status, answer = await w.c.request("POST", "/login", body)
    assert status == 200, answer
    return dict(answer)


async def test_single_sign_on_as_an_interactive_auth_stage(world: World) -> None:
    c, svc = world.c, world.svc
    user = await c.register(localpart="ssouser")
    await _cas_login(world, "ssouser", device_id="SSODEV")  # an existing account: linked

    async def start() -> str:
        status, body = await c.request("POST", "/delete_devices", {"devices": ["SSODEV"]},
                                       token=user.access_token)
        assert status == 401 and {"stages": ["m.login.sso"]} in body["flows"]
        return str(body["session"])

    # The fallback page sends the browser to CAS, which comes back with the session.
    session = await start()
    async with c.session.get(c.base + "/_matrix/client/v3/auth/m.login.sso/fallback/web",
                             params={"session": session}, allow_redirects=False) as resp:
        assert resp.status == 302
        service = parse_qs(urlsplit(resp.headers["Location"]).query)["service"][0]
    assert service.endswith("/login/cas/ticket?session=" + session)
    # Someone else signs in at CAS: the session is refused from then on.
    svc.cas_answers["ST-x"] = "somebody"
    async with c.session.get(service + "&ticket=ST-x") as resp:
        assert resp.status == 200
    status, body = await c.request("POST", "/delete_devices", {
        "devices": ["SSODEV"], "auth": {"session": session}}, token=user.access_token)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    # The right account: the stage completes and the request goes through.
    session = await start()
    svc.cas_answers["ST-y"] = "ssouser"
    async with c.session.get(c.base + "/_matrix/client/r0/login/cas/ticket",
                             params={"session": session, "ticket": "ST-y"}) as resp:
        assert resp.status == 200
    status, body = await c.request("POST", "/delete_devices", {
        "devices": ["SSODEV"], "auth": {"session": session}}, token=user.access_token)
    assert status == 200, body
    status, body = await c.request("GET", "/devices/SSODEV", token=user.access_token)
    assert status == 404


async def test_password_reset_by_email(world: World) -> None:
    c, ident = world.c, world.svc.identity
    user = await c.register(password="pw-secret-1")
    sid = ident.validate("email", "forgetful@example.org")
    status, _ = await c.request("POST", "/account/3pid", {"three_pid_creds": {
        "id_server": ident.name, "id_access_token": TOKEN, "sid": sid, "client_secret": "cs"}},
        token=user.access_token)
    assert status == 200
    # Without an access token, the e-mail stage is the way in.
    status, body = await c.request("POST", "/account/password", {"new_password": "pw-new-22"})
    assert status == 401 and body["flows"] == [{"stages": ["m.login.email.identity"]}]
    sid = await _validate_email(world, "/account/password/email/requestToken",
                                "forgetful@example.org", secret="reset")
    status, body = await c.request("POST", "/account/password", {
        "new_password": "pw-new-22", "auth": {
            "type": "m.login.email.identity",
            "threepid_creds": {"sid": sid, "client_secret": "wrong"}}})
    assert status == 401 and body["errcode"] == "M_FORBIDDEN"
    status, body = await c.request("POST", "/account/password", {
        "new_password": "pw-new-22", "auth": {
            "type": "m.login.email.identity",
            "threepid_creds": {"sid": sid, "client_secret": "reset"}}})
    assert status == 200, body
    status, body = await c.request("GET", "/account/whoami", token=user.access_token)
    assert status == 401  # the old sessions ended
    status, body = await c.request("POST", "/login", {
        "type": "m.login.password", "password": "pw-new-22", "medium": "email",
        "address": "forgetful@example.org"})
    assert (status, body.get("user_id")) == (200, user.user_id)


async def test_password_change_needs_a_token_without_email(c: Client) -> None:
    status, body = await c.request("POST", "/account/password", {"new_password": "pw-new-22"})
    assert (status, body["errcode"]) == (401, "M_MISSING_TOKEN")
