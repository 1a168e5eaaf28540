"""The media admin API over HTTP (Synapse's media_admin_api.md, the user API's media endpoints
and statistics.md): users upload media, admins list, inspect, quarantine, protect and delete
it, purge the remote cache and read the usage statistics; everyone else is refused."""

from __future__ import annotations

import io
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from tests.admin_api.conftest import make_admin
from tests.conftest import Server, start_server
from tests.conftest import test_config as make_config
from tests.helpers import Client, User

A = "/_synapse/admin/v1"
V1 = "/_matrix/client/v1/media"


async def upload(c: Client, user: User, data: bytes, content_type: str = "text/plain",
                 filename: str | None = None) -> str:
    headers = {"Authorization": f"Bearer {user.access_token}", "Content-Type": content_type}
    params = {"filename": filename} if filename else None
    async with c.session.post(c.base + "/_matrix/media/v3/upload", data=data,
                              headers=headers, params=params) as r:
        body = await r.json()
        assert r.status == 200, body
    server, media_id = body["content_uri"].removeprefix("mxc://").split("/")
    assert server == "parley.test"
    return str(media_id)


async def download(c: Client, user: User, media_id: str, server: str = "parley.test"
                   ) -> tuple[int, bytes]:
    async with c.session.get(f"{c.base}{V1}/download/{server}/{media_id}",
                             headers={"Authorization": f"Bearer {user.access_token}"}) as r:
        return r.status, await r.read()


def unique(n: int = 16) -> bytes:
    return secrets.token_bytes(n)


async def sha_of(server: Server, media_id: str) -> str:
    return str(await server.hs.db.fetchval(
        "SELECT sha256 FROM local_media WHERE media_id = $1", media_id))


def on_disk(server: Server, sha256: str) -> bool:
    assert server.hs.media is not None
    path = server.hs.media.service.storage.local_path(sha256)
    assert path is not None
    return path.exists()


async def test_non_admins_are_refused_and_nothing_changes(c: Client, server: Server,
                                                          admin: User) -> None:
    alice = await c.register()
    media_id = await upload(c, alice, unique())
    room = await c.create_room(alice)
    before = await server.hs.db.fetchrow(
        "SELECT quarantined, quarantined_by, safe_from_quarantine FROM local_media"
        " WHERE media_id = $1", media_id)
    now = int(time.time() * 1000) + 10_000
    calls: list[tuple[str, str, dict[str, str] | None]] = [
        ("GET", f"/users/{alice.user_id}/media", None),
        ("DELETE", f"/users/{alice.user_id}/media", None),
        ("GET", f"/room/{room}/media", None),
        ("GET", f"/media/parley.test/{media_id}", None),
        ("DELETE", f"/media/parley.test/{media_id}", None),
        ("POST", "/media/delete", {"before_ts": str(now)}),
        ("POST", "/media/parley.test/delete", {"before_ts": str(now)}),
        ("POST", f"/media/quarantine/parley.test/{media_id}", None),
        ("POST", f"/media/unquarantine/parley.test/{media_id}", None),
        ("POST", f"/room/{room}/media/quarantine", None),
        ("POST", f"/quarantine_media/{room}", None),
        ("POST", f"/user/{alice.user_id}/media/quarantine", None),
        ("POST", f"/media/protect/{media_id}", None),
        ("POST", f"/media/unprotect/{media_id}", None),
        ("POST", "/purge_media_cache", {"before_ts": str(now)}),
        ("GET", "/statistics/users/media", None),
    ]
    for method, path, params in calls:
        body = {} if method == "POST" else None
        status, resp = await c.request(method, A + path, body, token=alice.access_token,
                                       params=params)
        assert status == 403 and resp["errcode"] == "M_FORBIDDEN", (method, path, resp)
        status, resp = await c.request(method, A + path, body, params=params)
        assert status == 401 and resp["errcode"] == "M_MISSING_TOKEN", (method, path)
    assert (await download(c, alice, media_id))[0] == 200
    after = await server.hs.db.fetchrow(
        "SELECT quarantined, quarantined_by, safe_from_quarantine FROM local_media"
        " WHERE media_id = $1", media_id)
    assert before == after
    # the admin's own call works (the refusals above were not for another reason)
    status, resp = await c.request("GET", A + f"/users/{alice.user_id}/media",
                                   token=admin.access_token)
    assert status == 200 and [m["media_id"] for m in resp["media"]] == [media_id]


