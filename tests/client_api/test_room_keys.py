"""Server-side key backup (/room_keys/*) over real HTTP: versions, keys in all three path forms,
the replacement rule, etag and count, every error path (each refused request changes nothing),
and concurrent uploads."""

from __future__ import annotations

import asyncio
import base64
import secrets
from typing import Any
from urllib.parse import quote

import pytest

from tests.client_api.unchanged import changed, digest
from tests.conftest import Server
from tests.helpers import Client, User

ALG = "m.megolm_backup.v1.curve25519-aes-sha2"
V = "/room_keys/version"
KEYS = "/room_keys/keys"


def public_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode().rstrip("=")


def auth_data(**extra: Any) -> dict[str, Any]:
    return {"public_key": public_key(), **extra}


def session_id() -> str:
    # Megolm session ids are unpadded base64 and so may hold "/" and "+".
    return base64.b64encode(secrets.token_bytes(32)).decode().rstrip("=")


def room_key(first: int = 0, forwarded: int = 0, verified: bool = False,
             tag: str = "") -> dict[str, Any]:
    return {"first_message_index": first, "forwarded_count": forwarded, "is_verified": verified,
            "session_data": {"ephemeral": "eph", "ciphertext": tag or secrets.token_hex(8),
                             "mac": "mac"}}


def session_path(room: str, sid: str) -> str:
    return f"{KEYS}/{quote(room, safe='')}/{quote(sid, safe='')}"


def room_path(room: str) -> str:
    return f"{KEYS}/{quote(room, safe='')}"


class Backup:
    """One user's backup, driven over HTTP."""

    def __init__(self, c: Client, user: User) -> None:
        self.c, self.user = c, user

    async def call(self, method: str, path: str, body: Any = None,
                   params: dict[str, str] | None = None, raw: bytes | None = None
                   ) -> tuple[int, Any]:
        return await self.c.request(method, path, body, self.user.access_token, raw=raw,
                                    params=params)

    async def ok(self, method: str, path: str, body: Any = None, **params: str) -> Any:
        status, data = await self.call(method, path, body, params or None)
        assert status == 200, (method, path, status, data)
        return data

    async def create(self, **extra: Any) -> str:
        data = await self.ok("POST", V, {"algorithm": ALG, "auth_data": auth_data(**extra)})
        assert isinstance(data["version"], str)
        return str(data["version"])

    async def info(self, version: str | None = None) -> dict[str, Any]:
        return dict(await self.ok("GET", V if version is None else f"{V}/{version}"))

    async def put(self, version: str, room: str, sid: str, key: dict[str, Any]
                  ) -> dict[str, Any]:
        return dict(await self.ok("PUT", session_path(room, sid), key, version=version))

    async def get(self, version: str, room: str, sid: str) -> dict[str, Any]:
        return dict(await self.ok("GET", session_path(room, sid), version=version))

    async def all(self, version: str) -> dict[str, Any]:
        return dict(await self.ok("GET", KEYS, version=version))


@pytest.fixture
async def bk(c: Client) -> Backup:
    return Backup(c, await c.register())


ROOM = "!room:parley.test"


class Unchanged:
    """Asserts a refused request got its errcode and left every table as it was."""

    def __init__(self, server: Server) -> None:
        self.db = server.hs.db

    async def refused(self, bk: Backup, method: str, path: str, body: Any = None, *,
                      status: int, errcode: str, params: dict[str, str] | None = None,
                      raw: bytes | None = None) -> dict[str, Any]:
        before = await digest(self.db)
        got, data = await bk.call(method, path, body, params, raw=raw)
        assert (got, data.get("errcode") if isinstance(data, dict) else data) == (
            status, errcode), (method, path, body, got, data)
        assert isinstance(data.get("error"), str)
        assert changed(before, await digest(self.db)) == [], (method, path, data)
        return dict(data)


@pytest.fixture
def check(server: Server) -> Unchanged:
    return Unchanged(server)


