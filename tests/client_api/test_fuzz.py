"""Property test over every client endpoint: odd paths, query parameters and bodies never get a
5xx, every error is Matrix JSON with an errcode, and a refused request changes nothing.

The routes come from the running app's router, so a new endpoint is fuzzed without editing this
file. Path parameters mix real ids (a room the user is in, an event of it, an alias, the user's
own id and device) with broken ones (NUL, percent-encoded invalid UTF-8, no sigil, very long);
bodies are spec-shaped templates with one part replaced by an arbitrary JSON value, arbitrary
JSON (floats, integers past 2**53, NUL, deep nesting), or bytes that are not JSON at all.

Hypothesis runs in a worker thread and sends each request to the server's event loop, so the
server keeps serving while a case is generated and shrunk. The run is bounded by `MAX_EXAMPLES`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from tests.client_api.unchanged import changed, digest
from tests.conftest import Server
from tests.helpers import Client, User

MAX_EXAMPLES = int(os.environ.get("PARLEY_FUZZ_EXAMPLES", "400"))  # raise it for a deeper run
REQUEST_TIMEOUT_S = 10.0

# Endpoints that end the session or the account, or need the password: fuzzing them would only
# log the test user out. Their input handling goes through the same body parser as the rest.
SKIP = re.compile(r"/(logout|deactivate|password|delete_devices|refresh)\b")


@dataclass
class World:
    user: User
    other: User
    rooms: list[str]
    event_ids: list[str]
    aliases: list[str]


@dataclass(frozen=True)
class Case:
    method: str
    path: str  # already percent-encoded
    query: str  # already percent-encoded, without "?"
    body: bytes | None
    token: bool


# ---------------------------------------------------------------------- values


def _enc(s: str) -> str:
    return quote(s.encode("utf-8", "surrogatepass"), safe="")


ODD_TEXT = st.sampled_from([
    "", "\x00", "a\x00b", "\ud800", "%", "%00", "\u202e", "☃", "\n", " ", "..", "/", "#", "!",
    "$", "@", ":", "@:", "!:", "#:", "$:", "@a:b:c", "!a:bad server", "x" * 300, "x" * 3000,
    "-1", "0", "1.5", "1e3", "99999999999999999999", "9" * 5000, "true", "null", "[]", "{}",
    "s0", "s1_2_3_4_5_6", "s-1", "s99999999999999999999", "t1_1", "t-1_-1", "t0", "٣",
])
TEXT = st.one_of(ODD_TEXT, st.text(max_size=20))

INTS = st.one_of(
    st.integers(-(2**53) + 1, 2**53 - 1),
    st.sampled_from([2**53, -(2**53), 2**63, -(2**63) - 1, 2**64, 10**30, 0, -1, 1]),
)
JSON_LEAF = st.one_of(
    st.none(), st.booleans(), INTS,
    st.floats(allow_nan=False, allow_infinity=False), TEXT,
)

def _nested(levels: int) -> Any:
    v: Any = []
    for i in range(levels):
        v = {"k": v} if i % 2 else [v]
    return v


# Past our limit (64), past orjson's write limit (254); json.dumps still writes it.
DEEP = st.sampled_from([_nested(65), _nested(300)])
JSON = st.recursive(
    st.one_of(JSON_LEAF, DEEP),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(TEXT, inner, max_size=4)),
    max_leaves=12,
)


def _deep(levels: int) -> bytes:
    return b'{"a":' + b"[" * levels + b"]" * levels + b"}"


RAW_BODIES = st.sampled_from([
    b"", b" ", b"{", b"[]", b"null", b"1", b'"x"', b"\xff\xfe", b'{"a": NaN}', b"1e400",
    b'{"a": "\\ud800"}', b'{"a": "\\u0000"}', b'{"a": 1e400}', _deep(100), _deep(1000),
    _deep(5000), b'{"a":1,"a":2}',
])


def _dumps(value: Any) -> bytes:
    # json (not orjson): it writes integers of any size, which is part of the point.
    return json.dumps(value).encode()


# ---------------------------------------------------------------------- templates


ROOM_KEY = {"first_message_index": 0, "forwarded_count": 0, "is_verified": False,
            "session_data": {"ephemeral": "e", "ciphertext": "c", "mac": "m"}}


def templates(w: World) -> list[tuple[str, Any]]:
    """(path regex, a valid body) for the endpoints that take one."""
    u, o, room = w.user, w.other, w.rooms[0]
    return [
        (r"/createRoom$", {
            "preset": "public_chat", "name": "n", "topic": "t", "invite": [o.user_id],
            "creation_content": {"m.federate": True},
            "initial_state": [{"type": "m.room.canonical_alias", "state_key": "",
                               "content": {"alias": w.aliases[0]}},
                              {"type": "m.custom", "state_key": "k", "content": {"a": 1}}],
            "power_level_content_override": {"users_default": 0, "events": {"m.x": 10}}}),
        (r"/send/", {"msgtype": "m.text", "body": "hi",
                     "m.relates_to": {"rel_type": "m.thread", "event_id": w.event_ids[0]}}),
        (r"/state/m\.room\.canonical_alias", {"alias": w.aliases[0],
                                              "alt_aliases": w.aliases[1:]}),
        (r"/state/", {"topic": "t", "name": "n", "join_rule": "public"}),
        (r"/redact/", {"reason": "r"}),
        (r"/(invite|kick|ban|unban)$", {"user_id": o.user_id, "reason": "r"}),
        (r"/(join|knock|leave)(/|$)", {"reason": "r"}),
        (r"/profile/", {"displayname": "d", "avatar_url": "mxc://parley.test/a"}),
        (r"/account_data/", {"a": 1, "b": [1, 2]}),
        (r"/filter$", {"room": {"timeline": {"limit": 5, "types": ["m.room.message"]},
                                "state": {"lazy_load_members": True}},
                       "presence": {"not_types": ["*"]}, "event_fields": ["content"]}),
        (r"/typing/", {"typing": True, "timeout": 1000}),
        (r"/receipt/", {"thread_id": "main"}),
        (r"/read_markers$", {"m.fully_read": w.event_ids[0], "m.read": w.event_ids[0]}),
        (r"/tags/", {"order": 0.5}),
        (r"/directory/room/", {"room_id": room}),
        (r"/directory/list/room/", {"visibility": "public"}),
        (r"/sendToDevice/", {"messages": {o.user_id: {"*": {"a": 1}}}}),
        (r"/keys/upload$", {"one_time_keys": {"curve25519:F1": "abc",
                                              "signed_curve25519:F2": {"key": "k"}},
                            "fallback_keys": {"signed_curve25519:FB": {"key": "k",
                                                                       "fallback": True}}}),
        (r"/keys/query$", {"device_keys": {u.user_id: [], o.user_id: ["X"]}, "timeout": 10}),
        (r"/keys/claim$", {"one_time_keys": {o.user_id: {"D": "signed_curve25519"}}}),
        (r"/keys/device_signing/upload$", {"master_key": {
            "user_id": u.user_id, "usage": ["master"], "keys": {"ed25519:abc": "abc"}}}),
        (r"/keys/signatures/upload$", {u.user_id: {u.device_id: {"signatures": {}}}}),
        (r"/dehydrated_device/[^/]+/events$", {"next_batch": "0"}),
        (r"/dehydrated_device$", {"device_id": "DH", "device_data": {"algorithm": "x"},
                                  "device_keys": {"user_id": u.user_id, "device_id": "DH"}}),
        (r"/room_keys/version", {"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2",
                                 "auth_data": {"public_key": "A" * 43,
                                               "signatures": {u.user_id: {"ed25519:D": "s"}}},
                                 "version": "1"}),
        (r"/room_keys/keys/[^/]+/[^/]+$", ROOM_KEY),
        (r"/room_keys/keys/[^/]+$", {"sessions": {"s1": ROOM_KEY}}),
        (r"/room_keys/keys$", {"rooms": {room: {"sessions": {"s1": ROOM_KEY}}}}),
        (r"/publicRooms$", {"limit": 5, "since": "1", "filter": {"generic_search_term": "n"}}),
        (r"/pushrules/", {"actions": ["notify"], "pattern": "x", "enabled": True,
                          "conditions": [{"kind": "event_match", "key": "type",
                                          "pattern": "m.room.message"}]}),
        (r"/devices/", {"display_name": "d"}),
        (r"/presence/", {"presence": "online", "status_msg": "s"}),
        (r"/user_directory/search$", {"search_term": "u", "limit": 5}),
        (r"/register$", {"username": "f" + secrets.token_hex(4), "password": "pw-secret-1",
                         "auth": {"type": "m.login.dummy"}, "device_id": "D",
                         "initial_device_display_name": "x", "inhibit_login": True}),
        (r"/login$", {"type": "m.login.password", "password": "wrong",
                      "identifier": {"type": "m.id.user", "user": u.user_id}}),
    ]


@st.composite
def mutated(draw: st.DrawFn, template: Any) -> Any:
    """The template with one value replaced by arbitrary JSON, or one key removed or added."""
    body = json.loads(json.dumps(template))
    if not isinstance(body, dict) or not body:
        return draw(JSON)
    holder: Any = body
    key: Any = draw(st.sampled_from(sorted(holder)))
    while isinstance(holder[key], dict | list) and holder[key] and draw(st.booleans()):
        holder = holder[key]
        key = (draw(st.sampled_from(sorted(holder))) if isinstance(holder, dict)
               else draw(st.integers(0, len(holder) - 1)))
    action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
    if action == "replace":
        holder[key] = draw(JSON)
    elif action == "delete":
        del holder[key]
    elif isinstance(holder, dict):
        holder[draw(TEXT)] = draw(JSON)
    else:
        holder.append(draw(JSON))
    return body


# ---------------------------------------------------------------------- cases


_PARAM = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")


def param_values(w: World, name: str) -> st.SearchStrategy[str]:
    real = {
        "room_id": w.rooms, "room": w.rooms + w.aliases, "alias": w.aliases,
        "event_id": w.event_ids, "user_id": [w.user.user_id, w.other.user_id],
        "device_id": [w.user.device_id], "event_type": ["m.room.message", "m.custom"],
        "type": ["m.custom", "m.push_rules"], "txn_id": ["t1"], "state_key": ["", "k"],
        "field": ["displayname", "avatar_url"], "tag": ["m.favourite"], "filter_id": ["0"],
        "receipt_type": ["m.read", "m.fully_read", "m.read.private"], "rel_type": ["m.thread"],
        "scope": ["global"], "kind": ["override", "content", "room", "sender", "underride"],
        "rule_id": [".m.rule.master", "mine"],
        "version": ["1"], "session_id": ["s1"],
    }.get(name, ["x"])
    return st.one_of(st.sampled_from(real), st.sampled_from(real), TEXT)


QUERY_NAMES = ["limit", "timeout", "from", "to", "dir", "filter", "since", "full_state",
               "set_presence", "at", "membership", "not_membership", "format", "kind", "before",
               "after", "server", "access_token", "username", "token", "version", "x"]


FILTER = {"room": {"timeline": {"limit": 5, "types": ["m.room.message"], "not_senders": []},
                   "state": {"lazy_load_members": True, "types": ["m.room.member"]},
                   "rooms": [], "include_leave": False},
          "presence": {"limit": 1}, "account_data": {"not_types": ["*"]},
          "event_fields": ["content.body"]}


@st.composite
def query_strings(draw: st.DrawFn) -> str:
    params = draw(st.lists(st.tuples(st.sampled_from(QUERY_NAMES), st.one_of(
        TEXT, st.sampled_from(["b", "f", "true", "false", "5", "0", "1"]),
        st.builds(lambda v: json.dumps(v), JSON),
        st.builds(lambda v: json.dumps(v), mutated(FILTER)),
        st.builds(lambda v: json.dumps(v), mutated(FILTER["room"]["timeline"])),
        st.just(_deep(1000).decode()))), max_size=3))
    out = []
    for k, v in params:
        if k == "timeout":  # a long poll would only make the run slow
            v = draw(st.sampled_from(["0", "-1", "x", "1.5", "99999999999999999999"]))
        out.append(f"{_enc(k)}={_enc(v)}")
    return "&".join(out)


@st.composite
def cases(draw: st.DrawFn, w: World, routes: list[tuple[str, str]],
          tmpl: list[tuple[str, Any]]) -> Case:
    method, template = draw(st.sampled_from(routes))
    parts: list[str] = []
    pos = 0
    for m in _PARAM.finditer(template):
        parts.append(template[pos:m.start()])
        name = m.group(1)
        if name == "v":
            parts.append("v3")
        elif name == "tail":
            parts.append(_enc(draw(TEXT)))
        else:
            parts.append(_enc(draw(param_values(w, name))))
        pos = m.end()
    parts.append(template[pos:])
    path = "".join(parts)
    body: bytes | None = None
    if method in ("PUT", "POST") or draw(st.booleans()):
        shaped = [t for rx, t in tmpl if re.search(rx, template) or re.search(rx, path)]
        kind = draw(st.sampled_from(["template", "template", "json", "raw", "none"]))
        if kind == "template" and shaped:
            body = _dumps(draw(mutated(shaped[0])))
        elif kind in ("json", "template"):
            body = _dumps(draw(st.one_of(JSON, st.dictionaries(TEXT, JSON, max_size=5))))
        elif kind == "raw":
            body = draw(RAW_BODIES)
    with_token = draw(st.sampled_from([True] * 9 + [False]))
    return Case(method, path, draw(query_strings()), body, with_token)


# ---------------------------------------------------------------------- the property


async def _world(c: Client) -> World:
    u, o = await c.register(), await c.register()
    rooms = [await c.create_room(u, preset="public_chat") for _ in range(3)]
    await c.join(o, rooms[0])
    event_ids = [await c.send(u, rooms[0], "hello"), await c.send(o, rooms[0], "hi")]
    aliases = []
    for r in rooms[:2]:
        alias = f"#fz{secrets.token_hex(4)}:parley.test"
        status, data = await c.request("PUT", f"/directory/room/{quote(alias)}",
                                       {"room_id": r}, u.access_token)
        assert status == 200, data
        aliases.append(alias)
    status, data = await c.request("POST", "/room_keys/version", {  # backup version "1"
        "algorithm": "m.megolm_backup.v1.curve25519-aes-sha2",
        "auth_data": {"public_key": "A" * 43}}, u.access_token)
    assert status == 200, data
    return World(u, o, rooms, event_ids, aliases)


def _routes(server: Server) -> list[tuple[str, str]]:
    out = []
    for resource in server.app.router.resources():
        template = resource.canonical
        if not template.startswith("/_matrix/client") or SKIP.search(template):
            continue
        for route in resource:
            if route.method in ("GET", "PUT", "POST", "DELETE"):
                out.append((route.method, template))
    return sorted(set(out))


def non_canonical(value: Any) -> str | None:
    """A number canonical JSON cannot hold (a float, |n| > 2**53 - 1), else None."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, float) or (isinstance(v, int) and not isinstance(v, bool)
                                    and abs(v) > 2**53 - 1):
            return repr(v)
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return None