async def test_list_user_media_pages_and_orders(c: Client, admin: User) -> None:
    t = admin.access_token
    bob = await c.register()
    ids = [await upload(c, bob, unique(n), ctype, name) for n, ctype, name in
           ((30, "text/plain", "b.txt"), (10, "image/png", "c.png"),
            (20, "application/octet-stream", None))]
    path = A + f"/users/{bob.user_id}/media"
    status, body = await c.request("GET", path, token=t)
    assert status == 200 and body["total"] == 3 and "next_token" not in body
    assert [m["media_id"] for m in body["media"]] == ids[::-1]  # newest first by default
    newest = body["media"][0]
    assert newest == {"media_id": ids[2], "created_ts": newest["created_ts"],
                      "last_access_ts": None, "media_length": 20,
                      "media_type": "application/octet-stream", "upload_name": None,
                      "quarantined_by": None, "safe_from_quarantine": False}
    assert abs(newest["created_ts"] - time.time() * 1000) < 60_000

    status, body = await c.request("GET", path, token=t, params={"limit": "2"})
    assert [m["media_id"] for m in body["media"]] == [ids[2], ids[1]]
    assert body["next_token"] == 2 and body["total"] == 3
    status, body = await c.request("GET", path, token=t, params={"from": "2"})
    assert [m["media_id"] for m in body["media"]] == [ids[0]] and "next_token" not in body

    status, body = await c.request("GET", path, token=t, params={"order_by": "media_length"})
    assert [m["media_length"] for m in body["media"]] == [10, 20, 30]
    status, body = await c.request("GET", path, token=t,
                                   params={"order_by": "upload_name", "dir": "b"})
    assert [m["upload_name"] for m in body["media"]][1:] == ["c.png", "b.txt"]
    status, body = await c.request("GET", path, token=t, params={"dir": "f"})
    assert [m["media_id"] for m in body["media"]] == ids  # created_ts, oldest first

    # a download is recorded as the last access
    assert (await download(c, bob, ids[0]))[0] == 200
    status, body = await c.request("GET", path, token=t, params={"order_by": "media_id"})
    seen = {m["media_id"]: m["last_access_ts"] for m in body["media"]}
    assert isinstance(seen[ids[0]], int) and seen[ids[1]] is None

    for params in ({"order_by": "size"}, {"dir": "x"}, {"from": "-1"}, {"limit": "ten"}):
        status, body = await c.request("GET", path, token=t, params=params)
        assert status == 400 and body["errcode"] == "M_INVALID_PARAM", params
    status, body = await c.request("GET", A + "/users/@bob:elsewhere.test/media", token=t)
    assert status == 400 and body["errcode"] == "M_INVALID_PARAM"
    status, body = await c.request("GET", A + "/users/@nobody-here:parley.test/media",
                                   token=t)
    assert status == 404 and body["errcode"] == "M_NOT_FOUND"


