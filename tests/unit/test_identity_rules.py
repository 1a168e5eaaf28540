"""The pure parts of third-party identifiers, identity servers and CAS: lookup hashes, names
and secrets, CAS answers and user name mapping, third-party invite signatures, and the
configuration of e-mail, reCAPTCHA and CAS."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from signedjson.key import encode_verify_key_base64, generate_signing_key, get_verify_key
from signedjson.sign import sign_json

from homeserver.config import ConfigError, load_config
from homeserver.errors import MatrixError
from homeserver.events.checks import signing_servers
from homeserver.events.room_versions import ROOM_VERSIONS
from homeserver.identity import cas
from homeserver.identity.client import identity_server_base, lookup_hash
from homeserver.identity.invites import check_invite_params, invite_keys, signing_key
from homeserver.identity.threepids import canonical_address, canonical_email, check_client_secret


# The examples of the identity service API ("Client behaviour" of hashed lookups).
@pytest.mark.parametrize("address, medium, pepper, expected", [
    ("alice@example.com", "email", "matrixrocks", "4kenr7N9drpCJ4AfalmlGQVsOn3o2RHjkADUpXJWZUc"),
    ("bob@example.com", "email", "matrixrocks", "LJwSazmv46n0hlMlsb_iYxI0_HXEqy_yj6Jm636cdT8"),
    ("18005552067", "msisdn", "matrixrocks", "nlo35_T5fzSGZzJApqu8lgIudJvmOQtDaHtr-I4rU7I"),
])
def test_lookup_hash_matches_the_spec(address: str, medium: str, pepper: str,
                                      expected: str) -> None:
    assert lookup_hash(address, medium, pepper) == expected


@pytest.mark.parametrize("id_server, base", [
    ("id.example.org", "https://id.example.org"),
    ("localhost:8090", "https://localhost:8090"),
    ("[::1]:8090", "https://[::1]:8090"),
    ("https://id.example.org", "https://id.example.org"),
    ("bad name", None),
    ("id.example.org/path", None),
    ("", None),
])
def test_identity_server_names(id_server: str, base: str | None) -> None:
    if base is None:
        with pytest.raises(MatrixError) as e:
            identity_server_base(id_server)
        assert e.value.status == 400
    else:
        assert identity_server_base(id_server) == base


@pytest.mark.parametrize("secret, ok", [
    ("abc", True), ("Az.=_-09", True), ("x" * 255, True), ("x" * 256, False), ("", False),
    ("a b", False), ("a/b", False), ("é", False), (5, False), (None, False),
])
def test_client_secrets(secret: object, ok: bool) -> None:
    if ok:
        assert check_client_secret(secret) == secret
    else:
        with pytest.raises(MatrixError) as e:
            check_client_secret(secret)
        assert e.value.errcode == "M_INVALID_PARAM"


@pytest.mark.parametrize("value, canonical", [
    ("Bob@Example.COM", "bob@example.com"),
    ("  bob@example.com ", "bob@example.com"),
    ("bob", None), ("bob@", None), ("@example.com", None), ("a@b@c", None),
    ("bo b@example.com", None), (None, None), (42, None),
])
def test_email_addresses(value: object, canonical: str | None) -> None:
    if canonical is None:
        with pytest.raises(MatrixError):
            canonical_email(value)
    else:
        assert canonical_email(value) == canonical


@pytest.mark.parametrize("medium, address, result", [
    ("email", "A@B.c", ("email", "a@b.c")),
    ("msisdn", "447700900000", ("msisdn", "447700900000")),
    ("msisdn", "+44 7700", None),
    ("fax", "123", None),
    (None, "a@b.c", None),
    ("email", None, None),
])
def test_media(medium: object, address: object, result: tuple[str, str] | None) -> None:
    if result is None:
        with pytest.raises(MatrixError):
            canonical_address(medium, address)
    else:
        assert canonical_address(medium, address) == result


@pytest.mark.parametrize("body, problem", [
    ({"id_server": "id.example", "id_access_token": "t", "medium": "email",
      "address": "a@b.c"}, None),
    ({"id_access_token": "t", "medium": "email", "address": "a@b.c"}, "M_MISSING_PARAM"),
    ({"id_server": "id.example", "medium": "email", "address": "a@b.c"}, "M_MISSING_PARAM"),
    ({"id_server": "not a host", "id_access_token": "t", "medium": "email",
      "address": "a@b.c"}, "M_INVALID_PARAM"),
    ({"id_server": "id.example", "id_access_token": "t", "medium": "email",
      "address": "nope"}, "M_INVALID_PARAM"),
    ("a string", "M_BAD_JSON"),
])
def test_third_party_invite_parameters(body: object, problem: str | None) -> None:
    if problem is None:
        assert check_invite_params(body) == ("id.example", "t", "email", "a@b.c")
    else:
        with pytest.raises(MatrixError) as e:
            check_invite_params(body)
        assert e.value.errcode == problem


# ---------------------------------------------------------------------- CAS

@pytest.mark.parametrize("username, localpart", [
    ("cas_user!", "cas_user=21"),  # SyTest's CAS user, as Synapse maps it
    ("Bob", "bob"),
    ("_hidden", "=5fhidden"),
    ("a=b", "a=3db"),
    ("jo smith", "jo=20smith"),
    ("zoë", "zo=c3=ab"),
    ("x/y.z-1", "x/y.z-1"),
])
def test_cas_user_names_map_to_localparts(username: str, localpart: str) -> None:
    assert cas.localpart_for(username) == localpart


def test_cas_urls() -> None:
    service = cas.service_url("https://hs.example/", "https://client?p=http%3A%2F%2Fserver")
    # As SyTest (and CAS, which compares it exactly) expect it: the redirect URL escaped whole.
    assert service == ("https://hs.example/_matrix/client/r0/login/cas/ticket?redirectUrl="
                       "https%3A%2F%2Fclient%3Fp%3Dhttp%253A%252F%252Fserver")
    assert cas.login_url("https://cas.example/cas", service) == (
        "https://cas.example/cas/login?service=" + service.replace("%", "%25")
        .replace(":", "%3A").replace("/", "%2F").replace("?", "%3F").replace("=", "%3D"))
    assert cas.validate_url("https://cas.example/cas/", "T-1", "https://s") == (
        "https://cas.example/cas/proxyValidate?ticket=T-1&service=https%3A%2F%2Fs")


SUCCESS = """<cas:serviceResponse xmlns:cas='http://www.yale.edu/tp/cas'>
  <cas:authenticationSuccess>
    <cas:user> cas_user! </cas:user>
    <cas:attributes><cas:displayName>Cas User</cas:displayName></cas:attributes>
  </cas:authenticationSuccess>
