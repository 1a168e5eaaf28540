"""Composition root: the only place that creates and wires stores, services and the web app."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import quote

from aiohttp import web

from admin_api import observability
from admin_api.context import AdminContext
from admin_api.routes import add_admin_routes
from client_api import (
    account_data,
    appservice,
    dehydrated,
    devices,
    directory,
    events_stream,
    initial_sync,
    keys,
    login,
    login_token,
    media,
    media_upload,
    mutual_rooms,
    openid,
    peeks,
    presence,
    profile,
    pushers,
    pushrules,
    receipts,
    register,
    room_keys,
    room_upgrades,
    rooms,
    search,
    sliding_sync,
    spaces,
    sso,
    support,
    sync,
    tags,
    thirdparty,
    threads,
    threepid,
    timestamps,
    to_device,
    user_directory,
    voip,
)
from client_api import reports as report_routes
from client_api.context import CTX, ClientContext
from client_api.uia import UIA
from client_api.websocket import SOCKETS
from client_api.websocket import setup as setup_websockets
from e2ee.backup import KeyBackupService
from e2ee.backup_store import KeyBackupStore
from e2ee.cross_signing import CrossSigningService
from e2ee.dehydrated import DehydratedDeviceService
from e2ee.device_keys import DeviceKeyService
from e2ee.device_lists import DeviceListService
from e2ee.keys_store import KeyStore
from e2ee.store import ToDeviceStore
from e2ee.to_device import ToDeviceService
from federation.client import FederationClient, FederationError, FederationUnreachable
from federation.context import FED, FederationContext
from federation.media_fetch import FederationMediaClient
from federation.routes import add_federation_routes
from federation.tls import client_context, server_context
from homeserver.admin.destinations import DestinationAdmin
from homeserver.admin.media import MediaAdminService
from homeserver.admin.notices import ServerNotices
from homeserver.admin.registration_tokens import RegistrationTokens
from homeserver.admin.room_events import RoomEventsAdmin
from homeserver.admin.rooms import RoomAdminService, RoomCaches
from homeserver.admin.store import AdminStore
from homeserver.admin.user_data import UserDataAdmin
from homeserver.admin.users import AccountStates, UserAdminService
from homeserver.appservice.auth import AppServiceAuth
from homeserver.appservice.client import AppServiceClient
from homeserver.appservice.registry import AppServiceRegistry
from homeserver.appservice.sender import AppServiceSender
from homeserver.appservice.service import AppServiceQueries
from homeserver.appservice.store import AppServiceStore
from homeserver.config import Config
from homeserver.errors import Codes, MatrixError
from homeserver.events.builder import EventBuilder
from homeserver.events.store import EventStore, StateGroupStore
from homeserver.federation.backfill import Backfiller
from homeserver.federation.device_store import RemoteDeviceStore
from homeserver.federation.devices import DeviceListFederation, RoomPeers
from homeserver.federation.e2ee_keys import RemoteKeyQueries
from homeserver.federation.edus import EduRouter, RealtimeEdus
from homeserver.federation.inbound import Inbound
from homeserver.federation.keys import KeyRing
from homeserver.federation.membership import RemoteMembership
from homeserver.federation.queries import RemoteQueries
from homeserver.federation.sender import FederationSender
from homeserver.federation.serving import FederationRooms
from homeserver.federation.store import FederationStore
from homeserver.federation.to_device import FederatedToDevice
from homeserver.http import (
    OBSERVER,
    MatrixAppRunner,
    add_routes,
    error_response,
    matrix_errors,
)
from homeserver.identity.store import ThreepidStore
from homeserver.identity.wiring import Identity, build_identity
from homeserver.media.preview import PreviewService
from homeserver.media.remote import FederatedMedia
from homeserver.media.retention import MediaRetention
from homeserver.media.service import MediaService
from homeserver.media.storage import LocalDiskStorage
from homeserver.media.store import MediaStore
from homeserver.media.thumbnailer import Thumbnailer
from homeserver.observability.health import DatabaseHealth
from homeserver.observability.metrics import Metrics
from homeserver.observability.observer import Observer
from homeserver.observability.store import ObservabilityStore
from homeserver.outbound import OutboundPolicy, parse_ranges
from homeserver.presence.service import PresenceService
from homeserver.presence.store import PresenceStore
from homeserver.push.notifications import NotificationService
from homeserver.push.notify_store import NotificationStore
from homeserver.push.pushers import PusherService
from homeserver.push.retention import NotificationPruner
from homeserver.push.sender import PusherSender
from homeserver.push.service import PushRuleService
from homeserver.push.store import PushRuleStore
from homeserver.ratelimit import RateLimiter
from homeserver.receipts.service import ReceiptCommitted, ReceiptService
from homeserver.receipts.store import ReceiptStore
from homeserver.reports.service import ReportService
from homeserver.reports.store import ReportStore
from homeserver.rooms.directory import PublicRoomDirectory
from homeserver.rooms.expiry import EventExpiry
from homeserver.rooms.expiry_store import ExpiryStore
from homeserver.rooms.feed import EventConsumer
from homeserver.rooms.guests import GuestRevocation
from homeserver.rooms.initial_sync import RoomInitialSync
from homeserver.rooms.members import MembershipIndex
from homeserver.rooms.mutual_rooms import MutualRooms
from homeserver.rooms.reader import RoomReader
from homeserver.rooms.refresh import RoomCacheRefresher
from homeserver.rooms.service import RoomService
from homeserver.rooms.spaces import SpaceService
from homeserver.rooms.state import EventCache, RoomRegistry, StateGroups
from homeserver.rooms.store import RoomStore
from homeserver.rooms.thread_store import ThreadStore
from homeserver.rooms.threads import ThreadService
from homeserver.rooms.timestamps import TimestampLookup, TimestampStore
from homeserver.rooms.typing import TypingService
from homeserver.rooms.upgrades import RoomUpgrader, carry_user_state, move_local_aliases
from homeserver.rooms.visibility import Visibility
from homeserver.rooms.writer import MembershipHook, PersistHook, RoomWriter
from homeserver.search.service import SearchService
from homeserver.search.store import SearchStore
from homeserver.signing import ServerSigningKey, load_old_keys
from homeserver.storage.database import Database
from homeserver.storage.instances import InstanceRegistry
from homeserver.storage.migrate import migrate
from homeserver.storage.streams import IdPool, Stream
from homeserver.streams.notifier import Notifier
from homeserver.sync.initial_sync import InitialSync
from homeserver.sync.peek import RoomPeek
from homeserver.sync.peeks import PeekStore, SyncPeeks
from homeserver.sync.service import SyncService
from homeserver.sync.sliding import SlidingSyncService
from homeserver.sync.sliding_store import SlidingStore
from homeserver.sync.streams import SyncSources
from homeserver.types import JsonDict
from homeserver.uia.service import UIASessionService
from homeserver.uia.store import UIASessionStore
from homeserver.users.account_data import AccountDataService
from homeserver.users.accounts import AccountService
from homeserver.users.devices import DeviceService, LastSeen
from homeserver.users.filters import FilterService
from homeserver.users.invite_permission import InvitePermission
from homeserver.users.openid import OpenIdService
from homeserver.users.openid_store import OpenIdStore
from homeserver.users.profile_fields import ProfileFields, ProfileFieldStore
from homeserver.users.profiles import ProfileService
from homeserver.users.sessions import SessionService
from homeserver.users.store import UserStore
from homeserver.users.tokens import TokenCache

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
    accounts: AccountService
    sessions: SessionService
    devices: DeviceService
    last_seen: LastSeen
    profiles: ProfileService
    account_data: AccountDataService
    filters: FilterService
    push_rules: PushRuleService
    uia: UIASessionService
    rooms: RoomService
    reader: RoomReader
    sync: SyncService
    notifier: Notifier
    background: list[Background] = field(default_factory=list)
    typing: TypingService | None = None
    receipts: ReceiptService | None = None
    to_device: ToDeviceService | None = None
    presence: PresenceService | None = None
    peek: RoomPeek | None = None
    peeks: SyncPeeks | None = None  # MSC2753 peeking through /sync
    key_backup: KeyBackupService | None = None
    writer: RoomWriter | None = None
    event_stream: Stream | None = None
    members: MembershipIndex | None = None
    keys: DeviceKeyService | None = None
    cross_signing: CrossSigningService | None = None
    device_lists: DeviceListService | None = None
    dehydrated: DehydratedDeviceService | None = None
    federation: Federation | None = None
    notifications: NotificationService | None = None
    pushers: PusherService | None = None
    media: Media | None = None
    admin: AdminContext | None = None
    limiter: RateLimiter | None = None
    observer: Observer | None = None
    public_rooms: PublicRoomDirectory | None = None
    openid: OpenIdService | None = None
    sliding_sync: SlidingSyncService | None = None
    search: SearchService | None = None
    threads: ThreadService | None = None
    timestamps: TimestampLookup | None = None
    mutual_rooms: MutualRooms | None = None
    appservices: AppServices | None = None
    identity: Identity | None = None  # 3PIDs, identity servers, captcha, CAS


@dataclass(slots=True)
class AppServices:
    """The application services' parts (docs/appservices.md), present when any is registered."""

    auth: AppServiceAuth
    queries: AppServiceQueries
    sender: AppServiceSender


