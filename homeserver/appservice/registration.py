"""Application service registrations (spec "Application Service API", "Registration"): the
YAML files an operator lists in `app_service_config_files`, parsed and checked once at start.

Pure code, no I/O beyond reading the files: a bad file is a `RegistrationError` naming the file
and the field, and the server refuses to start (an AS silently missing its namespace would see
no events and could not act for its users, which is worse than not starting).

Keys this server does not know are ignored (bridges write unstable ones), as Synapse does, so
a file that works there works here. `org.matrix.msc3202: true` turns on MSC3202's transaction
extensions (device lists, one-time key counts, unused fallback key types).

Regexes are matched from the start of the string to its end (`re.fullmatch`): the spec's
examples (`@_irc_bridge_.*`) are written to cover the whole id, and a prefix match would let
`@_irc.*` claim `@_irc:evil.example` too. A users namespace covers local users only (the spec's
note under "Registration"), so a user id of another server never matches it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from homeserver.types import is_valid_new_localpart


class RegistrationError(ValueError):
    """A registration file that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True, slots=True)
class Namespace:
    regex: re.Pattern[str]
    exclusive: bool

    def matches(self, value: str) -> bool:
        return self.regex.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class AppService:
    """One registration. `sender` is the full user id of `sender_localpart`."""

    id: str
    url: str | None
    as_token: str
    hs_token: str
    sender: str
    server_name: str
    users: tuple[Namespace, ...] = ()
    aliases: tuple[Namespace, ...] = ()
    rooms: tuple[Namespace, ...] = ()
    rate_limited: bool = True
    protocols: tuple[str, ...] = ()
    receive_ephemeral: bool = False
    # MSC3202 (`org.matrix.msc3202: true`): device lists and key counts in transactions.
    msc3202: bool = False

    # -- users

    def _local(self, user_id: str) -> bool:
        return user_id.partition(":")[2] == self.server_name

    def is_interested_in_user(self, user_id: str) -> bool:
        """The sender, or a local user any users namespace covers."""
        return user_id == self.sender or (
            self._local(user_id) and any(n.matches(user_id) for n in self.users))

    def is_exclusive_user(self, user_id: str) -> bool:
        return self._local(user_id) and any(n.exclusive and n.matches(user_id)
                                            for n in self.users)

    # -- aliases and rooms

    def is_interested_in_alias(self, alias: str) -> bool:
        return any(n.matches(alias) for n in self.aliases)

    def is_exclusive_alias(self, alias: str) -> bool:
        return any(n.exclusive and n.matches(alias) for n in self.aliases)

    def is_interested_in_room_id(self, room_id: str) -> bool:
        return any(n.matches(room_id) for n in self.rooms)


def _fail(source: str, msg: str) -> RegistrationError:
    return RegistrationError(f"app service registration {source}: {msg}")


