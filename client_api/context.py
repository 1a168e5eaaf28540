"""What the client API handlers need, gathered once in homeserver/app.py and stored on the app.

The context holds services, one per area, and no database: a handler takes the one or two
services its endpoint is about (`ctx(request).devices`, `ctx(request).sessions`, ...).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from client_api.guest_access import guest_may_use
from e2ee.backup import KeyBackupService
from e2ee.cross_signing import CrossSigningService
from e2ee.dehydrated import DehydratedDeviceService
from e2ee.device_keys import DeviceKeyService
from e2ee.device_lists import DeviceListService
from e2ee.to_device import ToDeviceService
from homeserver.appservice.auth import AppServiceAuth
from homeserver.appservice.registration import AppService
from homeserver.appservice.service import AppServiceQueries
from homeserver.config import Config
from homeserver.errors import Codes, MatrixError
from homeserver.identity.captcha import Recaptcha
from homeserver.identity.invites import ThirdPartyInvites
from homeserver.identity.sso import SsoService
from homeserver.identity.threepids import ThreepidService
from homeserver.json_input import text_problem
from homeserver.media.preview import PreviewService
from homeserver.media.service import MediaService
from homeserver.media.thumbnailer import Thumbnailer
from homeserver.observability.logs import request_user
from homeserver.presence.service import PresenceService
from homeserver.push.notifications import NotificationService
from homeserver.push.pushers import PusherService
from homeserver.push.service import PushRuleService
from homeserver.ratelimit import RateLimiter
from homeserver.receipts.service import ReceiptService
from homeserver.reports.service import ReportService
from homeserver.rooms.directory import PublicRoomDirectory
from homeserver.rooms.mutual_rooms import MutualRooms
from homeserver.rooms.reader import RoomReader
from homeserver.rooms.service import RoomService
from homeserver.rooms.spaces import SpaceService
from homeserver.rooms.threads import ThreadService
from homeserver.rooms.timestamps import TimestampLookup
from homeserver.rooms.typing import TypingService
from homeserver.rooms.upgrades import RoomUpgrader
from homeserver.search.service import SearchService
from homeserver.sync.initial_sync import InitialSync
from homeserver.sync.peek import RoomPeek
from homeserver.sync.peeks import SyncPeeks
from homeserver.sync.service import SyncService
from homeserver.sync.sliding import SlidingSyncService
from homeserver.types import Requester
from homeserver.users.account_data import AccountDataService
from homeserver.users.accounts import AccountService
from homeserver.users.devices import DeviceService
from homeserver.users.filters import FilterService
from homeserver.users.openid import OpenIdService
from homeserver.users.profiles import ProfileService
from homeserver.users.sessions import SessionService


@dataclass(slots=True)
class ClientContext:
    config: Config
    accounts: AccountService
    sessions: SessionService
    devices: DeviceService
    profiles: ProfileService
    account_data: AccountDataService
    filters: FilterService
    push_rules: PushRuleService
    rooms: RoomService
    sync: SyncService
    reader: RoomReader
    limiter: RateLimiter
    uia: object  # client_api.uia.UIA
    # Real-time services (issue 3); each module replaces `Any` with its class when wired.
    typing: TypingService | None = None
    receipts: ReceiptService | None = None
    to_device: ToDeviceService | None = None
    presence: PresenceService | None = None
    # End-to-end encryption keys (e2ee/).
    keys: DeviceKeyService | None = None
    cross_signing: CrossSigningService | None = None
    device_lists: DeviceListService | None = None
    dehydrated: DehydratedDeviceService | None = None
    key_backup: KeyBackupService | None = None
    pushers: PusherService | None = None
    notifications: NotificationService | None = None
    media: MediaService | None = None
    thumbnails: Thumbnailer | None = None
    previews: PreviewService | None = None
    reports: ReportService | None = None
    public_rooms: PublicRoomDirectory | None = None
    openid: OpenIdService | None = None
    sliding_sync: SlidingSyncService | None = None
    search: SearchService | None = None
    threads: ThreadService | None = None
    upgrades: RoomUpgrader | None = None
    spaces: SpaceService | None = None
    timestamps: TimestampLookup | None = None
    mutual_rooms: MutualRooms | None = None
    initial_sync: InitialSync | None = None
    peek: RoomPeek | None = None  # GET /events?room_id= into a world-readable room
    peeks: SyncPeeks | None = None  # MSC2753 POST /peek, /unpeek (rooms.peek in /sync)
    # Application services (homeserver/appservice/): as_token auth and their queries.
    appservice_auth: AppServiceAuth | None = None
    appservices: AppServiceQueries | None = None
    # Third-party identifiers, identity servers, captcha and CAS (homeserver/identity/).
    threepids: ThreepidService | None = None
    third_party_invites: ThirdPartyInvites | None = None
    sso: SsoService | None = None
    recaptcha: Recaptcha | None = None
    # Marks a user erased (homeserver/admin/users.py), for /account/deactivate with `erase`.
    erase_user: Callable[[str], Awaitable[None]] | None = None


CTX: web.AppKey[ClientContext] = web.AppKey("parley_client_ctx", ClientContext)


def ctx(request: web.Request) -> ClientContext:
    return request.app[CTX]


def access_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return request.query.get("access_token")


def appservice_of(request: web.Request) -> AppService:
    """The application service whose as_token the request carries (m.login.application_service
    registration and login), else 401: M_MISSING_TOKEN without a token, M_UNKNOWN_TOKEN for one
    that is no AS's."""
    token = access_token(request)
    if token is None:
        raise MatrixError(401, Codes.MISSING_TOKEN, "Missing access token")
    c = ctx(request)
    service = c.appservice_auth.registry.by_token(token) if c.appservice_auth else None
    if service is None:
        raise MatrixError(401, Codes.UNKNOWN_TOKEN, "Unknown application service token",
                          soft_logout=False)
    return service


async def auth(request: web.Request, allow_locked: bool = False) -> Requester:
    token = access_token(request)
    if token is None:
        raise MatrixError(401, Codes.MISSING_TOKEN, "Missing access token")
    if text_problem(token) is not None:  # e.g. header bytes that are not UTF-8: no such token
        raise MatrixError(401, Codes.UNKNOWN_TOKEN, "Unknown access token", soft_logout=False)
    c = ctx(request)
    service = c.appservice_auth.registry.by_token(token) if c.appservice_auth else None
    if service is not None:
        assert c.appservice_auth is not None
        requester = await c.appservice_auth.requester(
            service, request.query.get("user_id"),
            # The stable name (spec v1.17) or MSC3202's, which bridges still send.
            request.query.get("device_id", request.query.get("org.matrix.msc3202.device_id")))
        request_user.set(requester.user_id)
        return requester
    requester = await c.sessions.authenticate(token, ip=request.remote,
                                              allow_locked=allow_locked)
    request_user.set(requester.user_id)  # for the request's log lines
    if requester.is_guest and not guest_may_use(request):
        # The one check of what guests may do (the list is in client_api/guest_access.py).
        raise MatrixError(403, Codes.GUEST_ACCESS_FORBIDDEN,
                          "Guest access is not allowed for this endpoint")
    return requester
