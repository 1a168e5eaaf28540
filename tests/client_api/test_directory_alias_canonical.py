"""Deleting an alias takes it out of the room's m.room.canonical_alias (as Synapse does)."""

from __future__ import annotations

import secrets
from urllib.parse import quote

from tests.helpers import Client


async def test_deleting_the_canonical_alias_clears_it(c: Client) -> None:
    alice = await c.register()
    room = await c.create_room(alice)
    name = f"#del{secrets.token_hex(4)}:parley.test"
    alt = f"#alt{secrets.token_hex(4)}:parley.test"
    for a in (name, alt):
        status, body = await c.request("PUT", f"/directory/room/{quote(a)}", {"room_id": room},
                                       alice.access_token)
        assert status == 200, body
    status, body = await c.request("PUT", f"/rooms/{room}/state/m.room.canonical_alias",
                                   {"alias": name, "alt_aliases": [alt]}, alice.access_token)
    assert status == 200, body
    status, _ = await c.request("DELETE", f"/directory/room/{quote(name)}", None,
                                alice.access_token)
    assert status == 200
    status, body = await c.request("GET", f"/rooms/{room}/state/m.room.canonical_alias",
                                   token=alice.access_token)
    assert status == 200 and "alias" not in body and body["alt_aliases"] == [alt]
    status, _ = await c.request("DELETE", f"/directory/room/{quote(alt)}", None, alice.access_token)
    status, body = await c.request("GET", f"/rooms/{room}/state/m.room.canonical_alias",
                                   token=alice.access_token)
    assert body == {"alt_aliases": []}