# ---------------------------------------------------------------------- versions


async def test_version_lifecycle(bk: Backup, check: Unchanged) -> None:
    await check.refused(bk, "GET", V, status=404, errcode="M_NOT_FOUND")
    ad = auth_data(signatures={bk.user.user_id: {"ed25519:DEV": "sig"}})
    v1 = (await bk.ok("POST", V, {"algorithm": ALG, "auth_data": ad}))["version"]
    assert v1 == "1"
    info = await bk.info()
    assert info == {"algorithm": ALG, "auth_data": ad, "count": 0, "etag": info["etag"],
                    "version": "1"}
    assert isinstance(info["etag"], str)
    assert await bk.info("1") == info

    v2 = await bk.create()
    assert v2 == "2"
    assert (await bk.info())["version"] == "2"
    assert (await bk.info("1"))["auth_data"] == ad  # older versions stay readable

    new_ad = auth_data(signatures={bk.user.user_id: {"ed25519:DEV": "other"}})
    assert await bk.ok("PUT", f"{V}/2", {"algorithm": ALG, "auth_data": new_ad}) == {}
    assert (await bk.info("2"))["auth_data"] == new_ad
    # the version may be repeated in the body
    assert await bk.ok("PUT", f"{V}/2", {"algorithm": ALG, "auth_data": ad,
                                         "version": "2"}) == {}
    assert (await bk.info("2"))["auth_data"] == ad

    assert await bk.ok("DELETE", f"{V}/2") == {}
    assert (await bk.info())["version"] == "1"  # a deleted version is not the latest
    await check.refused(bk, "GET", f"{V}/2", status=404, errcode="M_NOT_FOUND")
    assert await bk.ok("DELETE", f"{V}/2") == {}  # deleting again succeeds (spec)
    await check.refused(bk, "PUT", f"{V}/2", {"algorithm": ALG, "auth_data": ad},
                        status=404, errcode="M_NOT_FOUND")
    assert await bk.create() == "3"  # numbers are never reused

    await bk.ok("DELETE", f"{V}/3")
    await bk.ok("DELETE", f"{V}/1")
    await check.refused(bk, "GET", V, status=404, errcode="M_NOT_FOUND")


async def test_versions_are_per_user(c: Client, bk: Backup, check: Unchanged) -> None:
    v = await bk.create()
    await bk.put(v, ROOM, "s1", room_key())
    other = Backup(c, await c.register())
    await check.refused(other, "GET", V, status=404, errcode="M_NOT_FOUND")
    await check.refused(other, "GET", f"{V}/{v}", status=404, errcode="M_NOT_FOUND")
    await check.refused(other, "GET", KEYS, status=404, errcode="M_NOT_FOUND",
                        params={"version": v})
    await check.refused(other, "PUT", session_path(ROOM, "s1"), room_key(verified=True),
                        status=404, errcode="M_NOT_FOUND", params={"version": v})
    await check.refused(other, "DELETE", KEYS, status=404, errcode="M_NOT_FOUND",
                        params={"version": v})
    await check.refused(other, "DELETE", f"{V}/{v}", status=404, errcode="M_NOT_FOUND")
    await check.refused(other, "PUT", f"{V}/{v}", {"algorithm": ALG, "auth_data": auth_data()},
                        status=404, errcode="M_NOT_FOUND")
    assert await other.create() == "1"  # numbering is per user
    assert (await bk.info(v))["count"] == 1


async def test_deleting_a_version_deletes_its_keys(bk: Backup, server: Server) -> None:
    v = await bk.create()
    for i in range(3):
        await bk.put(v, ROOM, f"s{i}", room_key())
    await bk.ok("DELETE", f"{V}/{v}")
    n = await server.hs.db.fetchval(
        "SELECT count(*) FROM room_key_backup_sessions WHERE user_id = $1", bk.user.user_id)
    assert n == 0
    v2 = await bk.create()
    assert (await bk.info(v2))["count"] == 0
    assert await bk.all(v2) == {"rooms": {}}


