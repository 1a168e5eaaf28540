"""Composition root: the only place that creates and wires stores, services and the web app."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

from aiohttp import web

from client_api import (
    account_data,
    devices,
    directory,
    login,
    presence,
    profile,
    pushrules,
    receipts,
    register,
    rooms,
    sync,
    tags,
    to_device,
    user_directory,
)
from client_api.context import CTX, ClientContext
from client_api.uia import UIA
from client_api.websocket import setup as setup_websockets
from e2ee.store import ToDeviceStore
from e2ee.to_device import ToDeviceService
from homeserver.config import Config
from homeserver.errors import Codes, MatrixError
from homeserver.events.store import EventStore, StateGroupStore
from homeserver.http import MatrixAppRunner, error_middleware, error_response
from homeserver.presence.service import PresenceService
from homeserver.presence.store import PresenceStore
from homeserver.ratelimit import RateLimiter
from homeserver.receipts.service import ReceiptService
from homeserver.receipts.store import ReceiptStore
from homeserver.rooms.members import MembershipIndex
from homeserver.rooms.reader import RoomReader
from homeserver.rooms.service import RoomService
from homeserver.rooms.state import EventCache, RoomRegistry, StateGroups
from homeserver.rooms.store import RoomStore
from homeserver.rooms.typing import TypingService
from homeserver.rooms.visibility import Visibility
from homeserver.rooms.writer import MembershipHook, RoomWriter
from homeserver.signing import ServerSigningKey
from homeserver.storage.database import Database
from homeserver.storage.migrate import migrate
from homeserver.storage.streams import StreamIdGen
from homeserver.sync.notifier import Notifier
from homeserver.sync.service import SyncService
from homeserver.sync.streams import SyncSources
from homeserver.users.service import UserService
from homeserver.users.store import UserStore

log = logging.getLogger(__name__)


class Background(Protocol):
    """A service with a background task (timers, sweeps), started and stopped with the app."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass(slots=True)
class Homeserver:
    config: Config
    db: Database
    key: ServerSigningKey
    users: UserService
    rooms: RoomService
    reader: RoomReader
    sync: SyncService
    notifier: Notifier
    background: list[Background] = field(default_factory=list)
    typing: TypingService | None = None
    receipts: ReceiptService | None = None
    to_device: ToDeviceService | None = None
    presence: PresenceService | None = None


