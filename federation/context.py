"""What the federation handlers need, gathered in homeserver/app.py and stored on the app."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from federation.auth import authenticate
from homeserver.config import RateLimit
from homeserver.federation.keys import KeyRing
from homeserver.http import parse_json_object
from homeserver.ratelimit import RateLimiter
from homeserver.rooms.reader import RoomReader
from homeserver.users.profiles import ProfileService


@dataclass(slots=True)
class FederationContext:
    server_name: str
    keys: KeyRing
    profiles: ProfileService
    reader: RoomReader
    well_known_server: str = ""
    limiter: RateLimiter | None = None
    rate_limit: RateLimit = RateLimit(50.0, 500)
    # Room services (federation/rooms.py etc.), set when wired.
    rooms: Any = None  # homeserver.federation.serving.FederationRooms
    inbound: Any = None  # homeserver.federation.inbound.Inbound
    devices: Any = None  # homeserver.federation.devices.DeviceListFederation
    e2ee_keys: Any = None  # homeserver.federation.e2ee_keys.RemoteKeyQueries
    public_rooms: Any = None  # homeserver.rooms.directory.PublicRoomDirectory
    openid: Any = None  # homeserver.users.openid.OpenIdService
    media: Any = None  # homeserver.media.service.MediaService
    thumbnails: Any = None  # homeserver.media.thumbnailer.Thumbnailer
    third_party_invites: Any = None  # homeserver.identity.invites.ThirdPartyInvites

    async def servers_in_room(self, room_id: str) -> list[str]:
        """This server first, then the others with joined members."""
        servers = [self.server_name]
        if self.rooms is not None:
            servers += [s for s in await self.rooms.servers_in_room(room_id)
                        if s != self.server_name]
        return servers


FED: web.AppKey[FederationContext] = web.AppKey("parley_federation_ctx", FederationContext)


def fed(request: web.Request) -> FederationContext:
    return request.app[FED]


async def signed(request: web.Request) -> tuple[str, Any]:
    """The verified origin of the request, and its JSON body (None for none).

    The body is parsed before the signature is checked because the signature covers it; a
    body that does not parse gets M_NOT_JSON whatever the signature."""
    content: Any = None
    raw = await request.read()
    if raw.strip():
        content = parse_json_object(raw, "Content")
    ctx = fed(request)
    origin = await authenticate(request, content, ctx.server_name, ctx.keys)
    if ctx.limiter is not None:  # per origin, once it is known to be that origin
        ctx.limiter.check("federation", origin, ctx.rate_limit)
    return origin, content