CREATE_REFUSED = [
    ({}, 400, "M_BAD_JSON"),
    ({"auth_data": {"public_key": "k"}}, 400, "M_BAD_JSON"),
    ({"algorithm": 7, "auth_data": auth_data()}, 400, "M_BAD_JSON"),
    ({"algorithm": ALG}, 400, "M_BAD_JSON"),
    ({"algorithm": ALG, "auth_data": "base64"}, 400, "M_BAD_JSON"),
    ({"algorithm": ALG, "auth_data": {}}, 400, "M_BAD_JSON"),
    ({"algorithm": ALG, "auth_data": {"public_key": 1}}, 400, "M_BAD_JSON"),
    ({"algorithm": ALG, "auth_data": {"public_key": "tooshort"}}, 400, "M_INVALID_PARAM"),
    ({"algorithm": ALG, "auth_data": auth_data(signatures="x")}, 400, "M_BAD_JSON"),
    ({"algorithm": ALG, "auth_data": auth_data(signatures={"@a:b": {"k": 1}})}, 400,
     "M_BAD_JSON"),
    ({"algorithm": "", "auth_data": auth_data()}, 400, "M_INVALID_PARAM"),
    ({"algorithm": ALG, "auth_data": auth_data(pad="p" * 70_000)}, 413, "M_TOO_LARGE"),
    ({"algorithm": ALG, "auth_data": auth_data(nul="a\x00b")}, 400, "M_BAD_JSON"),
]


@pytest.mark.parametrize(("body", "status", "errcode"), CREATE_REFUSED)
async def test_create_version_refused(bk: Backup, check: Unchanged, body: dict[str, Any],
                                      status: int, errcode: str) -> None:
    await check.refused(bk, "POST", V, body, status=status, errcode=errcode)


async def test_create_version_not_json(bk: Backup, check: Unchanged) -> None:
    await check.refused(bk, "POST", V, raw=b"{nope", status=400, errcode="M_NOT_JSON")
    await check.refused(bk, "POST", V, raw=b"[]", status=400, errcode="M_BAD_JSON")
    await check.refused(bk, "POST", V, raw=b"", status=400, errcode="M_NOT_JSON")


async def test_update_version_refused(bk: Backup, check: Unchanged) -> None:
    v = await bk.create()
    await bk.create()  # updating an older version is allowed; refusals must not touch either
    good = {"algorithm": ALG, "auth_data": auth_data()}
    for path, body, status, errcode in [
        (f"{V}/{v}", {**good, "version": "2"}, 400, "M_INVALID_PARAM"),
        (f"{V}/{v}", {**good, "version": 1}, 400, "M_BAD_JSON"),
        (f"{V}/{v}", {**good, "algorithm": "org.example.other"}, 400, "M_INVALID_PARAM"),
        (f"{V}/{v}", {"auth_data": auth_data()}, 400, "M_BAD_JSON"),
        (f"{V}/{v}", {"algorithm": ALG}, 400, "M_BAD_JSON"),
        (f"{V}/{v}", {"algorithm": ALG, "auth_data": {"public_key": "x"}}, 400,
         "M_INVALID_PARAM"),
        (f"{V}/99", good, 404, "M_NOT_FOUND"),
        (f"{V}/x", good, 404, "M_NOT_FOUND"),
        (f"{V}/x", {**good, "version": "x"}, 404, "M_NOT_FOUND"),
    ]:
        await check.refused(bk, "PUT", path, body, status=status, errcode=errcode)
    await bk.ok("PUT", f"{V}/{v}", good)
    assert (await bk.info(v))["auth_data"] == good["auth_data"]


