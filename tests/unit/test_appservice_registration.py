"""Registration files (homeserver/appservice/registration.py) and the exclusivity rules of the
registry, table by table; and that a bad file stops the server from loading its config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from homeserver.appservice.registration import (
    RegistrationError,
    check_unique,
    load_registrations,
    parse_registration,
)
from homeserver.appservice.registry import AppServiceRegistry
from homeserver.appservice.service import split_instance_id
from homeserver.config import ConfigError, load_config
from homeserver.errors import MatrixError

HS = "example.org"


def reg(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "irc", "url": "http://127.0.0.1:9000", "as_token": "at", "hs_token": "ht",
        "sender_localpart": "_irc_bot",
        "namespaces": {"users": [{"regex": "@_irc_.*", "exclusive": True}],
                       "aliases": [{"regex": "#_irc_.*", "exclusive": False}],
                       "rooms": []}}
    base.update(over)
    return {k: v for k, v in base.items() if v is not ...}


def test_a_valid_registration() -> None:
    s = parse_registration(reg(protocols=["irc"], rate_limited=False), HS)
    assert (s.id, s.url, s.sender, s.protocols, s.rate_limited) == (
        "irc", "http://127.0.0.1:9000", "@_irc_bot:example.org", ("irc",), False)
    assert s.is_interested_in_user("@_irc_alice:example.org")
    assert s.is_exclusive_user("@_irc_alice:example.org")
    assert s.is_interested_in_user("@_irc_bot:example.org")  # the sender
    assert not s.is_interested_in_user("@_irc_alice:elsewhere.org")  # local users only
    assert not s.is_interested_in_user("@bob:example.org")
    assert s.is_interested_in_alias("#_irc_chan:example.org")
    assert not s.is_exclusive_alias("#_irc_chan:example.org")
    # Whole-string match: a regex for a prefix does not claim longer ids it did not mean.
    t = parse_registration(reg(namespaces={"users": [{"regex": "@_irc_[a-z]+:example\\.org",
                                                       "exclusive": True}]}), HS)
    assert t.is_interested_in_user("@_irc_ab:example.org")
    assert not t.is_interested_in_user("@_irc_ab:example.org.evil")


def test_url_may_be_null_and_unknown_keys_are_ignored() -> None:
    s = parse_registration(reg(url=None, **{"org.matrix.msc3202": True}), HS)
    assert s.url is None


@pytest.mark.parametrize(("data", "message"), [
    ("just a string", "top level"),
    (reg(id=...), "id must be"),
    (reg(id=""), "id must be"),
    (reg(as_token=5), "as_token must be"),
    (reg(hs_token=...), "hs_token must be"),
    (reg(hs_token="at"), "must differ"),
    (reg(url=...), "url is required"),
    (reg(url="ftp://x"), "http:// or https://"),
    (reg(url="http://"), "http:// or https://"),
    (reg(url=7), "string or null"),
    (reg(sender_localpart="Bad Name"), "sender_localpart"),
    (reg(sender_localpart=...), "sender_localpart"),
    (reg(namespaces=...), "namespaces must be"),
    (reg(namespaces=[]), "namespaces must be"),
    (reg(namespaces={"people": []}), "unknown namespace"),
    (reg(namespaces={"users": {"regex": "x"}}), "must be a list"),
    (reg(namespaces={"users": ["@x"]}), "must be a mapping"),
    (reg(namespaces={"users": [{"regex": "@x"}]}), "exclusive must be"),
    (reg(namespaces={"users": [{"regex": "", "exclusive": True}]}), "regex must be"),
    (reg(namespaces={"users": [{"regex": "@(", "exclusive": True}]}), "not a valid regex"),
    (reg(rate_limited="no"), "rate_limited"),
    (reg(protocols="irc"), "protocols"),
    (reg(protocols=[""]), "protocols"),
    (reg(receive_ephemeral="yes"), "receive_ephemeral"),
    (reg(**{"org.matrix.msc3202": "yes"}), "org.matrix.msc3202"),
])
def test_bad_registrations(data: Any, message: str) -> None:
    with pytest.raises(RegistrationError, match=message):
        parse_registration(data, HS, "irc.yaml")


def test_msc3202_and_unstable_ephemeral_flags() -> None:
    on = parse_registration(reg(**{"org.matrix.msc3202": True,
                                   "de.sorunome.msc2409.push_ephemeral": True}), HS)
    assert on.msc3202 and on.receive_ephemeral
    off = parse_registration(reg(), HS)
    assert not off.msc3202 and not off.receive_ephemeral


@pytest.mark.parametrize(("second", "message"), [
    ({"id": "irc"}, "same id"),
    ({"as_token": "at"}, "same as_token"),
    ({"sender_localpart": "_irc_bot"}, "same sender_localpart"),
    ({"hs_token": "at"}, "another's as_token"),
])
def test_registrations_must_not_share_ids_or_tokens(second: dict[str, Any],
                                                    message: str) -> None:
    other = {"id": "slack", "as_token": "at2", "hs_token": "ht2",
             "sender_localpart": "_slack_bot"}
    other.update(second)
    with pytest.raises(RegistrationError, match=message):
        check_unique([parse_registration(reg(), HS), parse_registration(reg(**other), HS)])


def registry() -> AppServiceRegistry:
    irc = parse_registration(reg(namespaces={
        "users": [{"regex": "@_irc_.*", "exclusive": True}],
        "aliases": [{"regex": "#_irc_.*", "exclusive": True}]}), HS)
    log = parse_registration(reg(id="log", as_token="at2", hs_token="ht2",
                                 sender_localpart="logger", namespaces={
                                     "users": [{"regex": "@.*", "exclusive": False}],
                                     "aliases": [{"regex": "#.*", "exclusive": False}]}), HS)
    return AppServiceRegistry([irc, log])


@pytest.mark.parametrize(("user_id", "who", "allowed"), [
    ("@_irc_a:example.org", "irc", True),
    ("@_irc_a:example.org", None, False),  # a person in an exclusive namespace
    ("@_irc_a:example.org", "log", False),  # another AS in irc's exclusive namespace
    ("@bob:example.org", None, True),
    ("@bob:example.org", "log", True),  # log's non-exclusive namespace
    ("@bob:example.org", "irc", False),  # outside irc's namespaces
])
def test_who_may_create_a_user(user_id: str, who: str | None, allowed: bool) -> None:
    r = registry()
    if allowed:
        r.check_user_allowed(user_id, who)
    else:
        with pytest.raises(MatrixError) as e:
            r.check_user_allowed(user_id, who)
        assert (e.value.status, e.value.errcode) == (400, "M_EXCLUSIVE")


@pytest.mark.parametrize(("alias", "who", "allowed"), [
    ("#_irc_x:example.org", "irc", True),
    ("#_irc_x:example.org", None, False),
    ("#_irc_x:example.org", "log", False),
    ("#room:example.org", None, True),
    ("#room:example.org", "irc", False),
    ("#room:example.org", "log", True),
])
def test_who_may_create_an_alias(alias: str, who: str | None, allowed: bool) -> None:
    r = registry()
    if allowed:
        r.check_alias_allowed(alias, who)
    else:
        with pytest.raises(MatrixError) as e:
            r.check_alias_allowed(alias, who)
        assert (e.value.status, e.value.errcode) == (400, "M_EXCLUSIVE")


def test_tokens_and_protocols() -> None:
    r = registry()
    found = r.by_token("at")
    assert found is not None and found.id == "irc"
    assert r.by_token("a") is None and r.by_token("") is None
    sender = r.by_sender("@logger:example.org")
    assert sender is not None and sender.id == "log"
    assert split_instance_id("irc|libera") == ("irc", "libera")
    assert split_instance_id("irc|a|b") == ("irc", "a|b")
    for bad in ("irc", "|libera", "irc|"):
        assert split_instance_id(bad) is None


def test_files_and_config(tmp_path: Path) -> None:
    good = tmp_path / "irc.yaml"
    good.write_text(yaml.safe_dump(reg()))
    assert [s.id for s in load_registrations([good], HS)] == ["irc"]
    config = tmp_path / "homeserver.yaml"
    config.write_text(yaml.safe_dump({"server_name": HS,
                                      "app_service_config_files": ["irc.yaml"]}))
    assert [s.sender for s in load_config(config, env={}).app_services] == [
        "@_irc_bot:example.org"]
    # The environment names the files instead (comma-separated).
    other = tmp_path / "log.yaml"
    other.write_text(yaml.safe_dump(reg(id="log", as_token="x1", hs_token="x2",
                                        sender_localpart="logger")))
    cfg = load_config(config, env={"PARLEY_APP_SERVICE_CONFIG_FILES": f"{other}, {good}"})
    assert [s.id for s in cfg.app_services] == ["log", "irc"]
    # A bad or missing file refuses the whole config, naming the file.
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: [unclosed")
    for env, message in (({"PARLEY_APP_SERVICE_CONFIG_FILES": str(bad)}, "bad.yaml"),
                         ({"PARLEY_APP_SERVICE_CONFIG_FILES": str(tmp_path / "no.yaml")},
                          "cannot read"),
                         ({"PARLEY_APP_SERVICE_CONFIG_FILES": f"{good},{good}"}, "same id")):
        with pytest.raises(ConfigError, match=message):
            load_config(config, env=env)
    config.write_text(yaml.safe_dump({"app_service_config_files": "irc.yaml"}))
    with pytest.raises(ConfigError, match="list of paths"):
        load_config(config, env={})