async def test_quarantine_by_id_user_and_room_and_protection(c: Client, server: Server,
                                                             admin: User) -> None:
    t = admin.access_token
    alice, bob = await c.register(), await c.register()
    shared = unique()
    a1 = await upload(c, alice, shared)
    b1 = await upload(c, bob, shared)  # same content as a1, another user
    b2 = await upload(c, bob, unique())

    status, body = await c.request("POST", A + f"/media/quarantine/parley.test/{a1}", {},
                                   token=t)
    assert status == 200 and body == {}
    for media_id in (a1, b1):  # the copy with the same content goes too, as in Synapse
        status, _ = await download(c, alice, media_id)
        assert status == 404
    assert (await download(c, alice, b2))[0] == 200
    status, body = await c.request("GET", A + f"/media/parley.test/{a1}", token=t)
    assert status == 200 and body["media_info"]["quarantined_by"] == admin.user_id
    assert body["media_info"]["user_id"] == alice.user_id
    assert body["media_info"]["sha256"] == await sha_of(server, a1)

    status, body = await c.request("POST", A + f"/media/unquarantine/parley.test/{b1}", {},
                                   token=t)
    assert status == 200
    assert (await download(c, alice, a1))[0] == 200 and (await download(c, bob, b1))[0] == 200

    # protected media is not quarantined, alone or with its user's media
    status, _ = await c.request("POST", A + f"/media/protect/{b2}", {}, token=t)
    assert status == 200
    status, body = await c.request("POST", A + f"/user/{bob.user_id}/media/quarantine", {},
                                   token=t)
    assert status == 200 and body == {"num_quarantined": 2}  # b1 and a1 (same content)
    assert (await download(c, bob, b2))[0] == 200
    assert (await download(c, bob, b1))[0] == 404
    status, body = await c.request("GET", A + f"/users/{bob.user_id}/media", token=t,
                                   params={"order_by": "safe_from_quarantine"})
    assert [(m["media_id"], m["safe_from_quarantine"], m["quarantined_by"])
            for m in body["media"]] == [(b1, False, admin.user_id), (b2, True, None)]
    status, _ = await c.request("POST", A + f"/media/unprotect/{b2}", {}, token=t)
    assert status == 200
    status, body = await c.request("POST", A + f"/media/quarantine/parley.test/{b2}", {},
                                   token=t)
    assert (await download(c, bob, b2))[0] == 404
    for media_id in (b1, b2):
        await c.request("POST", A + f"/media/unquarantine/parley.test/{media_id}", {}, token=t)

    # media in a room: what its events point at (not its members' avatars, as in Synapse)
    av = await upload(c, alice, unique(), "image/png")
    status, _ = await c.request("PUT", f"/profile/{alice.user_id}/avatar_url",
                                {"avatar_url": f"mxc://parley.test/{av}"}, alice.access_token)
    assert status == 200
    room = await c.create_room(alice)
    img, thumb = await upload(c, alice, unique(), "image/png"), await upload(c, alice, unique())
    content = {"msgtype": "m.image", "body": "cat.png", "url": f"mxc://parley.test/{img}",
               "info": {"thumbnail_url": f"mxc://parley.test/{thumb}"}}
    status, _ = await c.request("PUT", f"/rooms/{room}/send/m.room.message/t1", content,
                                alice.access_token)
    assert status == 200
    status, _ = await c.request("PUT", f"/rooms/{room}/send/m.room.message/t2",
                                {"msgtype": "m.file", "body": "f",
                                 "url": "mxc://remote.test/abcDEF"}, alice.access_token)
    assert status == 200
    status, body = await c.request("GET", A + f"/room/{room}/media", token=t)
    assert status == 200
    assert sorted(body["local"]) == sorted([f"mxc://parley.test/{img}",
                                            f"mxc://parley.test/{thumb}"])
    assert body["remote"] == ["mxc://remote.test/abcDEF"]
    status, body = await c.request("POST", A + f"/room/{room}/media/quarantine", {}, token=t)
    assert status == 200 and body == {"num_quarantined": 2}  # the remote one is not cached
    assert (await download(c, alice, img))[0] == 404
    assert (await download(c, alice, thumb))[0] == 404
    assert (await download(c, alice, a1))[0] == 200
    assert (await download(c, alice, av))[0] == 200
    assert await server.hs.db.fetchval(
        "SELECT count(*) FROM events WHERE room_id = $1 AND strpos(json, $2) > 0",
        room, av) > 0  # the member event names the avatar, and it was left alone

    # bad input: the spec's errcodes, nothing changed
    for path in (f"/media/quarantine/parley.test/{'x' * 300}", "/media/protect/nosuch",
                 "/media/unprotect/bad.id"):
        status, body = await c.request("POST", A + path, {}, token=t)
        if "protect" in path:
            assert status == 404 and body["errcode"] == "M_NOT_FOUND", path
        else:
            assert status == 404, path
    status, body = await c.request("GET", A + "/room/not-a-room/media", token=t)
    assert status == 400 and body["errcode"] == "M_INVALID_PARAM"
    status, body = await c.request("POST", A + "/user/not-a-user/media/quarantine", {},
                                   token=t)
    assert status == 400 and body["errcode"] == "M_INVALID_PARAM"
    assert (await download(c, alice, a1))[0] == 200