@pytest.mark.parametrize("version", ["0", "01", "-1", "abc", "1.0", "9" * 30, "%C2%B2", "%20"])
async def test_versions_we_never_issued_are_not_found(bk: Backup, check: Unchanged,
                                                      version: str) -> None:
    await bk.create()
    await check.refused(bk, "GET", f"{V}/{version}", status=404, errcode="M_NOT_FOUND")
    await check.refused(bk, "DELETE", f"{V}/{version}", status=404, errcode="M_NOT_FOUND")
    await check.refused(bk, "GET", KEYS, status=404, errcode="M_NOT_FOUND",
                        params={"version": version})
    await check.refused(bk, "PUT", KEYS, {"rooms": {}}, status=404, errcode="M_NOT_FOUND",
                        params={"version": version})


async def test_requires_an_access_token(c: Client) -> None:
    for method, path in [("GET", V), ("POST", V), ("GET", f"{V}/1"), ("PUT", KEYS),
                         ("DELETE", room_path(ROOM))]:
        status, data = await c.request(method, path, {}, None, params={"version": "1"})
        assert (status, data["errcode"]) == (401, "M_MISSING_TOKEN")


# ---------------------------------------------------------------------- keys


async def test_keys_in_three_forms(bk: Backup) -> None:
    v = await bk.create()
    r2 = "!other:parley.test"
    s1, s2, s3 = session_id(), session_id(), session_id()
    k1, k2, k3 = room_key(1, 0, True), room_key(2, 1), room_key(0, 0)
    etag0 = (await bk.info(v))["etag"]

    one = await bk.put(v, ROOM, s1, k1)
    assert one["count"] == 1 and one["etag"] != etag0
    room = await bk.ok("PUT", room_path(ROOM), {"sessions": {s2: k2}}, version=v)
    assert room["count"] == 2 and room["etag"] != one["etag"]
    every = await bk.ok("PUT", KEYS, {"rooms": {r2: {"sessions": {s3: k3}}}}, version=v)
    assert every["count"] == 3 and every["etag"] not in (etag0, one["etag"], room["etag"])
    info = await bk.info(v)
    assert (info["count"], info["etag"]) == (3, every["etag"])

    assert await bk.get(v, ROOM, s1) == k1
    assert await bk.ok("GET", room_path(ROOM), version=v) == {"sessions": {s1: k1, s2: k2}}
    assert await bk.all(v) == {"rooms": {ROOM: {"sessions": {s1: k1, s2: k2}},
                                         r2: {"sessions": {s3: k3}}}}


async def test_missing_keys(bk: Backup, check: Unchanged) -> None:
    v = await bk.create()
    assert await bk.all(v) == {"rooms": {}}
    assert await bk.ok("GET", room_path(ROOM), version=v) == {"sessions": {}}
    await check.refused(bk, "GET", session_path(ROOM, "nope"), status=404,
                        errcode="M_NOT_FOUND", params={"version": v})
    await bk.put(v, ROOM, "s", room_key())
    assert await bk.ok("GET", room_path("!empty:parley.test"), version=v) == {"sessions": {}}
    await check.refused(bk, "GET", session_path(ROOM, "other"), status=404,
                        errcode="M_NOT_FOUND", params={"version": v})


async def test_delete_keys_counts_and_etag(bk: Backup) -> None:
    v = await bk.create()
    r2 = "!two:parley.test"
    await bk.ok("PUT", KEYS, {"rooms": {
        ROOM: {"sessions": {"a": room_key(), "b": room_key(), "c": room_key()}},
        r2: {"sessions": {"d": room_key(), "e": room_key()}}}}, version=v)
    info = await bk.info(v)
    assert info["count"] == 5

    gone = await bk.ok("DELETE", session_path(ROOM, "a"), version=v)
    assert gone["count"] == 4 and gone["etag"] != info["etag"]
    same = await bk.ok("DELETE", session_path(ROOM, "a"), version=v)  # nothing left to delete
    assert same == gone
    room = await bk.ok("DELETE", room_path(ROOM), version=v)
    assert room["count"] == 2 and room["etag"] != gone["etag"]
    assert await bk.ok("GET", room_path(ROOM), version=v) == {"sessions": {}}
    assert set((await bk.all(v))["rooms"]) == {r2}
    every = await bk.ok("DELETE", KEYS, version=v)
    assert every["count"] == 0 and every["etag"] != room["etag"]
    assert await bk.all(v) == {"rooms": {}}
    info = await bk.info(v)
    assert (info["count"], info["etag"]) == (0, every["etag"])