async def build_appservices(config: Config, db: Database, accounts: AccountService,
                            devices: DeviceService, rooms: RoomService, parts: RoomParts,
                            public_rooms: PublicRoomDirectory, to_device: Stream | None = None,
                            device_lists: Stream | None = None) -> AppServices:
    registry = AppServiceRegistry(config.app_services)
    store = AppServiceStore()
    client = AppServiceClient(
        OutboundPolicy(parse_ranges(config.outbound_allow), parse_ranges(config.outbound_deny)),
        client_context(config.federation_ca_file))
    for as_id, host in client.denied_hosts(config.app_services):
        log.warning("application service %s: %s is denied by the outbound policy, so nothing "
                    "can be sent to it; add its range to outbound.allow_ranges", as_id, host)
    auth = AppServiceAuth(registry, accounts, devices)
    await auth.ensure_senders()

    async def user_exists(user_id: str) -> bool:
        return await accounts.get_user(user_id) is not None

    queries = AppServiceQueries(db, store, registry, client, config.server_name, user_exists)
    sender = AppServiceSender(db, store, config.app_services, parts.events, parts.cache,
                              parts.stream, parts.registry, client, config.instance_name,
                              to_device, device_lists)
    queries.on_alive = sender.retry_now
    rooms.appservices = registry
    rooms.query_user, rooms.query_alias = queries.query_user, queries.query_alias
    public_rooms.network_rooms = queries.listed_rooms
    return AppServices(auth, queries, sender)