async def test_delete_media_by_id_and_by_user(c: Client, server: Server, admin: User) -> None:
    t = admin.access_token
    alice, bob = await c.register(), await c.register()
    shared = unique()
    a1, b1 = await upload(c, alice, shared), await upload(c, bob, shared)
    sha = await sha_of(server, a1)
    assert on_disk(server, sha)

    status, body = await c.request("DELETE", A + f"/media/parley.test/{a1}", token=t)
    assert status == 200 and body == {"deleted_media": [a1], "total": 1}
    assert (await download(c, alice, a1))[0] == 404
    assert await server.hs.db.fetchval(
        "SELECT count(*) FROM local_media WHERE media_id = $1", a1) == 0
    assert on_disk(server, sha)  # b1 still names the content
    assert (await download(c, bob, b1)) == (200, shared)
    status, body = await c.request("DELETE", A + f"/media/parley.test/{b1}", token=t)
    assert status == 200 and body["deleted_media"] == [b1]
    assert not on_disk(server, sha)  # gone from disk once no row names it
    status, body = await c.request("GET", A + f"/media/parley.test/{b1}", token=t)
    assert status == 404 and body["errcode"] == "M_NOT_FOUND"

    status, body = await c.request("DELETE", A + f"/media/parley.test/{b1}", token=t)
    assert status == 404 and body["errcode"] == "M_NOT_FOUND"
    status, body = await c.request("DELETE", A + "/media/remote.test/abc", token=t)
    assert status == 400 and body["errcode"] == "M_INVALID_PARAM"

    # an image's thumbnails go with it
    buf = io.BytesIO()
    Image.new("RGB", (120, 90), tuple(secrets.token_bytes(3))).save(buf, "PNG")
    img = await upload(c, alice, buf.getvalue(), "image/png")
    async with c.session.get(f"{c.base}{V1}/thumbnail/parley.test/{img}",
                             params={"width": "32", "height": "32", "method": "crop"},
                             headers={"Authorization": f"Bearer {alice.access_token}"}) as r:
        assert r.status == 200
    img_sha = await sha_of(server, img)
    thumbs = [r["sha256"] for r in await server.hs.db.fetch(
        "SELECT sha256 FROM media_thumbnails WHERE source_sha256 = $1", img_sha)]
    assert thumbs and all(on_disk(server, x) for x in thumbs)
    status, body = await c.request("DELETE", A + f"/media/parley.test/{img}", token=t)
    assert status == 200 and body["deleted_media"] == [img]
    assert not on_disk(server, img_sha) and not any(on_disk(server, x) for x in thumbs)
    assert await server.hs.db.fetchval(
        "SELECT count(*) FROM media_thumbnails WHERE source_sha256 = $1", img_sha) == 0

    # a user's media, newest first, `limit` at a time
    ids = [await upload(c, bob, unique()) for _ in range(3)]
    shas = [await sha_of(server, m) for m in ids]
    path = A + f"/users/{bob.user_id}/media"
    status, body = await c.request("DELETE", path, token=t, params={"order_by": "bad"})
    assert status == 400 and body["errcode"] == "M_INVALID_PARAM"
    status, body = await c.request("GET", path, token=t)
    assert body["total"] == 3  # the refused request deleted nothing
    status, body = await c.request("DELETE", path, token=t, params={"limit": "1"})
    assert status == 200 and body == {"deleted_media": [ids[2]], "total": 1}
    assert not on_disk(server, shas[2]) and on_disk(server, shas[0])
    status, body = await c.request("DELETE", path, token=t)
    assert status == 200 and sorted(body["deleted_media"]) == sorted(ids[:2])
    assert body["total"] == 2
    status, body = await c.request("GET", path, token=t)
    assert body == {"media": [], "total": 0}
    assert not any(on_disk(server, s) for s in shas)