def _namespaces(source: str, kind: str, value: Any) -> tuple[Namespace, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _fail(source, f"namespaces.{kind} must be a list")
    out = []
    for i, item in enumerate(value):
        where = f"namespaces.{kind}[{i}]"
        if not isinstance(item, Mapping):
            raise _fail(source, f"{where} must be a mapping with regex and exclusive")
        regex, exclusive = item.get("regex"), item.get("exclusive")
        if not isinstance(regex, str) or not regex:
            raise _fail(source, f"{where}.regex must be a non-empty string")
        if not isinstance(exclusive, bool):
            raise _fail(source, f"{where}.exclusive must be true or false")
        try:
            pattern = re.compile(regex)
        except re.error as e:
            raise _fail(source, f"{where}.regex {regex!r} is not a valid regex: {e}") from e
        out.append(Namespace(pattern, exclusive))
    return tuple(out)


def _token(source: str, data: Mapping[str, Any], key: str) -> str:
    v = data.get(key)
    if not isinstance(v, str) or not v:
        raise _fail(source, f"{key} must be a non-empty string")
    return v


def parse_registration(data: Any, server_name: str, source: str = "<data>") -> AppService:
    """One registration from its parsed YAML; raises RegistrationError."""
    if not isinstance(data, Mapping):
        raise _fail(source, "the top level must be a mapping")
    as_id = _token(source, data, "id")
    as_token = _token(source, data, "as_token")
    hs_token = _token(source, data, "hs_token")
    if as_token == hs_token:
        raise _fail(source, "as_token and hs_token must differ")
    if "url" not in data:
        raise _fail(source, "url is required (null for an AS that takes no traffic)")
    url = data["url"]
    if url is not None:
        if not isinstance(url, str):
            raise _fail(source, "url must be a string or null")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise _fail(source, f"url {url!r} must be an http:// or https:// URL")
        url = url.rstrip("/")
    localpart = data.get("sender_localpart")
    if not isinstance(localpart, str) or not is_valid_new_localpart(localpart):
        raise _fail(source, "sender_localpart must be a valid user localpart "
                            "(a-z, 0-9 and . _ = - / +)")
    namespaces = data.get("namespaces")
    if not isinstance(namespaces, Mapping):
        raise _fail(source, "namespaces must be a mapping of users, aliases and rooms")
    extra = set(namespaces) - {"users", "aliases", "rooms"}
    if extra:
        raise _fail(source, f"unknown namespace kind(s) {', '.join(sorted(map(str, extra)))}")
    rate_limited = data.get("rate_limited", True)
    if not isinstance(rate_limited, bool):
        raise _fail(source, "rate_limited must be true or false")
    protocols = data.get("protocols") or []
    if not isinstance(protocols, list) or not all(isinstance(p, str) and p for p in protocols):
        raise _fail(source, "protocols must be a list of names")
    ephemeral = data.get("receive_ephemeral",
                         data.get("de.sorunome.msc2409.push_ephemeral",
                                  data.get("push_ephemeral", False)))
    if not isinstance(ephemeral, bool):
        raise _fail(source, "receive_ephemeral must be true or false")
    msc3202 = data.get("org.matrix.msc3202", False)
    if not isinstance(msc3202, bool):
        raise _fail(source, "org.matrix.msc3202 must be true or false")
    return AppService(
        id=as_id, url=url, as_token=as_token, hs_token=hs_token,
        sender=f"@{localpart}:{server_name}", server_name=server_name,
        users=_namespaces(source, "users", namespaces.get("users")),
        aliases=_namespaces(source, "aliases", namespaces.get("aliases")),
        rooms=_namespaces(source, "rooms", namespaces.get("rooms")),
        rate_limited=rate_limited, protocols=tuple(protocols), receive_ephemeral=ephemeral,
        msc3202=msc3202)


def check_unique(services: Sequence[AppService]) -> None:
    """The spec: each `as_token` and `id` MUST be unique; the sender ids too (two services
    cannot both be one user)."""
    for attr, what in (("id", "id"), ("as_token", "as_token"), ("sender", "sender_localpart")):
        seen: set[str] = set()
        for s in services:
            v = getattr(s, attr)
            if v in seen:
                raise RegistrationError(
                    f"app service registrations: two share the same {what}"
                    + (f" {v!r}" if attr != "as_token" else ""))
            seen.add(v)
    tokens = {s.as_token for s in services}
    if any(s.hs_token in tokens for s in services):
        raise RegistrationError("app service registrations: an hs_token is another's as_token")


def load_registrations(paths: Iterable[Path], server_name: str) -> tuple[AppService, ...]:
    """Read and check every file; raises RegistrationError on the first problem."""
    out = []
    for path in paths:
        try:
            data = yaml.safe_load(path.read_text())
        except OSError as e:
            raise RegistrationError(
                f"cannot read app service registration {path}: {e.strerror or e}") from e
        except yaml.YAMLError as e:
            raise RegistrationError(f"app service registration {path} is not valid YAML: "
                                    f"{e}") from e
        out.append(parse_registration(data, server_name, str(path)))
    check_unique(out)
    return tuple(out)
