"""What the client API asks of application services: the user and room alias queries (spec
"Querying"), third-party lookups (spec "Third-party networks"), ping, and the published room
lists of their networks (spec "Published room directories").

Queries: a local user or alias nobody has yet, in an AS's namespace, is asked of that AS (any
of them that covers it, in registration order) before the server answers "not found"; the AS
creates it with the client API and answers 200, and the caller looks again.

Protocol metadata is cached for PROTOCOL_CACHE_S per AS and protocol, and an AS that fails to
answer (or answers nonsense) keeps its last good answer: clients ask for it on every room
directory view, and a bridge that is restarting should not make its network vanish.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping

from homeserver.appservice.client import (
    AppServiceClient,
    AppServiceHttpError,
    AppServiceUnreachable,
)
from homeserver.appservice.registration import AppService
from homeserver.appservice.registry import AppServiceRegistry
from homeserver.appservice.store import AppServiceStore
from homeserver.errors import Codes, MatrixError, forbidden, not_found
from homeserver.storage.database import Database
from homeserver.types import JsonDict, Requester

log = logging.getLogger(__name__)

PROTOCOL_CACHE_S = 300.0

# user_id -> whether the user exists on this server
UserExists = Callable[[str], Awaitable[bool]]


def split_instance_id(instance_id: str) -> tuple[str, str] | None:
    """A third_party_instance_id as this server makes them: "<as id>|<network id>"."""
    as_id, sep, network = instance_id.partition("|")
    return (as_id, network) if sep and as_id and network else None


class AppServiceQueries:
    def __init__(self, db: Database, store: AppServiceStore, registry: AppServiceRegistry,
                 client: AppServiceClient, server_name: str, user_exists: UserExists) -> None:
        self._db = db
        self._store = store
        self.registry = registry
        self._client = client
        self._server_name = server_name
        self._user_exists = user_exists
        self._protocols: dict[tuple[str, str], tuple[float, JsonDict]] = {}
        # Told when an AS proved it is reachable (a ping), so its waiting transaction goes now.
        self.on_alive: Callable[[str], None] | None = None

    # ------------------------------------------------------------------ queries

    async def query_user(self, user_id: str) -> None:
        """A local user in an AS's users namespace who does not exist yet: ask the ASes that
        cover it (in order, until one made it). Anyone else: nothing to do, no query."""
        if user_id.partition(":")[2] != self._server_name:
            return
        services = [s for s in self.registry.interested_in_user(user_id)
                    if s.sender != user_id and s.url is not None]
        if not services or await self._user_exists(user_id):
            return
        for s in services:
            if await self._client.query_user(s, user_id) and await self._user_exists(user_id):
                return

    async def query_alias(self, alias: str) -> bool:
        """Ask the ASes whose aliases namespace covers an unknown local alias; True when one
        says it made it (the caller then looks it up again)."""
        if alias.partition(":")[2] != self._server_name:
            return False
        for s in self.registry.interested_in_alias(alias):
            if s.url is not None and await self._client.query_alias(s, alias):
                return True
        return False

    # ------------------------------------------------------------------ third-party networks

    async def _protocol_of(self, service: AppService, protocol: str) -> JsonDict | None:
        key = (service.id, protocol)
        cached = self._protocols.get(key)
        if cached is not None and time.monotonic() - cached[0] < PROTOCOL_CACHE_S:
            return cached[1]
        try:
            info = await self._client.thirdparty(service, "protocol", protocol, {})
        except (AppServiceUnreachable, AppServiceHttpError) as e:
            log.info("application service %s: protocol %s lookup failed: %s",
                     service.id, protocol, e)
            info = None
        if not isinstance(info, dict) or not isinstance(info.get("instances", []), list):
            return cached[1] if cached is not None else None
        instances = []
        for inst in info.get("instances", []):
            if not isinstance(inst, dict):
                continue
            inst = dict(inst)
            if isinstance(inst.get("network_id"), str):
                # The id clients pass back as /publicRooms' third_party_instance_id.
                inst["instance_id"] = f"{service.id}|{inst['network_id']}"
            instances.append(inst)
        info = {**info, "instances": instances}
        self._protocols[key] = (time.monotonic(), info)
        return info

    async def protocol(self, protocol: str) -> JsonDict | None:
        """The protocol's metadata from every AS that provides it (instances together)."""
        merged: JsonDict | None = None
        for s in self.registry.for_protocol(protocol):
            info = await self._protocol_of(s, protocol)
            if info is None:
                continue
            if merged is None:
                merged = {**info, "instances": list(info["instances"])}
            else:
                merged["instances"].extend(info["instances"])
        return merged

    async def protocols(self) -> JsonDict:
        out: JsonDict = {}
        for p in self.registry.protocols():
            info = await self.protocol(p)
            if info is not None:
                out[p] = info
        return out

    async def lookup(self, kind: str, protocol: str | None,
                     fields: Mapping[str, str]) -> list[JsonDict]:
        """Third-party users or locations (kind "user" or "location") matching `fields`:
        with a protocol, from the ASes that provide it; without (the reverse lookups by
        `userid` or `alias`), from every AS that provides any protocol."""
        if protocol is not None:
            services = self.registry.for_protocol(protocol)
        else:
            services = [s for s in self.registry.services if s.url is not None and s.protocols]
        out: list[JsonDict] = []
        for s in services:
            try:
                got = await self._client.thirdparty(s, kind, protocol, fields)
            except (AppServiceUnreachable, AppServiceHttpError) as e:
                log.info("application service %s: third-party %s lookup failed: %s",
                         s.id, kind, e)
                continue
            if isinstance(got, list):
                out.extend(x for x in got if isinstance(x, dict))
        return out

    # ------------------------------------------------------------------ ping

    async def ping(self, requester: Requester, as_id: str, txn_id: str | None) -> int:
        service = self.registry.get(as_id)
        if service is None or requester.app_service != as_id:
            raise forbidden("Provided access token is not the appservice's as_token")
        if service.url is None:
            raise MatrixError(400, Codes.URL_NOT_SET,
                              "Application service doesn't have a URL configured")
        try:
            duration = await self._client.ping(service, txn_id)
        except AppServiceHttpError as e:
            err = MatrixError(502, Codes.BAD_STATUS, f"Ping returned status {e.status}",
                              body=e.body)
            err.extra["status"] = e.status  # not a keyword: MatrixError's own is the HTTP one
            raise err from e
        except AppServiceUnreachable as e:
            if e.timeout:
                raise MatrixError(504, Codes.CONNECTION_TIMEOUT,
                                  "Connection to application service timed out") from e
            raise MatrixError(502, Codes.CONNECTION_FAILED,
                              "Connection to application service failed") from e
        if self.on_alive is not None:
            self.on_alive(as_id)
        return duration

    # ------------------------------------------------------------------ room lists

    async def set_listed(self, requester: Requester, network_id: str, room_id: str,
                         listed: bool) -> None:
        """PUT (public) / DELETE or PUT private /directory/list/appservice/...: only an AS
        may, for its own list; the room must exist."""
        if requester.app_service is None:
            raise forbidden("Only application services can change their room lists")
        async with self._db.connection() as conn:
            if listed:
                if not await self._store.room_exists(conn, room_id):
                    raise not_found("Unknown room")
                await self._store.publish(conn, requester.app_service, network_id, room_id)
            else:
                await self._store.unpublish(conn, requester.app_service, network_id, room_id)

    async def listed_rooms(self, instance_id: str | None) -> list[str]:
        """The rooms of one network's list (by third_party_instance_id), or of them all
        (None)."""
        async with self._db.connection() as conn:
            if instance_id is None:
                return await self._store.listed_rooms(conn)
            parts = split_instance_id(instance_id)
            if parts is None or self.registry.get(parts[0]) is None:
                return []
            return await self._store.listed_rooms(conn, *parts)


def query_fields(query: Mapping[str, str]) -> dict[str, str]:
    """A client's lookup fields as they go to the AS: everything but the access token."""
    return {k: v for k, v in query.items() if k != "access_token"}


__all__ = ["AppServiceQueries", "query_fields", "split_instance_id"]
