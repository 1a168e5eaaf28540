"""The client endpoints' property test (tests/client_api/test_fuzz.py) run over the admin API
as a server admin: odd paths, query parameters and bodies never get a 5xx, every error is
Matrix JSON with an errcode, and a refused request changes nothing.

The routes come from the app's router (every `/_synapse/admin` route), except those that would
end the test's own access (deactivating, locking, suspending or resetting the password of the
admin the cases run as) or delete the rooms the cases use; their input goes through the same
body and parameter checks as the rest.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from hypothesis import HealthCheck, given, settings

from tests.client_api.test_fuzz import MAX_EXAMPLES, REQUEST_TIMEOUT_S, Case, _run, _world, cases
from tests.conftest import Server
from tests.helpers import Client

SKIP = re.compile(r"/(deactivate|reset_password|suspend|lock)/|/rooms/\{room_id\}$"
                  r"|/users/\{user_id\}/admin$")

TEMPLATES: list[tuple[str, Any]] = [
    (r"/v2/users/[^/]+$", {"displayname": "d", "password": "pw-secret-2",
                           "logout_devices": False,
                           "threepids": [{"medium": "email", "address": "f@example.org"}],
                           "external_ids": [{"auth_provider": "p", "external_id": "e"}]}),
    (r"/override_ratelimit$", {"messages_per_second": 0, "burst_count": 0}),
    (r"/registration_tokens/new$", {"uses_allowed": 1, "length": 8}),
    (r"/registration_tokens/", {"uses_allowed": 2, "expiry_time": None}),
    (r"/purge_history/", {"purge_up_to_ts": 0, "delete_local_events": False}),
    (r"/block$", {"block": False}),
    (r"/make_room_admin$", {}),
    (r"/send_server_notice$", {"user_id": "@x:parley.test",
                               "content": {"msgtype": "m.text", "body": "b"}}),
    (r"/delete_devices$", {"devices": ["NOPE"]}),
    (r"/devices/", {"display_name": "n"}),
    (r"/login$", {"valid_until_ms": 0}),
    (r"/experimental_features/", {"features": {"msc3881": True}}),
]

# Query parameters of admin endpoints that the shared cases do not draw (their names are not
# in tests/client_api/test_fuzz.py's QUERY_NAMES), each tried with odd values.
QUERY_ROUTES = [
    ("/v1/users/{user}/sent_invite_count", "from_ts"),
    ("/v1/users/{user}/cumulative_joined_room_count", "from_ts"),
    ("/v1/rooms/{room}/timestamp_to_event", "ts"),
]
ODD_VALUES = ["", "x", "-1", "1.5", "1e3", "99999999999999999999", "0x10", " 1", "\u0000",
              "9007199254740993", "0"]


def _admin_routes(server: Server) -> list[tuple[str, str]]:
    out = []
    for resource in server.app.router.resources():
        template = resource.canonical
        if not template.startswith("/_synapse/admin") or SKIP.search(template):
            continue
        for route in resource:
            if route.method in ("GET", "PUT", "POST", "DELETE"):
                out.append((route.method, template))
    return sorted(set(out))


async def test_fuzz_admin_endpoints(c: Client, server: Server) -> None:
    w = await _world(c)
    await server.hs.accounts.set_admin(w.user.user_id, True)
    assert server.hs.admin is not None
    server.hs.admin.users.states.forget_sessions(w.user.user_id)
    routes = _admin_routes(server)
    assert len(routes) > 30, routes
    loop = asyncio.get_running_loop()
    seen: dict[int, int] = {}

    @settings(max_examples=MAX_EXAMPLES // 2, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(case=cases(w, routes, TEMPLATES))
    def prop(case: Case) -> None:
        status, data, diff = asyncio.run_coroutine_threadsafe(
            _run(c, server, w, case), loop).result(REQUEST_TIMEOUT_S * 3)
        seen[status] = seen.get(status, 0) + 1
        assert status < 500, (case, status, data)
        if status >= 400:
            assert isinstance(data, dict), (case, status, data)
            assert isinstance(data.get("errcode"), str), (case, status, data)
            assert data["errcode"].startswith("M_"), (case, status, data)
            assert diff == [], (case, status, data, diff)

    await asyncio.to_thread(prop)
    assert sum(n for s, n in seen.items() if s < 300) > 0, seen
    assert sum(n for s, n in seen.items() if 400 <= s < 500) > 0, seen


async def test_admin_query_parameters_never_fail(c: Client, server: Server) -> None:
    w = await _world(c)
    await server.hs.accounts.set_admin(w.user.user_id, True)
    assert server.hs.admin is not None
    server.hs.admin.users.states.forget_sessions(w.user.user_id)
    for template, name in QUERY_ROUTES:
        path = "/_synapse/admin" + template.format(user=w.user.user_id, room=w.rooms[0])
        for value in ODD_VALUES:
            for extra in ({}, {"dir": "b"}, {"dir": "sideways"}):
                status, data = await c.request("GET", path, token=w.user.access_token,
                                               params={name: value, **extra})
                assert status < 500, (path, value, extra, status, data)
                if status >= 400:
                    assert str(data["errcode"]).startswith("M_"), (path, value, data)