@dataclass(slots=True)
class Media:
    """The media repository's parts (docs/media.md)."""

    service: MediaService
    thumbnails: Thumbnailer
    retention: MediaRetention
    previews: PreviewService | None


def build_media(config: Config, db: Database) -> Media:
    store, storage = MediaStore(), LocalDiskStorage(config.media_path, config.instance_name)
    service = MediaService(db, store, storage, config.media, config.server_name)
    previews = None
    if config.media.url_preview_enabled:
        policy = OutboundPolicy(parse_ranges(config.media.url_preview_allow),
                                parse_ranges(config.media.url_preview_deny))
        previews = PreviewService(db, store, service, policy, config.media)
    return Media(service, Thumbnailer(db, store, storage, config.media),
                 MediaRetention(db, store, storage, config.media), previews)


@dataclass(slots=True)
class Federation:
    """Federation's parts (docs/federation.md), present when federation is on."""

    keys: KeyRing
    client: FederationClient
    context: FederationContext
    sender: FederationSender
    devices: DeviceListFederation
    realtime: RealtimeEdus

    async def start(self) -> None:
        await self.sender.start()
        await self.devices.start()
        await self.realtime.start()

    async def stop(self) -> None:
        await self.realtime.stop()
        await self.devices.stop()
        await self.sender.stop()
        await self.client.close()


async def open_stream(db: Database, name: str, sequence: str, notifier: Notifier) -> Stream:
    """A stream starting at its sequence's last value (other live processes' floors are
    applied by the instance registry before the server takes requests)."""
    current = await db.fetchval(
        "SELECT COALESCE(pg_sequence_last_value($1::regclass), 0)", sequence)
    stream = Stream(name, sequence, db, int(current), notifier.notify_users)
    await stream.reserve()  # the first write does not wait for the database
    return stream