async def test_an_older_version_can_be_read_and_cleared_not_written(
        bk: Backup, check: Unchanged) -> None:
    old = await bk.create()
    await bk.put(old, ROOM, "s", room_key(tag="old"))
    new = await bk.create()
    data = await check.refused(bk, "PUT", session_path(ROOM, "s2"), room_key(),
                               status=403, errcode="M_WRONG_ROOM_KEYS_VERSION",
                               params={"version": old})
    assert data["current_version"] == new
    for path, body in [(room_path(ROOM), {"sessions": {"s": room_key(verified=True)}}),
                       (KEYS, {"rooms": {}})]:
        data = await check.refused(bk, "PUT", path, body, status=403,
                                   errcode="M_WRONG_ROOM_KEYS_VERSION", params={"version": old})
        assert data["current_version"] == new
    assert (await bk.get(old, ROOM, "s"))["session_data"]["ciphertext"] == "old"
    assert (await bk.ok("DELETE", KEYS, version=old))["count"] == 0
    # once the newer version is deleted, the older one is the latest again
    await bk.ok("DELETE", f"{V}/{new}")
    assert (await bk.put(old, ROOM, "s", room_key()))["count"] == 1


async def test_deleted_or_absent_version_is_not_found_for_keys(bk: Backup,
                                                               check: Unchanged) -> None:
    for method, path, body in [("PUT", session_path(ROOM, "s"), room_key()),
                               ("GET", KEYS, None), ("DELETE", room_path(ROOM), None)]:
        await check.refused(bk, method, path, body, status=404, errcode="M_NOT_FOUND",
                            params={"version": "1"})
    v = await bk.create()
    await bk.ok("DELETE", f"{V}/{v}")
    for method, path, body in [("PUT", session_path(ROOM, "s"), room_key()),
                               ("PUT", KEYS, {"rooms": {}}),
                               ("GET", session_path(ROOM, "s"), None),
                               ("GET", room_path(ROOM), None),
                               ("DELETE", KEYS, None)]:
        await check.refused(bk, method, path, body, status=404, errcode="M_NOT_FOUND",
                            params={"version": v})


async def test_version_query_parameter(bk: Backup, check: Unchanged) -> None:
    v = await bk.create()
    await bk.put(v, ROOM, "s", room_key())
    for method, path, body in [
        ("GET", KEYS, None), ("GET", room_path(ROOM), None), ("GET", session_path(ROOM, "s"),
                                                               None),
        ("PUT", KEYS, {"rooms": {}}), ("PUT", room_path(ROOM), {"sessions": {}}),
        ("PUT", session_path(ROOM, "s"), room_key(verified=True)),
        ("DELETE", KEYS, None), ("DELETE", room_path(ROOM), None),
        ("DELETE", session_path(ROOM, "s"), None),
    ]:
        await check.refused(bk, method, path, body, status=400, errcode="M_MISSING_PARAM")
        await check.refused(bk, method, f"{path}?version={v}&version={v}", body, status=400,
                            errcode="M_INVALID_PARAM")
        await check.refused(bk, method, f"{path}?version=%00", body, status=400,
                            errcode="M_INVALID_PARAM")
    assert (await bk.info(v))["count"] == 1


