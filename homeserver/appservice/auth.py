"""Identity assertion (spec "Client-Server API Extensions"): a request made with an AS's
`as_token` acts as the AS's sender, or, with `?user_id=`, as a user in one of its users
namespaces, and with `?device_id=` (spec v1.17, MSC3202) as one of that user's devices.

The masqueraded user must exist (registered by the AS, or the sender, which this server
creates at start): an AS acts for users it registered, not for ids it merely could register.
Without a device id the requester has device "" and the endpoints that need a device (key
upload, to-device inbox) act for none.
"""

from __future__ import annotations

from homeserver.appservice.registration import AppService
from homeserver.appservice.registry import AppServiceRegistry
from homeserver.errors import Codes, MatrixError, forbidden
from homeserver.types import Requester, is_valid_user_id
from homeserver.users.accounts import AccountService
from homeserver.users.devices import DeviceService


class AppServiceAuth:
    def __init__(self, registry: AppServiceRegistry, accounts: AccountService,
                 devices: DeviceService) -> None:
        self.registry = registry
        self._accounts = accounts
        self._devices = devices

    async def ensure_senders(self) -> None:
        """Each AS's sender exists as a user (with no password), so that it can join rooms
        and be looked up like any user."""
        for s in self.registry.services:
            if await self._accounts.get_user(s.sender) is None:
                localpart = s.sender[1:].partition(":")[0]
                try:
                    await self._accounts.register(localpart, None)
                except MatrixError as e:
                    if e.errcode != Codes.USER_IN_USE:  # made by another process meanwhile
                        raise

    async def requester(self, service: AppService, user_id: str | None,
                        device_id: str | None) -> Requester:
        """The requester of a request made with `service`'s as_token."""
        target = service.sender if user_id is None else user_id
        if target != service.sender:
            if not is_valid_user_id(target):
                raise MatrixError(400, Codes.INVALID_PARAM, "user_id is not a valid user id")
            if not service.is_interested_in_user(target):
                raise forbidden("Application service cannot masquerade as this user")
        user = await self._accounts.get_user(target)
        if user is None:
            raise forbidden("Application service has not registered this user")
        if user["deactivated"]:
            raise forbidden("This user has been deactivated")
        device = ""
        if device_id is not None:
            try:
                await self._devices.device(target, device_id)
            except MatrixError:
                raise MatrixError(400, Codes.UNKNOWN_DEVICE,
                                  "Unknown device for this user") from None
            device = device_id
        return Requester(target, device, is_admin=bool(user["is_admin"]),
                         locked=bool(user["locked"]), app_service=service.id,
                         rate_limited=service.rate_limited and target != service.sender)