</cas:serviceResponse>"""


@pytest.mark.parametrize("xml, result", [
    (SUCCESS, ("cas_user!", {"displayName": "Cas User"})),
    ("""<cas:serviceResponse xmlns:cas='http://www.yale.edu/tp/cas'>
        <cas:authenticationFailure code="INVALID_TICKET">no</cas:authenticationFailure>
        </cas:serviceResponse>""", None),
    ("""<cas:serviceResponse xmlns:cas='http://www.yale.edu/tp/cas'>
        <cas:authenticationSuccess><cas:user> </cas:user></cas:authenticationSuccess>
        </cas:serviceResponse>""", None),
    ("""<serviceResponse><authenticationSuccess><user>x</user></authenticationSuccess>
        </serviceResponse>""", None),  # not in the CAS namespace
    ("not xml at all", None),
    ("", None),
])
def test_cas_validation_answers(xml: str, result: object) -> None:
    assert cas.parse_validation(xml) == result


# ---------------------------------------------------------------------- invite signatures

def test_third_party_invite_signatures() -> None:
    key, other = generate_signing_key("0"), generate_signing_key("0")
    public = encode_verify_key_base64(get_verify_key(key))
    content = {"display_name": "B", "public_key": public, "key_validity_url": "https://i/v",
               "public_keys": [{"public_key": public, "key_validity_url": "https://i/v"},
                               {"public_key": "ZZZZ", "key_validity_url": "https://i/w"}]}
    assert invite_keys(content) == [(public, "https://i/v"), ("ZZZZ", "https://i/w")]
    signed = sign_json({"mxid": "@b:hs", "token": "t"}, "id.example", key)
    assert signing_key(content, signed) == (public, "https://i/v")
    wrong = sign_json({"mxid": "@b:hs", "token": "t"}, "id.example", other)
    assert signing_key(content, wrong) is None
    assert signing_key(content, {"mxid": "@b:hs", "token": "t"}) is None
    tampered = dict(signed, mxid="@mallory:hs")
    assert signing_key(content, tampered) is None


# ---------------------------------------------------------------------- configuration

def test_identity_configuration_from_file_and_environment(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "server_name: hs.example\n"
        "email: {smtp_host: mail.example, smtp_port: 2525, from: hs@hs.example}\n"
        "recaptcha: {public_key: pub, private_key: priv}\n"
        "cas: {server_url: 'https://cas.example/cas/'}\n")
    cfg = load_config(path, {})
    assert (cfg.email.smtp_host, cfg.email.smtp_port, cfg.email.notif_from) == (
        "mail.example", 2525, "hs@hs.example")
    assert cfg.email.enabled and cfg.recaptcha.enabled and not cfg.recaptcha.required
    assert cfg.cas.server_url == "https://cas.example/cas"
    env = {"PARLEY_SMTP_HOST": "localhost", "PARLEY_SMTP_PORT": "58051",
           "PARLEY_EMAIL_FROM": "p@localhost", "PARLEY_RECAPTCHA_REQUIRED": "1",
           "PARLEY_RECAPTCHA_SITEVERIFY_URL": "https://localhost:1/v",
           "PARLEY_CAS_SERVER_URL": "https://localhost:2/cas",
           "PARLEY_PUBLIC_BASEURL": "https://localhost:3/"}
    cfg = load_config(path, env)
    assert (cfg.email.smtp_host, cfg.email.smtp_port) == ("localhost", 58051)
    assert cfg.recaptcha.required and cfg.recaptcha.siteverify_url == "https://localhost:1/v"
    assert cfg.cas.server_url == "https://localhost:2/cas"
    assert cfg.base_url == "https://localhost:3/"
    # Nothing configured: nothing offered.
    bare = load_config(None, {})
    assert not bare.email.enabled and not bare.recaptcha.enabled and not bare.cas.enabled


@pytest.mark.parametrize("yaml_text, env", [
    ("email: {smtp_host: m}\n", {}),  # no from address
    ("email: {smtp_host: m, from: a@b, smtp_port: 0}\n", {}),
    ("email: {smtp_host: m, from: a@b, bogus: 1}\n", {}),
    ("recaptcha: {required: true}\n", {}),  # required without keys
    ("cas: {server_url: 'cas.example'}\n", {}),  # not a URL
    ("email: []\n", {}),
    ("", {"PARLEY_IDENTITY_CA_FILE": "/nonexistent/ca.pem"}),
])
def test_bad_identity_configuration(tmp_path: Path, yaml_text: str, env: dict[str, str]) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("server_name: hs.example\n" + yaml_text)
    with pytest.raises(ConfigError):
        load_config(path, env)


# ---------------------------------------------------------------------- who signs a redeemed invite

def _member(content: dict[str, Any], signatures: dict[str, Any]) -> dict[str, Any]:
    return {"type": "m.room.member", "sender": "@inviter:a.example", "state_key": "@bob:b.example",
            "content": content, "signatures": signatures}


TPI = {"membership": "invite", "third_party_invite": {
    "display_name": "b", "signed": {"mxid": "@bob:b.example", "token": "t"}}}


@pytest.mark.parametrize("pdu, servers", [
    # An ordinary invite: the sender's server, whoever else signed.
    (_member({"membership": "invite"}, {"b.example": {}}), {"a.example"}),
    # A redeemed third-party invite made by the inviter's server (exchange_third_party_invite).
    (_member(TPI, {"a.example": {}, "b.example": {}}), {"a.example"}),
    # ... or by the invitee's server, which the spec allows to send it.
    (_member(TPI, {"b.example": {}}), {"b.example"}),
    # Not an invite, or no signed block: the sender's server.
    (_member({**TPI, "membership": "join"}, {"b.example": {}}), {"a.example"}),
    (_member({"membership": "invite", "third_party_invite": {}}, {"b.example": {}}),
     {"a.example"}),
])
def test_servers_that_must_sign(pdu: dict[str, Any], servers: set[str]) -> None:
    assert signing_servers(ROOM_VERSIONS["10"], pdu, "$x") == servers
