"""The application services this server runs with, looked up by token, id, user, alias and
protocol. Loaded once from the registrations (homeserver/appservice/registration.py); pure.

Exclusivity (spec "Server admin style permissions"): a user id or alias in an AS's exclusive
namespace is that AS's alone to create; anyone else (a person, another AS) gets 400
M_EXCLUSIVE. An AS may create users and aliases in any of its namespaces, exclusive or not,
but not in another AS's exclusive one.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from homeserver.appservice.registration import AppService
from homeserver.errors import Codes, MatrixError


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class AppServiceRegistry:
    def __init__(self, services: Sequence[AppService]) -> None:
        self.services = tuple(services)
        self._by_id = {s.id: s for s in services}
        # Keyed by digest so the lookup's time does not depend on how much of a guess matched.
        self._by_token = {_digest(s.as_token): s for s in services}

    def __bool__(self) -> bool:
        return bool(self.services)

    def by_token(self, token: str) -> AppService | None:
        found = self._by_token.get(_digest(token))
        if found is not None and hmac.compare_digest(found.as_token, token):
            return found
        return None

    def get(self, as_id: str) -> AppService | None:
        return self._by_id.get(as_id)

    def by_sender(self, user_id: str) -> AppService | None:
        return next((s for s in self.services if s.sender == user_id), None)

    # -- who owns what

    def interested_in_user(self, user_id: str) -> list[AppService]:
        return [s for s in self.services if s.is_interested_in_user(user_id)]

    def interested_in_alias(self, alias: str) -> list[AppService]:
        return [s for s in self.services if s.is_interested_in_alias(alias)]

    def for_protocol(self, protocol: str) -> list[AppService]:
        return [s for s in self.services if protocol in s.protocols and s.url is not None]

    def protocols(self) -> list[str]:
        return sorted({p for s in self.services if s.url is not None for p in s.protocols})

    def check_user_allowed(self, user_id: str, app_service: str | None) -> None:
        """400 M_EXCLUSIVE unless the requester (an AS's id, or None for a person) may
        create `user_id`: a person outside every exclusive namespace, an AS inside one of
        its own namespaces and outside the others' exclusive ones."""
        if app_service is not None:
            own = self._by_id[app_service]
            if not own.is_interested_in_user(user_id):
                raise MatrixError(400, Codes.EXCLUSIVE,
                                  "User id is not in the application service's namespace")
        if any(s.id != app_service and s.is_exclusive_user(user_id) for s in self.services):
            raise MatrixError(400, Codes.EXCLUSIVE,
                              "User id is reserved by an application service")

    def check_alias_allowed(self, alias: str, app_service: str | None) -> None:
        """The same rule for room aliases."""
        if app_service is not None and not self._by_id[app_service].is_interested_in_alias(
                alias):
            raise MatrixError(400, Codes.EXCLUSIVE,
                              "Room alias is not in the application service's namespace")
        if any(s.id != app_service and s.is_exclusive_alias(alias) for s in self.services):
            raise MatrixError(400, Codes.EXCLUSIVE,
                              "Room alias is reserved by an application service")

    def owns_alias(self, alias: str, app_service: str | None) -> bool:
        """Whether the requester's AS has the alias in one of its namespaces (it may then
        manage it without being in the room)."""
        own = self._by_id.get(app_service) if app_service is not None else None
        return own is not None and own.is_interested_in_alias(alias)