async def _new_events(db: Any, after: int) -> list[str]:
    async with db.connection() as conn:
        rows = await conn.fetch("SELECT json FROM events WHERE stream_ordering > $1", after)
    return [str(r["json"]) for r in rows]


async def _run(c: Client, server: Server, w: World, case: Case) -> tuple[int, Any, list[str]]:
    url = server.url + case.path + ("?" + case.query if case.query else "")
    headers = {"Authorization": f"Bearer {w.user.access_token}"} if case.token else {}
    if case.body is not None:
        headers["Content-Type"] = "application/json"
    db = server.hs.db
    before = await digest(db)
    last = await db.fetchval("SELECT coalesce(max(stream_ordering), 0) FROM events")
    async with c.session.request(case.method, URL(url, encoded=True), data=case.body,
                                 headers=headers,
                                 timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)) as resp:
        status, raw = resp.status, await resp.read()
    after = await digest(db) if status >= 400 else before
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        data = raw
    if status < 300:  # what an accepted request wrote must be valid: canonical JSON events
        for ev in await _new_events(db, last):
            assert non_canonical(orjson.loads(ev)) is None, (case, ev)
    return status, data, changed(before, after)


async def test_fuzz_client_endpoints(c: Client, server: Server) -> None:
    w = await _world(c)
    routes = _routes(server)
    assert len(routes) > 60, routes  # the walk found the app's endpoints
    loop = asyncio.get_running_loop()
    tmpl = templates(w)
    seen: dict[int, int] = {}

    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(case=cases(w, routes, tmpl))
    def prop(case: Case) -> None:
        status, data, diff = asyncio.run_coroutine_threadsafe(
            _run(c, server, w, case), loop).result(REQUEST_TIMEOUT_S * 3)
        seen[status] = seen.get(status, 0) + 1
        assert status < 500, (case, status, data)
        if status >= 400:
            assert isinstance(data, dict), (case, status, data)
            if not (status == 401 and "flows" in data):  # user-interactive auth
                assert isinstance(data.get("errcode"), str), (case, status, data)
                assert data["errcode"].startswith("M_"), (case, status, data)
                assert isinstance(data.get("error"), str), (case, status, data)
            assert diff == [], (case, status, data, diff)

    await asyncio.to_thread(prop)
    # The run exercised both sides: some requests were accepted, many refused.
    assert sum(n for s, n in seen.items() if s < 300) > 0, seen
    assert sum(n for s, n in seen.items() if 400 <= s < 500) > 0, seen


