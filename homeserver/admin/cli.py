"""`parley admin ...`: what an operator does without a running client (homeserver/__main__.py
parses the command line and builds the services; this runs one action and says what it did).

It writes to the database directly, as the admin API does. A server that is running at the
time caches access tokens in memory, so a change to who is an admin, a lock or a logout reaches
sessions it already knows at their next login or its next restart; on a running server the
HTTP admin API (docs/admin.md) applies such changes at once. Nothing here writes room events
(deactivation leaves rooms: it is the admin API's), so a running server's room caches stay
true.
"""

from __future__ import annotations

import argparse
import json
import time

from homeserver.admin.registration_tokens import RegistrationTokens
from homeserver.admin.users import UserAdminService
from homeserver.types import Requester

OPERATOR = Requester("", "")  # the operator at the console: no user of the server

RUNNING_NOTE = ("note: a running server applies this to sessions it already knows at their "
                "next login or its restart (the admin API applies it at once)")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    admin = sub.add_parser("admin", help="operator actions: users, admins, registration tokens")
    admin.add_argument("--config", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    actions = admin.add_subparsers(dest="action", required=True)

    def user_action(name: str, help_text: str) -> argparse.ArgumentParser:
        p = actions.add_parser(name, help=help_text)
        p.add_argument("--user", required=True, help="localpart or full user id")
        return p

    create = user_action("create-user", "create a user")
    create.add_argument("--password", help="password (default: PARLEY_PASSWORD or a prompt)")
    create.add_argument("--admin", action="store_true", help="make the user a server admin")
    reset = user_action("reset-password", "set a user's password")
    reset.add_argument("--password", help="password (default: PARLEY_PASSWORD or a prompt)")
    reset.add_argument("--keep-devices", action="store_true",
                       help="keep the user's sessions (default: log them all out)")
    user_action("make-admin", "make a user a server admin")
    user_action("revoke-admin", "make a server admin an ordinary user")
    user_action("lock", "lock an account (M_USER_LOCKED)")
    user_action("unlock", "unlock an account")
    tokens = actions.add_parser("list-tokens", help="list registration tokens (JSON lines)")
    tokens.add_argument("--valid", choices=("true", "false"),
                        help="only valid (or only spent or expired) tokens")
    new = actions.add_parser("create-token", help="create a registration token")
    new.add_argument("--token", help="the token (default: random)")
    new.add_argument("--length", type=int, default=16, help="length of a random token")
    new.add_argument("--uses", type=int, help="registrations allowed (default: unlimited)")
    new.add_argument("--expires-in-days", type=float, help="valid for this many days")
    remove = actions.add_parser("delete-token", help="delete a registration token")
    remove.add_argument("token")
    actions.add_parser("rotate-key", help="replace the signing key (as `parley rotate-key`)")


def needs_password(args: argparse.Namespace) -> bool:
    return args.action in ("create-user", "reset-password")


async def run(args: argparse.Namespace, users: UserAdminService, tokens: RegistrationTokens,
              password: str | None) -> list[str]:
    """Carry out `args.action`; returns the lines to print."""
    action = args.action
    if action in ("list-tokens", "create-token", "delete-token"):
        return await _tokens(args, tokens)
    accounts = users.accounts
    user = args.user if args.user.startswith("@") else accounts.user_id_for(args.user.lower())
    if action == "create-user":
        user_id = await accounts.register(user[1:].partition(":")[0], password,
                                          is_admin=args.admin)
        return [f"created {user_id}{' (admin)' if args.admin else ''}"]
    users.local_user(user)
    await users.existing(user)
    if action == "reset-password":
        assert password is not None
        await users.reset_password(user, password, not args.keep_devices)
        return [f"password of {user} set" + ("" if args.keep_devices
                                             else "; its sessions are logged out"), RUNNING_NOTE]
    if action in ("make-admin", "revoke-admin"):
        await users.set_admin(OPERATOR, user, action == "make-admin")
        return [f"{user} is {'now' if action == 'make-admin' else 'no longer'} a server admin",
                RUNNING_NOTE]
    if action in ("lock", "unlock"):
        await users.states.set_flag(user, "locked", action == "lock")
        return [f"{user} is {action}ed", RUNNING_NOTE]
    raise ValueError(f"unknown action {action}")


async def _tokens(args: argparse.Namespace, tokens: RegistrationTokens) -> list[str]:
    if args.action == "list-tokens":
        valid = None if args.valid is None else args.valid == "true"
        return [json.dumps(t) for t in await tokens.list(valid)]
    if args.action == "create-token":
        body: dict[str, object] = {"uses_allowed": args.uses, "length": args.length}
        if args.token:
            body["token"] = args.token
        if args.expires_in_days is not None:
            body["expiry_time"] = int(time.time() * 1000 + args.expires_in_days * 86_400_000)
        return [json.dumps(await tokens.create(body))]
    await tokens.delete(args.token)
    return [f"deleted {args.token}"]