# (stored key, uploaded key, does the upload replace the stored one)
REPLACEMENT = [
    # is_verified decides first
    (room_key(5, 5, False), room_key(9, 9, True), True),
    (room_key(9, 9, True), room_key(0, 0, False), False),
    (room_key(0, 0, True), room_key(0, 0, False), False),
    # same verifiedness: lower first_message_index wins, whatever forwarded_count says
    (room_key(5, 0, False), room_key(4, 9, False), True),
    (room_key(4, 0, False), room_key(5, 0, False), False),
    (room_key(4, 9, True), room_key(5, 0, True), False),
    # same verifiedness and index: lower forwarded_count wins
    (room_key(3, 2, False), room_key(3, 1, False), True),
    (room_key(3, 1, True), room_key(3, 2, True), False),
    # a complete tie keeps the stored key (and the etag)
    (room_key(3, 1, False), room_key(3, 1, False), False),
]


@pytest.mark.parametrize(("stored", "new", "replaces"), REPLACEMENT)
@pytest.mark.parametrize("form", ["session", "room", "all"])
async def test_replacement_rule(bk: Backup, stored: dict[str, Any], new: dict[str, Any],
                                replaces: bool, form: str) -> None:
    v = await bk.create()
    sid = session_id()
    first = await bk.put(v, ROOM, sid, stored)
    if form == "session":
        second = await bk.put(v, ROOM, sid, new)
    elif form == "room":
        second = await bk.ok("PUT", room_path(ROOM), {"sessions": {sid: new}}, version=v)
    else:
        second = await bk.ok("PUT", KEYS, {"rooms": {ROOM: {"sessions": {sid: new}}}},
                             version=v)
    assert second["count"] == 1
    assert (second["etag"] != first["etag"]) is replaces
    assert await bk.get(v, ROOM, sid) == (new if replaces else stored)


async def test_a_batch_is_judged_key_by_key(bk: Backup) -> None:
    v = await bk.create()
    better, worse = room_key(0, 0, True, "better"), room_key(9, 9, False, "worse")
    await bk.ok("PUT", room_path(ROOM), {"sessions": {"a": worse, "b": better}}, version=v)
    result = await bk.ok("PUT", room_path(ROOM), {"sessions": {
        "a": better, "b": worse, "c": worse}}, version=v)
    assert result["count"] == 3
    assert (await bk.ok("GET", room_path(ROOM), version=v)) == {"sessions": {
        "a": better, "b": better, "c": worse}}


KEY_REFUSED: list[tuple[str, Any, int, str]] = [
    ("session", {**room_key(), "first_message_index": -1}, 400, "M_INVALID_PARAM"),
    ("session", {**room_key(), "first_message_index": 1.5}, 400, "M_BAD_JSON"),
    ("session", {**room_key(), "first_message_index": "0"}, 400, "M_BAD_JSON"),
    ("session", {**room_key(), "forwarded_count": -3}, 400, "M_INVALID_PARAM"),
    ("session", {**room_key(), "forwarded_count": 2**53}, 400, "M_INVALID_PARAM"),
    ("session", {**room_key(), "is_verified": "yes"}, 400, "M_BAD_JSON"),
    ("session", {**room_key(), "is_verified": 1}, 400, "M_BAD_JSON"),
    ("session", {**room_key(), "session_data": "b64"}, 400, "M_BAD_JSON"),
    ("session", {**room_key(), "session_data": {"ephemeral": "e"}}, 400, "M_BAD_JSON"),
    ("session", {k: v for k, v in room_key().items() if k != "is_verified"}, 400,
     "M_BAD_JSON"),
    ("session", {**room_key(), "session_data": {"ephemeral": "e", "ciphertext": "c" * 70_000,
                                                "mac": "m"}}, 413, "M_TOO_LARGE"),
    ("room", {}, 400, "M_BAD_JSON"),
    ("room", {"sessions": [room_key()]}, 400, "M_BAD_JSON"),
    ("room", {"sessions": {"": room_key()}}, 400, "M_INVALID_PARAM"),
    ("room", {"sessions": {"s" * 256: room_key()}}, 400, "M_INVALID_PARAM"),
    # one bad key refuses the whole batch: the good one before it is not stored either
    ("room", {"sessions": {"good": room_key(), "bad": {**room_key(), "forwarded_count": -1}}},
     400, "M_INVALID_PARAM"),
    ("all", {}, 400, "M_BAD_JSON"),
    ("all", {"rooms": [ROOM]}, 400, "M_BAD_JSON"),
    ("all", {"rooms": {"no-sigil:parley.test": {"sessions": {}}}}, 400, "M_INVALID_PARAM"),
    ("all", {"rooms": {ROOM: {"sessions": {"ok": room_key()}},
                       "!b:parley.test": {"sessions": {"x": {"forwarded_count": 0}}}}},
     400, "M_BAD_JSON"),
    ("all", {"rooms": {ROOM: {"sessions": {"ok": room_key()}},
                       "!n:parley.test": {"sessions": {"a\x00": room_key()}}}}, 400,
     "M_BAD_JSON"),
]