# ---------------------------------------------------------------------- WebSocket frames

WS_METHODS = ["send", "state", "typing", "receipt", "to_device", "ping", "nope"]


def ws_templates(w: World) -> dict[str, Any]:
    room, ev = w.rooms[0], w.event_ids[0]
    return {
        "send": {"room_id": room, "type": "m.room.message", "txn_id": "t",
                 "content": {"msgtype": "m.text", "body": "b"}},
        "state": {"room_id": room, "type": "m.room.canonical_alias", "state_key": "",
                  "content": {"alias": w.aliases[0]}},
        "typing": {"room_id": room, "typing": True, "timeout": 1000},
        "receipt": {"room_id": room, "receipt_type": "m.read", "event_id": ev,
                    "thread_id": "main"},
        "to_device": {"type": "m.x", "txn_id": "t", "messages": {w.other.user_id: {"*": {}}}},
        "ping": {}, "nope": {},
    }


@st.composite
def frames(draw: st.DrawFn, w: World) -> bytes:
    kind = draw(st.sampled_from(["shaped", "shaped", "shaped", "json", "raw"]))
    if kind == "raw":
        return draw(RAW_BODIES)
    if kind == "json":
        return _dumps(draw(JSON))
    method = draw(st.sampled_from(WS_METHODS))
    template = ws_templates(w)[method]
    if "content" in template and draw(st.booleans()):  # odd event content, the rest valid
        params = dict(template, content=draw(mutated(template["content"])))
    else:
        params = draw(mutated(template))
    if isinstance(params, dict) and isinstance(params.get("txn_id"), str):
        params["txn_id"] += secrets.token_hex(4)  # a fresh transaction, so sends really write
    frame: dict[str, Any] = {"id": draw(st.one_of(st.just("r"), JSON)), "method": method,
                             "params": params}
    if draw(st.integers(0, 9)) == 0:
        frame = draw(mutated(frame))
    return _dumps(frame)