async def build_homeserver(config: Config, db: Database, key: ServerSigningKey) -> Homeserver:
    async with db.connection() as conn:
        await migrate(conn)
    event_store, groups_store = EventStore(), StateGroupStore()
    room_store, user_store = RoomStore(), UserStore()
    async with db.connection() as conn:
        event_stream = StreamIdGen(await event_store.max_stream_ordering(conn))
        account_stream = StreamIdGen(await user_store.max_account_data_stream(conn))
        max_group = await groups_store.max_group(conn)
    notifier = Notifier()
    cache = EventCache(db, event_store, room_store)
    groups = StateGroups(db, groups_store, max_group)
    registry = RoomRegistry(db, room_store, event_store, cache, groups)
    members = MembershipIndex(db, room_store)
    visibility = Visibility(groups, cache)
    membership_hooks: list[MembershipHook] = []
    writer = RoomWriter(db, event_store, groups_store, room_store, cache, groups, members,
                        event_stream, notifier, membership_hooks)
    users = UserService(db, user_store, config.server_name, account_stream, notifier,
                        config.password_min_length)
    room_service = RoomService(db, config.server_name, key, registry, room_store, writer, cache,
                               config.default_room_version, members)
    reader = RoomReader(db, event_store, room_store, cache, groups, visibility, members)
    sources = SyncSources()
    sync_service = SyncService(db, event_store, registry, members, cache, groups, visibility,
                               event_stream, users, notifier, sources)
    for token in config.registration_tokens:
        await users.add_registration_token(token)
    hs = Homeserver(config, db, key, users, room_service, reader, sync_service, notifier)
    hs.background.append(users)  # writes devices' last seen values in batches

    # Real-time services: each is a sync source, some have a background task.
    # -- typing
    hs.typing = TypingService(registry, notifier)
    membership_hooks.append(hs.typing.on_membership)
    sources.typing = hs.typing
    hs.background.append(hs.typing)
    # -- receipts
    receipt_store = ReceiptStore()
    async with db.connection() as conn:
        receipt_stream = StreamIdGen(await receipt_store.max_stream_id(conn))
    hs.receipts = ReceiptService(db, receipt_store, registry, cache, notifier, receipt_stream)
    sources.receipts = hs.receipts
    # -- to-device
    to_device_store = ToDeviceStore()
    async with db.connection() as conn:
        to_device_stream = StreamIdGen(await to_device_store.max_stream_id(conn))
    hs.to_device = ToDeviceService(db, to_device_store, notifier, to_device_stream)
    sources.to_device = hs.to_device
    # -- presence
    hs.presence = PresenceService(
        db, PresenceStore(), members, registry, notifier, config.presence_enabled,
        idle_after_ms=config.presence_idle_after_ms,
        offline_after_ms=config.presence_offline_after_ms,
        sweep_interval_ms=max(20, min(1_000, config.presence_idle_after_ms // 10)))
    if config.presence_enabled:
        sources.presence = hs.presence
    hs.background.append(hs.presence)
    return hs


async def _unknown_endpoint(request: web.Request) -> web.Response:
    # A known path asked with the wrong method is 405, an unknown path 404 (both M_UNRECOGNIZED).
    this = request.match_info.route.resource
    for resource in request.app.router.resources():
        if resource is not this and (await resource.resolve(request))[1]:
            return error_response(MatrixError(405, Codes.UNRECOGNIZED, "Method not allowed"))
    return error_response(MatrixError(404, Codes.UNRECOGNIZED, "Unrecognized request"))


def make_app(hs: Homeserver) -> web.Application:
    app = web.Application(middlewares=[error_middleware],
                          client_max_size=hs.config.max_request_bytes)
    app[CTX] = ClientContext(
        config=hs.config, db=hs.db, users=hs.users, rooms=hs.rooms, sync=hs.sync,
        reader=hs.reader, limiter=RateLimiter(hs.config.rate_limits.enabled), uia=UIA(),
        typing=hs.typing, receipts=hs.receipts, to_device=hs.to_device, presence=hs.presence,
    )
    for module in (login, register, rooms, sync, profile, devices, account_data, directory,
                   to_device, receipts, presence, tags, user_directory, pushrules):
        app.add_routes(module.routes)
    app.router.add_route("*", "/_matrix/{tail:.*}", _unknown_endpoint)
    setup_websockets(app)  # the set of open sockets, closed on shutdown

    async def background(app: web.Application) -> AsyncIterator[None]:
        for service in hs.background:
            await service.start()
        yield
        for service in reversed(hs.background):
            await service.stop()

    app.cleanup_ctx.append(background)

    async def wake_long_polls(app: web.Application) -> None:
        hs.notifier.close()

    app.on_shutdown.append(wake_long_polls)
    return app


async def serve(config: Config, dsn: str, key: ServerSigningKey) -> AsyncIterator[web.AppRunner]:
    """Start the server; yields the runner, cleans up on exit (used by `parley run` and tests)."""
    db = await Database.connect(dsn, config.db_pool_min, config.db_pool_max)
    try:
        hs = await build_homeserver(config, db, key)
        app = make_app(hs)
        runner = MatrixAppRunner(app, access_log=None, shutdown_timeout=10.0)
        await runner.setup()
        site = web.TCPSite(runner, config.listen_host, config.listen_port, reuse_address=True)
        await site.start()
        try:
            yield runner
        finally:
            await runner.cleanup()
    finally:
        await db.close()
