"""What the admin handlers need, gathered in homeserver/app.py; and the admin check."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from client_api.context import auth
from homeserver.admin.destinations import DestinationAdmin
from homeserver.admin.media import MediaAdminService
from homeserver.admin.notices import ServerNotices
from homeserver.admin.registration_tokens import RegistrationTokens
from homeserver.admin.room_events import RoomEventsAdmin
from homeserver.admin.rooms import RoomAdminService
from homeserver.admin.user_data import UserDataAdmin
from homeserver.admin.users import UserAdminService
from homeserver.errors import forbidden
from homeserver.http import query_int
from homeserver.reports.service import ReportService
from homeserver.types import Requester


@dataclass(slots=True)
class AdminContext:
    users: UserAdminService
    rooms: RoomAdminService
    tokens: RegistrationTokens
    reports: ReportService
    notices: ServerNotices
    server_version: str
    media: MediaAdminService
    destinations: DestinationAdmin
    user_data: UserDataAdmin
    room_events: RoomEventsAdmin


ADMIN: web.AppKey[AdminContext] = web.AppKey("parley_admin_ctx", AdminContext)


def admin_ctx(request: web.Request) -> AdminContext:
    return request.app[ADMIN]


async def require_admin(request: web.Request) -> Requester:
    """The requester, who must be a server admin (403 M_FORBIDDEN otherwise)."""
    requester = await auth(request)
    if not requester.is_admin:
        raise forbidden("You are not a server admin")
    return requester


def paging(request: web.Request, default_limit: int = 100) -> tuple[int, int]:
    """Synapse's `from` (an offset) and `limit` query parameters (400 M_INVALID_PARAM when
    negative or not a number)."""
    return (query_int(request, "from", 0, minimum=0),
            query_int(request, "limit", default_limit, minimum=0, maximum=10_000))


def page_body(items_key: str, items: list[Any], offset: int, total: int) -> dict[str, Any]:
    """A page as Synapse answers one: the items, `total`, and `next_token` when more follow."""
    body: dict[str, Any] = {items_key: items, "total": total}
    if offset + len(items) < total:
        body["next_token"] = str(offset + len(items))
    return body