@pytest.mark.parametrize(("form", "body", "status", "errcode"), KEY_REFUSED)
async def test_bad_keys_change_nothing(bk: Backup, check: Unchanged, form: str, body: Any,
                                       status: int, errcode: str) -> None:
    v = await bk.create()
    await bk.put(v, ROOM, "existing", room_key())
    path = {"session": session_path(ROOM, "s"), "room": room_path(ROOM), "all": KEYS}[form]
    await check.refused(bk, "PUT", path, body, status=status, errcode=errcode,
                        params={"version": v})
    assert (await bk.info(v))["count"] == 1


async def test_bad_path_ids(bk: Backup, check: Unchanged) -> None:
    v = await bk.create()
    await bk.put(v, ROOM, "s", room_key())
    for method, path, body in [
        ("PUT", session_path("not-a-room", "s"), room_key()),
        ("PUT", room_path("not-a-room"), {"sessions": {}}),
        ("PUT", session_path(ROOM, "s" * 256), room_key()),
        ("GET", session_path("not-a-room", "s"), None),
        ("GET", room_path("!"), None),
        ("DELETE", room_path("not-a-room"), None),
        ("DELETE", session_path(ROOM, "s" * 256), None),
    ]:
        await check.refused(bk, method, path, body, status=400, errcode="M_INVALID_PARAM",
                            params={"version": v})


async def test_odd_but_valid_ids_round_trip(bk: Backup) -> None:
    v = await bk.create()
    room = "!ünï/cødé+?#:parley.test"
    sid = "a/b+c=d?e#f g%"
    k = room_key(tag="odd")
    await bk.put(v, room, sid, k)
    assert await bk.get(v, room, sid) == k
    assert await bk.all(v) == {"rooms": {room: {"sessions": {sid: k}}}}


async def test_etag_tracks_every_change(bk: Backup) -> None:
    v = await bk.create()
    seen = {(await bk.info(v))["etag"]}
    sid = session_id()
    for key in (room_key(5, 5), room_key(4, 5), room_key(4, 4), room_key(9, 9, True)):
        etag = (await bk.put(v, ROOM, sid, key))["etag"]
        assert etag not in seen
        seen.add(etag)
        assert (await bk.info(v))["etag"] == etag
    # a losing upload and an empty one change nothing
    etag = (await bk.info(v))["etag"]
    assert (await bk.put(v, ROOM, sid, room_key(0, 0, False)))["etag"] == etag
    assert (await bk.ok("PUT", KEYS, {"rooms": {}}, version=v)) == {"etag": etag, "count": 1}
    # changing auth_data is not a change of the keys
    await bk.ok("PUT", f"{V}/{v}", {"algorithm": ALG, "auth_data": auth_data()})
    assert (await bk.info(v))["etag"] == etag


# ---------------------------------------------------------------------- concurrency