@pytest.fixture
async def own(fresh_database: str, tmp_path: Path) -> AsyncIterator[tuple[Server, Client]]:
    """A server of its own: these tests delete or count every media item of the server."""
    async with aiohttp.ClientSession() as s:
        async for srv in start_server(make_config(tmp_path), fresh_database):
            yield srv, Client(srv.url, s)


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def test_delete_old_local_media_and_purge_remote_cache(
        own: tuple[Server, Client]) -> None:
    server, c = own
    admin = await make_admin(c, server)
    t = admin.access_token
    alice = await c.register()
    small, big = await upload(c, alice, unique(10)), await upload(c, alice, unique(100))
    avatar = await upload(c, alice, unique(50), "image/png")
    quarantined = await upload(c, alice, unique(60))
    status, _ = await c.request("PUT", f"/profile/{alice.user_id}/avatar_url",
                                {"avatar_url": f"mxc://parley.test/{avatar}"},
                                alice.access_token)
    assert status == 200
    await c.request("POST", A + f"/media/quarantine/parley.test/{quarantined}", {}, token=t)
    # `small` was downloaded after `cutoff`: counted from its last access, it is kept
    cutoff = int(time.time() * 1000) + 2_000
    await server.hs.db.execute(
        "UPDATE local_media SET last_access_ts = $1 WHERE media_id = $2", cutoff + 5_000, small)

    for params, code in (({}, "M_MISSING_PARAM"), ({"before_ts": "1000"}, "M_INVALID_PARAM"),
                         ({"before_ts": "-5"}, "M_INVALID_PARAM"),
                         ({"before_ts": "soon"}, "M_INVALID_PARAM"),
                         ({"before_ts": str(cutoff), "size_gt": "-1"}, "M_INVALID_PARAM"),
                         ({"before_ts": str(cutoff), "keep_profiles": "no"},
                          "M_INVALID_PARAM")):
        status, body = await c.request("POST", A + "/media/delete", {}, token=t, params=params)
        assert status == 400 and body["errcode"] == code, params
    status, body = await c.request("POST", A + "/media/other.test/delete", {}, token=t,
                                   params={"before_ts": str(cutoff)})
    assert status == 400 and body["errcode"] == "M_INVALID_PARAM"
    assert await server.hs.db.fetchval("SELECT count(*) FROM local_media") == 4

    status, body = await c.request("POST", A + "/media/delete", {}, token=t,
                                   params={"before_ts": str(cutoff), "size_gt": "99"})
    assert status == 200 and body == {"deleted_media": [big], "total": 1}
    status, body = await c.request("POST", A + "/media/delete", {}, token=t,
                                   params={"before_ts": str(cutoff)})
    assert status == 200 and body["deleted_media"] == []  # the avatar is kept by default
    status, body = await c.request("POST", A + "/media/parley.test/delete", {}, token=t,
                                   params={"before_ts": str(cutoff),
                                           "keep_profiles": "false"})
    assert status == 200 and body == {"deleted_media": [avatar], "total": 1}
    left = {r["media_id"] for r in await server.hs.db.fetch("SELECT media_id FROM local_media")}
    assert left == {small, quarantined}

    # the remote media cache
    assert server.hs.media is not None
    service = server.hs.media.service
    old = await service.store_remote("remote.test", "oldOne", "text/plain", None,
                                     _chunks(unique()))
    kept = await service.store_remote("remote.test", "keptOne", "text/plain", None,
                                      _chunks(unique()))
    bad = await service.store_remote("remote.test", "badOne", "text/plain", None,
                                     _chunks(unique()))
    await server.hs.db.execute(
        "UPDATE remote_media SET last_access_ts = last_access_ts - 3600000"
        " WHERE media_id <> 'keptOne'")
    status, _ = await c.request("POST", A + "/media/quarantine/remote.test/badOne", {},
                                token=t)
    assert status == 200
    status, body = await c.request("GET", A + "/media/remote.test/oldOne", token=t)
    assert status == 200 and body["media_info"]["media_origin"] == "remote.test"
    assert body["media_info"]["sha256"] == old.sha256
    for params in ({}, {"before_ts": "12"}, {"before_ts": "-1"}):
        status, body = await c.request("POST", A + "/purge_media_cache", {}, token=t,
                                       params=params)
        assert status == 400 and body["errcode"] in ("M_MISSING_PARAM", "M_INVALID_PARAM")
    assert await server.hs.db.fetchval("SELECT count(*) FROM remote_media") == 3
    status, body = await c.request("POST", A + "/purge_media_cache", {}, token=t,
                                   params={"before_ts": str(int(time.time() * 1000) - 60_000)})
    assert status == 200 and body == {"deleted": 1}
    assert not on_disk(server, old.sha256) and on_disk(server, kept.sha256)
    assert on_disk(server, bad.sha256)  # quarantined: kept, so it is not fetched again
    status, body = await c.request("GET", A + "/media/remote.test/oldOne", token=t)
    assert status == 404