async def build_homeserver(config: Config, db: Database, key: ServerSigningKey) -> Homeserver:
    async with db.connection() as conn:
        await migrate(conn)
    event_store, groups_store = EventStore(), StateGroupStore()
    room_store, user_store = RoomStore(), UserStore()
    notifier = Notifier()
    event_stream = await open_stream(db, "events", "events_stream_seq", notifier)
    account_stream = await open_stream(db, "account_data", "account_data_seq", notifier)
    receipt_stream = await open_stream(db, "receipts", "receipts_seq", notifier)
    to_device_stream = await open_stream(db, "to_device", "to_device_seq", notifier)
    device_list_stream = await open_stream(db, "device_lists", "device_lists_seq", notifier)
    cache = EventCache(db, event_store, room_store)
    groups = StateGroups(db, groups_store)
    registry = RoomRegistry(db, room_store, event_store, cache, groups)
    members = MembershipIndex(db, room_store)
    visibility = Visibility(groups, cache)
    membership_hooks: list[MembershipHook] = []
    persist_hooks: list[PersistHook] = []
    writer = RoomWriter(db, event_store, groups_store, room_store, cache, groups, members,
                        event_stream, IdPool("state_group_seq", db), membership_hooks,
                        on_persist=persist_hooks)
    # -- users: one store, one small service per concern; the token cache and last seen
    # values are shared by the services that end sessions.
    tokens = TokenCache()
    last_seen = LastSeen(db, user_store)
    # -- e2ee keys: the device list stream is written by the device service too (a deleted
    # or renamed device is a change others' clients must hear of).
    key_store = KeyStore()
    device_lists = DeviceListService(db, key_store, room_store, device_list_stream, members,
                                     registry)
    device_keys = DeviceKeyService(db, key_store, device_lists, config.server_name)
    cross_signing = CrossSigningService(db, key_store, device_lists)
    devices = DeviceService(db, user_store, tokens, last_seen, device_lists)
    sessions = SessionService(db, user_store, tokens, last_seen, devices)
    accounts = AccountService(db, user_store, config.server_name, tokens, last_seen,
                              config.password_min_length, devices)
    account_data = AccountDataService(db, user_store, account_stream, notifier)
    push_rules = PushRuleService(db, PushRuleStore(), account_data)
    # -- push: rules evaluated in each event's transaction (counts commit with the event)
    notification_store = NotificationStore()
    notifications = NotificationService(db, config.server_name, notification_store,
                                        PushRuleStore(), cache)
    persist_hooks.append(notifications)
    # -- MSC2228 self-destructing events: rows commit with the event, a task expires them
    expiry: EventExpiry | None = None
    if config.enable_ephemeral_messages:
        expiry = EventExpiry(db, ExpiryStore(), cache, registry)
        persist_hooks.append(expiry)
    push_rules.on_change.append(notifications.invalidate)
    profiles = ProfileService(db, user_store, config.server_name)
    profiles.fields = ProfileFields(db, ProfileFieldStore())
    room_service = RoomService(db, config.server_name, EventBuilder(key), registry, room_store,
                               writer, cache, config.default_room_version, members, profiles)
    # -- guests leave a room that stops allowing them (spec "Guest access")
    guest_revocation = GuestRevocation(config.server_name, accounts.guests_among)
    guest_revocation.leave = room_service.leave
    persist_hooks.append(guest_revocation)
    refresher = RoomCacheRefresher(db, event_store, registry, cache, members, event_stream)
    instances = InstanceRegistry(
        db, config.instance_name, [event_stream, account_stream, receipt_stream,
                                   to_device_stream, device_list_stream], refresher.on_advance,
        on_peers=[tokens.on_peers, device_keys.on_peers, notifications.on_peers])
    reader = RoomReader(db, event_store, room_store, cache, groups, visibility, members,
                        registry)
    sources = SyncSources(device_lists=device_lists, key_counts=device_keys,
                          notifications=notifications)
    sync_service = SyncService(db, event_store, registry, members, cache, groups, visibility,
                               event_stream, account_data, notifier, sources)
    for token in config.registration_tokens:
        await accounts.add_registration_token(token)
    hs = Homeserver(
        config=config, db=db, key=key, accounts=accounts, sessions=sessions, devices=devices,
        last_seen=last_seen, profiles=profiles, account_data=account_data,
        filters=FilterService(db, user_store), push_rules=push_rules,
        uia=UIASessionService(db, UIASessionStore()), rooms=room_service, reader=reader,
        sync=sync_service, notifier=notifier)
    hs.writer, hs.event_stream, hs.members = writer, event_stream, members
    hs.public_rooms = PublicRoomDirectory(config.server_name, reader, room_service)
    hs.openid = OpenIdService(db, OpenIdStore(), config.server_name)
    hs.identity = build_identity(config, db, key, accounts, profiles, room_service)
    hs.background.append(hs.identity.http)
    # -- sliding sync (MSC4186): the same engine and sources as /sync
    hs.sliding_sync = SlidingSyncService(db, sync_service, registry, members, cache, visibility,
                                         account_data, notifier, SlidingStore())
    hs.threads = ThreadService(db, ThreadStore(), cache, visibility, reader, registry)
    # m.thread bundled in /sync and sliding sync timelines, /messages, /context and /event
    sources.aggregations = reader.aggregations = hs.threads
    hs.search = SearchService(db, SearchStore(), event_store, cache, groups, visibility, members,
                              registry, hs.threads)
    hs.mutual_rooms = MutualRooms(members, registry)
    invite_permission = InvitePermission(account_data)
    room_service.invite_blocked = sources.invite_blocked = invite_permission.blocks

    async def carry_over(user_id: str, old_room: str, new_room: str, server_joined: bool) -> None:
        await carry_user_state(account_data, user_id, old_room, new_room)
        if server_joined:
            await move_local_aliases(db, RoomStore(), old_room, new_room, user_id)
    room_service.on_upgraded_join = carry_over
    hs.timestamps = TimestampLookup(db, TimestampStore(), room_service, reader, cache, visibility)
    hs.keys, hs.cross_signing, hs.device_lists = device_keys, cross_signing, device_lists
    hs.background.append(instances)  # first to start, last to stop
    hs.background.append(last_seen)  # writes devices' last seen values in batches
    hs.background.append(guest_revocation)
    if expiry is not None:
        hs.background.append(expiry)

    # Real-time services: each is a sync source, some have a background task.
    # -- typing
    typing_stream = await open_stream(db, "typing", "typing_seq", notifier)
    typing_stream.block = 1000
    hs.typing = TypingService(registry, notifier, typing_stream)
    membership_hooks.append(hs.typing.on_membership)
    sources.typing = hs.typing
    hs.background.append(hs.typing)
    # -- receipts
    receipt_store = ReceiptStore()
    receipts_committed: list[ReceiptCommitted] = [notifications.receipt_committed]
    hs.receipts = ReceiptService(db, receipt_store, registry, cache, notifier, receipt_stream,
                                 on_write=[notifications.on_receipt],
                                 on_committed=receipts_committed)
    refresher.others["receipts"] = hs.receipts.on_advance

    async def push_rules_elsewhere(_stream: str, before: int, after: int) -> None:
        # A rule change on another process is written as its user's m.push_rules account
        # data: drop those users' compiled rules here too.
        for user_id in await account_data.written_by("m.push_rules", before, after):
            notifications.invalidate(user_id)
    refresher.others["account_data"] = push_rules_elsewhere
    sources.receipts = hs.receipts
    # -- to-device
    to_device_store = ToDeviceStore()
    hs.to_device = ToDeviceService(db, to_device_store, notifier, to_device_stream)
    sources.to_device = hs.to_device
    hs.dehydrated = DehydratedDeviceService(db, key_store, user_store, device_keys,
                                            device_lists, hs.to_device)
    # -- presence
    presence_stream = await open_stream(db, "presence", "presence_seq", notifier)
    presence_stream.block = 1000
    hs.presence = PresenceService(
        db, PresenceStore(), members, registry, notifier, config.presence_enabled,
        idle_after_ms=config.presence_idle_after_ms,
        offline_after_ms=config.presence_offline_after_ms,
        sweep_interval_ms=max(20, min(1_000, config.presence_idle_after_ms // 10)),
        stream=presence_stream)
    if config.presence_enabled:
        sources.presence = hs.presence
    hs.background.append(hs.presence)
    # -- room previews: GET /events?room_id= for a world-readable room one has not joined
    hs.peek = RoomPeek(registry, sync_service, visibility, notifier, hs.presence)
    # -- MSC2753 peeking through /sync (unstable; docs/client_api.md)
    hs.peeks = sources.peeks = SyncPeeks(db, PeekStore(), registry, room_service.resolve_room,
                                         event_stream)
    membership_hooks.append(hs.peeks.on_membership)
    hs.background.append(hs.peeks)
    # -- server-side key backup
    hs.key_backup = KeyBackupService(db, KeyBackupStore())
    accounts.on_deactivate += [hs.key_backup.forget_user, cross_signing.forget_user]
    # -- pushers: each pusher delivers its user's notifications to its push gateway
    hs.notifications = notifications
    hs.pushers = PusherService(db, notification_store)
    pusher_sender = PusherSender(
        db, notification_store, cache, registry, event_stream,
        OutboundPolicy(parse_ranges(config.outbound_allow), parse_ranges(config.outbound_deny)),
        config.instance_name, tls=client_context(config.federation_ca_file),
        unread_totals=notifications.unread_totals)
    hs.pushers.on_change.append(pusher_sender.pushers_changed)
    receipts_committed.append(pusher_sender.badge_changed)
    hs.background.append(pusher_sender)
    hs.background.append(NotificationPruner(db, notification_store))
    # -- media repository; the retention task also clears half-written uploads at start
    hs.media = media_parts = build_media(config, db)
    hs.background.append(hs.media.retention)
    if hs.media.previews is not None:
        hs.background.append(hs.media.previews)
    # -- operators: health, metrics (when a metrics listener is configured), request logs
    observability_store = ObservabilityStore()
    db_health = DatabaseHealth(db, observability_store)
    metrics = (Metrics(db, observability_store) if config.metrics_listen_port else None)
    if metrics is not None:
        writer.on_written = metrics.written
        sync_service.on_woken = metrics.wake_seconds.observe
    hs.observer = Observer(metrics, db_health, config.log_requests)
    hs.background.append(db_health)
    # -- operators: the admin API's services (docs/admin.md)
    hs.limiter = RateLimiter(config.rate_limits.enabled)
    admin_store = AdminStore()
    states = AccountStates(db, admin_store, tokens, hs.limiter, visibility.erased)
    await states.load()
    room_admin = RoomAdminService(db, admin_store, room_service, reader,
                                  RoomCaches(registry, cache, members, notifications.forget_room),
                                  config.instance_name)
    room_service.is_blocked = room_admin.is_blocked
    notices = ServerNotices(db, admin_store, accounts, room_service, account_data)
    room_service.is_notice_room = notices.is_notice_room
    hs.background.append(room_admin)
    user_admin = UserAdminService(db, admin_store, accounts, devices, profiles, room_service,
                                  reader, states, hs.identity.threepids, ThreepidStore())
    hs.admin = AdminContext(
        users=user_admin,
        rooms=room_admin, tokens=RegistrationTokens(db, admin_store),
        reports=ReportService(db, ReportStore(), room_service, reader),
        notices=notices,
        server_version=server_version(),
        media=MediaAdminService(db, admin_store, media_parts.retention, config.server_name),
        destinations=DestinationAdmin(db, FederationStore()),
        user_data=UserDataAdmin(db, admin_store, user_admin, sessions),
        room_events=RoomEventsAdmin(db, admin_store, room_service, reader, cache, groups))
    hs.admin.users.pusher_service = hs.pushers
    if config.app_services:
        hs.appservices = await build_appservices(
            config, db, accounts, devices, room_service, RoomParts(
                room_store, event_store, cache, groups, registry, writer, event_stream, members,
                membership_hooks), hs.public_rooms, to_device_stream, device_list_stream)
        hs.background.append(hs.appservices.sender)
        # Ephemeral data for the ASes that receive it (typing, read receipts, presence).
        as_sender = hs.appservices.sender
        as_sender.typing_users, as_sender.joined_rooms = hs.typing.typing_in, members.joined_rooms
        hs.presence.on_local.append(as_sender.presence_changed)
        hs.typing.on_local.append(as_sender.typing_changed)
        hs.receipts.on_local.append(as_sender.receipt_written)
        # MSC3202 key counts of the ASes' users' devices.
        device_keys.on_keys_changed.append(as_sender.keys_changed)
    if config.federation_enabled:
        hs.federation = build_federation(hs, key, RoomParts(
            room_store, event_store, cache, groups, registry, writer, event_stream, members,
            membership_hooks, visibility.erased))
        hs.background.append(hs.federation)
        hs.admin.destinations.retry_now = hs.federation.sender.retry
    return hs


@dataclass(frozen=True, slots=True)
class RoomParts:
    """The room engine's parts federation works with."""

    store: RoomStore
    events: EventStore
    cache: EventCache
    groups: StateGroups
    registry: RoomRegistry
    writer: RoomWriter
    stream: Stream
    members: MembershipIndex
    membership_hooks: list[MembershipHook]
    erased: set[str] = field(default_factory=set)  # erased users (Visibility's set)


def build_federation(hs: Homeserver, key: ServerSigningKey, parts: RoomParts) -> Federation:
    config, db = hs.config, hs.db
    store = FederationStore()
    keyring = KeyRing(db, store, key, load_old_keys(config.old_signing_keys_path),
                      config.trusted_key_servers, config.key_validity_ms)
    policy = OutboundPolicy(parse_ranges(config.outbound_allow),
                            parse_ranges(config.outbound_deny))
    client = FederationClient(key, policy, client_context(config.federation_ca_file))
    keyring.source = client
    builder = EventBuilder(key)
    name = config.server_name
    serving = FederationRooms(name, db, hs.rooms, parts.store, parts.writer, builder,
                              parts.cache, parts.groups, keyring, key)
    inbound = Inbound(name, db, store, hs.rooms, parts.writer, parts.cache, keyring, client)
    consumer = EventConsumer("federation-sender", db, parts.events, parts.cache, parts.stream)
    sender = FederationSender(name, db, store, consumer, parts.registry, parts.cache, client)
    serving.forward = sender.forward
    serving.erased = parts.erased
    inbound.on_origin = sender.remote_alive
    router = EduRouter()
    inbound.edus = router.receive
    assert hs.typing and hs.receipts and hs.presence and hs.to_device
    realtime = RealtimeEdus(name, sender, parts.registry, parts.members, hs.typing,
                            hs.receipts, hs.presence, config.presence_federation)
    realtime.register(router, parts.membership_hooks)
    FederatedToDevice(name, db, store, sender, hs.to_device).register(router)
    assert hs.device_lists and hs.keys
    device_store, peers = RemoteDeviceStore(), RoomPeers(name, parts.members, parts.registry)
    device_fed = DeviceListFederation(name, db, device_store, sender, hs.device_lists, hs.keys,
                                      peers, client)
    device_fed.register(router, parts.membership_hooks)
    e2ee_keys = RemoteKeyQueries(name, db, device_store, hs.keys, device_fed, peers, client)
    hs.keys.remote = e2ee_keys
    hs.reader.backfill = Backfiller(name, db, store, hs.rooms, parts.writer, parts.cache,
                                    keyring, client, inbound).backfill
    hs.rooms.remote = RemoteMembership(name, db, hs.rooms, parts.store, parts.writer, builder,
                                       keyring, client)
    context = FederationContext(name, keyring, hs.profiles, hs.reader,
                                config.well_known_server, rooms=serving, inbound=inbound,
                                limiter=RateLimiter(config.rate_limits.enabled),
                                rate_limit=config.rate_limits.federation)
    context.devices, context.e2ee_keys = device_fed, e2ee_keys
    queries = RemoteQueries(client)
    hs.profiles.remote = queries.profile
    assert hs.public_rooms is not None
    hs.public_rooms.remote = queries.public_rooms
    context.public_rooms, context.openid = hs.public_rooms, hs.openid
    if hs.identity is not None:
        context.third_party_invites = invites = hs.identity.invites

        async def forward_invite(room_id: str, event: JsonDict) -> None:
            # A server in the room redeems a third-party invite this server cannot (spec
            # "exchange_third_party_invite"): the inviter's, else the one a v1-v11 room id
            # names (as Synapse asks them).
            servers = [str(event["sender"]).partition(":")[2], room_id.partition(":")[2]]
            path = f"/_matrix/federation/v1/exchange_third_party_invite/{quote(room_id, safe='')}"
            failure = ""
            for server in dict.fromkeys(s for s in servers if s and s != config.server_name):
                try:
                    await client.request(server, "PUT", path, body=event)
                    return
                except FederationError as e:
                    if e.status in (400, 403, 404):  # it looked, and refused: so do we
                        raise MatrixError(e.status, e.errcode or Codes.FORBIDDEN,
                                          f"{server} refused the invite") from None
                    failure = f"{server}: {e}"
                except FederationUnreachable as e:
                    failure = f"{server}: {e}"
            raise MatrixError(502, Codes.UNKNOWN, f"No server redeemed the invite ({failure})")
        invites.forward = forward_invite
    if hs.media is not None:  # our media served to other servers, theirs fetched and cached
        context.media, context.thumbnails = hs.media.service, hs.media.thumbnails
        hs.media.service.remote = FederatedMedia(FederationMediaClient(client))
    return Federation(keys=keyring, client=client, context=context, sender=sender,
                      devices=device_fed, realtime=realtime)


def server_version() -> str:
    """Parley's version, from the installed package's metadata."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("parley")
    except PackageNotFoundError:
        return "unknown"


CATCH_ALL: web.AppKey[tuple[web.AbstractResource, ...]] = web.AppKey("parley_catch_all", tuple)


async def _unknown_endpoint(request: web.Request) -> web.Response:
    # A known path asked with the wrong method is 405, an unknown path 404 (both M_UNRECOGNIZED).
    skip = request.app[CATCH_ALL]
    for resource in request.app.router.resources():
        if resource not in skip and (await resource.resolve(request))[1]:
            return error_response(MatrixError(405, Codes.UNRECOGNIZED, "Method not allowed"))
    return error_response(MatrixError(404, Codes.UNRECOGNIZED, "Unrecognized request"))


def make_app(hs: Homeserver) -> web.Application:
    # No middlewares: every route's handler is wrapped in `matrix_errors` instead (see there).
    app = web.Application(client_max_size=hs.config.max_request_bytes)
    limiter = hs.limiter or RateLimiter(hs.config.rate_limits.enabled)
    app[CTX] = ClientContext(
        config=hs.config, accounts=hs.accounts, sessions=hs.sessions, devices=hs.devices,
        profiles=hs.profiles, account_data=hs.account_data, filters=hs.filters,
        push_rules=hs.push_rules, rooms=hs.rooms, sync=hs.sync, reader=hs.reader,
        limiter=limiter, uia=UIA(hs.uia),
        typing=hs.typing, receipts=hs.receipts, to_device=hs.to_device, presence=hs.presence,
        keys=hs.keys, cross_signing=hs.cross_signing, device_lists=hs.device_lists,
        dehydrated=hs.dehydrated,
    )
    app[CTX].key_backup = hs.key_backup
    app[CTX].pushers, app[CTX].notifications = hs.pushers, hs.notifications
    if hs.media is not None:
        app[CTX].media, app[CTX].thumbnails = hs.media.service, hs.media.thumbnails
        app[CTX].previews = hs.media.previews
    if hs.admin is not None:
        app[CTX].reports = hs.admin.reports
        add_routes(app, report_routes.routes)
        add_admin_routes(app, hs.admin)
        app[CTX].erase_user = hs.admin.users.mark_erased
    app[CTX].public_rooms, app[CTX].openid = hs.public_rooms, hs.openid
    if hs.identity is not None:
        app[CTX].threepids, app[CTX].sso = hs.identity.threepids, hs.identity.sso
        app[CTX].third_party_invites = hs.identity.invites
        app[CTX].recaptcha = hs.identity.recaptcha
    app[CTX].sliding_sync, app[CTX].search = hs.sliding_sync, hs.search
    app[CTX].threads = hs.threads
    app[CTX].upgrades = RoomUpgrader(hs.db, hs.rooms, RoomStore(), hs.account_data)
    app[CTX].spaces = SpaceService(hs.rooms)
    app[CTX].timestamps, app[CTX].mutual_rooms = hs.timestamps, hs.mutual_rooms
    assert hs.members is not None
    app[CTX].initial_sync = InitialSync(
        RoomInitialSync(hs.reader, hs.rooms.rooms, hs.account_data), hs.members, hs.reader,
        hs.account_data, hs.sync.current_token, hs.receipts, hs.presence)
    app[CTX].peek, app[CTX].peeks = hs.peek, hs.peeks
    if hs.appservices is not None:
        app[CTX].appservice_auth = hs.appservices.auth
        app[CTX].appservices = hs.appservices.queries
    for module in (login, register, rooms, sync, profile, devices, account_data, directory,
                   to_device, receipts, presence, tags, user_directory, pushrules, keys,
                   dehydrated, room_keys, pushers, media, media_upload, openid, sliding_sync,
                   search, threads, room_upgrades, spaces, timestamps, mutual_rooms,
                   thirdparty, voip, support, initial_sync, events_stream, appservice,
                   threepid, sso, login_token, peeks):
        add_routes(app, module.routes)
    if hs.federation is not None and (hs.config.shared_listener
                                      or not hs.config.federation_listen_port):
        # Shared with the client listener: configured so, or federation is on with no
        # listener of its own (behind a TLS reverse proxy that sends /_matrix/federation and
        # /_matrix/key here too, as Synapse's default listener serves both).
        app[FED] = hs.federation.context
        add_federation_routes(app)
    if hs.observer is not None:
        app[OBSERVER] = hs.observer
        app[observability.HEALTH] = hs.observer.health
        add_routes(app, observability.routes)
        if hs.observer.metrics is not None:
            sockets = app  # the set of open sockets is made by setup_websockets below
            hs.observer.metrics.watch(lambda: hs.notifier.waiting_users,
                                      lambda: len(sockets.get(SOCKETS, ())))
    _add_catch_all(app)
    setup_websockets(app)  # the set of open sockets, closed on shutdown
    sync.setup(app)  # the parsed sync filters, shared by the requests that use them

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


def make_federation_app(hs: Homeserver) -> web.Application:
    """The federation listener's app (when it is not shared with the client listener): the
    background services start with the client app, not here."""
    assert hs.federation is not None
    app = web.Application(client_max_size=max(hs.config.max_request_bytes, 8 * 1024 * 1024))
    app[FED] = hs.federation.context
    if hs.observer is not None:
        app[OBSERVER] = hs.observer
    add_federation_routes(app)
    _add_catch_all(app)
    return app


def _add_catch_all(app: web.Application) -> None:
    # Last, so they only see what no route took (and every path gets a Matrix error).
    catch_all: list[web.AbstractResource] = []
    for path in ("/_matrix/{tail:[\\s\\S]*}", "/{tail:[\\s\\S]*}"):  # newlines too
        resource = app.router.add_route("*", path, matrix_errors(_unknown_endpoint)).resource
        assert resource is not None
        catch_all.append(resource)
    app[CATCH_ALL] = tuple(catch_all)


async def start_listeners(hs: Homeserver) -> list[web.AppRunner]:
    """The client listener (TLS too when it is shared with federation) and, when configured
    apart, the TLS federation listener; stopped in reverse order by the caller."""
    config = hs.config
    runner = MatrixAppRunner(make_app(hs), access_log=None, shutdown_timeout=10.0)
    await runner.setup()
    runners: list[web.AppRunner] = [runner]
    try:
        tls = None
        if config.federation_listen_port and hs.federation is not None:
            assert config.tls_cert_path is not None and config.tls_key_path is not None
            tls = server_context(config.tls_cert_path, config.tls_key_path)
        site = web.TCPSite(runner, config.listen_host, config.listen_port, reuse_address=True,
                           ssl_context=tls if config.shared_listener else None)
        await site.start()
        if tls is not None and not config.shared_listener:
            fed_runner = MatrixAppRunner(make_federation_app(hs), access_log=None,
                                         shutdown_timeout=5.0)
            await fed_runner.setup()
            runners.append(fed_runner)
            await web.TCPSite(fed_runner, config.federation_listen_host,
                              config.federation_listen_port, reuse_address=True,
                              ssl_context=tls).start()
        if config.metrics_listen_port and hs.observer is not None and (
                hs.observer.metrics is not None):
            metrics_runner = web.AppRunner(observability.make_metrics_app(
                hs.observer.metrics, hs.observer.health), access_log=None)
            await metrics_runner.setup()
            runners.append(metrics_runner)
            await web.TCPSite(metrics_runner, config.metrics_listen_host,
                              config.metrics_listen_port, reuse_address=True).start()
    except BaseException:
        for r in reversed(runners):
            await r.cleanup()
        raise
    return runners


async def serve(config: Config, dsn: str, key: ServerSigningKey) -> AsyncIterator[web.AppRunner]:
    """Start the server; yields the runner, cleans up on exit (used by `parley run` and tests)."""
    db = await Database.connect(dsn, config.db_pool_min, config.db_pool_max)
    try:
        hs = await build_homeserver(config, db, key)
        runners = await start_listeners(hs)
        try:
            yield runners[0]
        finally:
            for r in reversed(runners):
                await r.cleanup()
    finally:
        await db.close()
