"""Invite blocking (spec v1.18 "Invite permission"): a user whose global account data
`m.invite_permission_config` has `default_action: block` gets no invites.

The check is one hook, `blocks(user_id)`, that the places the spec lists call:
RoomService (POST /invite, PUT /state/m.room.member with membership invite: 403
M_INVITE_BLOCKED; createRoom's `invite` list: the blocked user is left out and the room is
still made), the federation invite handler (PUT /v2/invite: 403 M_INVITE_BLOCKED), and /sync
and sliding sync, which do not serve invites to such a user (GET /state still shows them).
Invites suppressed while blocking was on are not re-sent when it is turned off (the spec's
MAY): an initial sync shows them again.
"""

from __future__ import annotations

from homeserver.errors import MatrixError
from homeserver.users.account_data import AccountDataService

CONFIG = "m.invite_permission_config"
INVITE_BLOCKED = "M_INVITE_BLOCKED"


def invite_blocked(user_id: str) -> MatrixError:
    return MatrixError(403, INVITE_BLOCKED, f"{user_id} does not accept invites")


class InvitePermission:
    def __init__(self, account_data: AccountDataService) -> None:
        self._account_data = account_data

    async def blocks(self, user_id: str) -> bool:
        try:
            config = await self._account_data.get_account_data(user_id, "", CONFIG)
        except MatrixError:  # not set
            return False
        return config.get("default_action") == "block"