async def test_fuzz_websocket_frames(c: Client, server: Server) -> None:
    w = await _world(c)
    loop = asyncio.get_running_loop()
    headers = {"Authorization": f"Bearer {w.user.access_token}"}
    seen = {"result": 0, "error": 0}
    async with c.session.ws_connect(server.url + "/_matrix/client/v3/sync",
                                    headers=headers) as ws:

        async def one(frame: bytes) -> tuple[dict[str, Any], list[str]]:
            before = await digest(server.hs.db)
            last = await server.hs.db.fetchval(
                "SELECT coalesce(max(stream_ordering), 0) FROM events")
            await ws.send_bytes(frame)
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                while True:
                    msg = await ws.receive()
                    assert msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY), msg
                    data = orjson.loads(msg.data)
                    if data.get("type") != "sync":
                        break
            after = await digest(server.hs.db) if "error" in data else before
            if "result" in data:
                for ev in await _new_events(server.hs.db, last):
                    assert non_canonical(orjson.loads(ev)) is None, (frame, ev)
            return data, changed(before, after)

        @settings(max_examples=MAX_EXAMPLES // 2, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        @given(frame=frames(w))
        def prop(frame: bytes) -> None:
            reply, diff = asyncio.run_coroutine_threadsafe(one(frame), loop).result(
                REQUEST_TIMEOUT_S * 3)
            assert ("result" in reply) != ("error" in reply), (frame, reply)
            if "error" in reply:
                seen["error"] += 1
                err = reply["error"]
                assert isinstance(err.get("errcode"), str), (frame, reply)
                assert err["errcode"].startswith("M_"), (frame, reply)
                # the socket's stand-in for a 500
                assert err.get("error") != "Internal server error", (frame, reply)
                assert diff == [], (frame, reply, diff)
            else:
                seen["result"] += 1

        await asyncio.to_thread(prop)
    assert seen["result"] > 0 and seen["error"] > 0, seen