async def test_concurrent_uploads_keep_count_and_etag_exact(bk: Backup, server: Server) -> None:
    v = await bk.create()
    rooms = [f"!r{i}:parley.test" for i in range(4)]
    # 24 uploads at once; each overlaps with others in its room, and has one session of its
    # own (so that every upload changes the backup)
    bodies = [{"rooms": {rooms[i % 4]: {"sessions": {
        **{f"s{j}": room_key(first=(i * 7 + j) % 5, forwarded=i % 3) for j in range(i, i + 10)},
        f"u{i}": room_key()}}}} for i in range(24)]
    results = await asyncio.gather(*(bk.ok("PUT", KEYS, b, version=v) for b in bodies))
    distinct = {(room, sid) for b in bodies for room, r in b["rooms"].items()
                for sid in r["sessions"]}
    stored = await bk.all(v)
    n = sum(len(r["sessions"]) for r in stored["rooms"].values())
    assert n == len(distinct)
    info = await bk.info(v)
    assert info["count"] == len(distinct)
    assert await server.hs.db.fetchval(
        "SELECT count(*) FROM room_key_backup_sessions WHERE user_id = $1 AND version = $2",
        bk.user.user_id, int(v)) == len(distinct)
    # every upload that changed something got its own etag; the last is the backup's
    etags = [int(r["etag"]) for r in results]
    assert len(set(etags)) == len(etags)
    assert max(etags) == int(info["etag"])
    # and each session holds the best key any upload offered for it
    for (room, sid) in distinct:
        offers = [b["rooms"][room]["sessions"][sid] for b in bodies
                  if room in b["rooms"] and sid in b["rooms"][room]["sessions"]]
        best = min(offers, key=lambda k: (not k["is_verified"], k["first_message_index"],
                                          k["forwarded_count"]))
        got = stored["rooms"][room]["sessions"][sid]
        assert (got["first_message_index"], got["forwarded_count"]) == (
            best["first_message_index"], best["forwarded_count"])


async def test_concurrent_version_creation_gets_distinct_numbers(bk: Backup) -> None:
    made = await asyncio.gather(*(bk.create() for _ in range(8)))
    assert sorted(made, key=int) == [str(i) for i in range(1, 9)]
    assert (await bk.info())["version"] == "8"


async def test_upload_racing_a_version_delete(bk: Backup, server: Server) -> None:
    """Uploads and the deletion of their version, at once: every upload either lands before
    the delete (and is gone with it) or is refused as not found; nothing is left behind."""
    v = await bk.create()
    uploads = [bk.call("PUT", session_path(ROOM, f"s{i}"), room_key(), {"version": v})
               for i in range(10)]
    results = await asyncio.gather(*uploads, bk.call("DELETE", f"{V}/{v}"))
    assert results[-1][0] == 200
    for status, data in results[:-1]:
        assert status == 200 or (status, data["errcode"]) == (404, "M_NOT_FOUND"), data
    assert await server.hs.db.fetchval(
        "SELECT count(*) FROM room_key_backup_sessions WHERE user_id = $1",
        bk.user.user_id) == 0
    status, _ = await bk.call("GET", KEYS, params={"version": v})
    assert status == 404


async def test_unknown_algorithm_is_stored_opaquely(bk: Backup) -> None:
    """An algorithm the spec does not define keeps whatever auth_data and session_data it has
    (as Synapse; SyTest's backup tests use such strings)."""
    v = (await bk.ok("POST", V, {"algorithm": "m.megolm_backup.v1",
                                 "auth_data": "anopaquestring"}))["version"]
    info = await bk.ok("GET", V)
    assert (info["algorithm"], info["auth_data"], info["version"]) == (
        "m.megolm_backup.v1", "anopaquestring", v)
    key = {"first_message_index": 3, "forwarded_count": 0, "is_verified": False,
           "session_data": "anopaquestring"}
    room = "!room:parley.test"
    put = await bk.ok("PUT", f"/room_keys/keys/{room}/sess", key, version=v)
    assert put["count"] == 1
    assert await bk.ok("GET", f"/room_keys/keys/{room}/sess", None, version=v) == key