async def test_users_media_statistics(own: tuple[Server, Client]) -> None:
    server, c = own
    admin = await make_admin(c, server)
    t = admin.access_token
    users: list[User] = []
    for name, sizes in (("anna", (10, 20)), ("bert", (100,)), ("carl", (1, 2, 3))):
        user = await c.register(name)
        users.append(user)
        for n in sizes:
            await upload(c, user, unique(n))
    await c.request("PUT", f"/profile/{users[1].user_id}/displayname",
                    {"displayname": "Zebra Bert"}, users[1].access_token)
    path = A + "/statistics/users/media"
    status, body = await c.request("GET", path, token=t)
    assert status == 200 and body["total"] == 3 and "next_token" not in body
    assert body["users"] == [
        {"user_id": "@anna:parley.test", "displayname": "anna", "media_count": 2,
         "media_length": 30},
        {"user_id": "@bert:parley.test", "displayname": "Zebra Bert", "media_count": 1,
         "media_length": 100},
        {"user_id": "@carl:parley.test", "displayname": "carl", "media_count": 3,
         "media_length": 6}]
    status, body = await c.request("GET", path, token=t,
                                   params={"order_by": "media_length", "dir": "b",
                                           "limit": "2"})
    assert [u["user_id"] for u in body["users"]] == ["@bert:parley.test", "@anna:parley.test"]
    assert body["next_token"] == 2 and body["total"] == 3
    status, body = await c.request("GET", path, token=t,
                                   params={"order_by": "media_length", "dir": "b",
                                           "from": "2"})
    assert [u["user_id"] for u in body["users"]] == ["@carl:parley.test"]
    status, body = await c.request("GET", path, token=t, params={"order_by": "media_count"})
    assert [u["media_count"] for u in body["users"]] == [1, 2, 3]
    status, body = await c.request("GET", path, token=t, params={"search_term": "Zebra"})
    assert [u["user_id"] for u in body["users"]] == ["@bert:parley.test"]
    status, body = await c.request("GET", path, token=t, params={"search_term": "carl"})
    assert [u["user_id"] for u in body["users"]] == ["@carl:parley.test"]
    status, body = await c.request("GET", path, token=t, params={"search_term": "parley"})
    assert body == {"users": [], "total": 0}  # the localpart, not the server name
    future = str(int(time.time() * 1000) + 60_000)
    status, body = await c.request("GET", path, token=t, params={"from_ts": future})
    assert body == {"users": [], "total": 0}
    status, body = await c.request("GET", path, token=t, params={"until_ts": future,
                                                                 "from_ts": "0"})
    assert body["total"] == 3
    bad: list[dict[str, Any]] = [
        {"order_by": "name"}, {"dir": "up"}, {"from": "-1"}, {"limit": "x"},
        {"from_ts": "-1"}, {"until_ts": "abc"}, {"from_ts": "100", "until_ts": "50"},
        {"search_term": ""}]
    for params in bad:
        status, body = await c.request("GET", path, token=t, params=params)
        assert status == 400 and body["errcode"] == "M_INVALID_PARAM", params
