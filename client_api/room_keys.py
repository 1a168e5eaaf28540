"""Server-side key backups: /room_keys/version[/{version}] and
/room_keys/keys[/{roomId}[/{sessionId}]] (spec "Server-side key backups").

Handlers only parse the path and the `version` query parameter and shape the response; the rules
live in e2ee/backup.py and e2ee/backup_rules.py.
"""

from __future__ import annotations

from aiohttp import web

from client_api.context import auth, ctx
from e2ee.backup import KeyBackupService
from homeserver.errors import Codes, MatrixError, not_found
from homeserver.http import json_response, read_json

routes = web.RouteTableDef()
V = "/_matrix/client/{v:(v3|r0)}/room_keys"
KEYS = V + "/keys"
ROOM = KEYS + "/{room_id}"
SESSION = ROOM + "/{session_id}"


async def _user(request: web.Request) -> tuple[str, KeyBackupService]:
    requester = await auth(request)  # guests: 403 there (client_api/guest_access.py)
    service = ctx(request).key_backup
    if service is None:
        raise MatrixError(404, Codes.UNRECOGNIZED, "Key backup is not enabled")
    return requester.user_id, service


def _version(request: web.Request) -> str:
    """The required `version` query parameter (one of them)."""
    values = request.query.getall("version", [])
    if not values:
        raise MatrixError(400, Codes.MISSING_PARAM, "Missing query parameter version")
    if len(values) > 1:
        raise MatrixError(400, Codes.INVALID_PARAM, "version must be given once")
    return values[0]


# ---------------------------------------------------------------------- versions


@routes.post(V + "/version")
async def create_version(request: web.Request) -> web.Response:
    user_id, service = await _user(request)
    body = await read_json(request)
    return json_response({"version": await service.create_version(user_id, body)})


@routes.get(V + "/version")
async def get_latest_version(request: web.Request) -> web.Response:
    user_id, service = await _user(request)
    return json_response(await service.get_version(user_id, None))


@routes.get(V + "/version/{version}")
async def get_version(request: web.Request) -> web.Response:
    user_id, service = await _user(request)
    return json_response(await service.get_version(user_id, request.match_info["version"]))


@routes.put(V + "/version/{version}")
async def update_version(request: web.Request) -> web.Response:
    user_id, service = await _user(request)
    body = await read_json(request)
    await service.update_version(user_id, request.match_info["version"], body)
    return json_response({})


@routes.delete(V + "/version/{version}")
async def delete_version(request: web.Request) -> web.Response:
    user_id, service = await _user(request)
    await service.delete_version(user_id, request.match_info["version"])
    return json_response({})


# ---------------------------------------------------------------------- keys


@routes.put(KEYS)
@routes.put(ROOM)
@routes.put(SESSION)
async def put_keys(request: web.Request) -> web.Response:
    user_id, service = await _user(request)
    version = _version(request)
    body = await read_json(request)
    m = request.match_info
    return json_response(await service.put_keys(user_id, version, body, m.get("room_id"),
                                                m.get("session_id")))


@routes.get(KEYS)
async def get_all_keys(request: web.Request) -> web.Response:
    user_id, service = await _user(request)
    rooms = await service.get_keys(user_id, _version(request))
    return json_response({"rooms": {r: {"sessions": s} for r, s in rooms.items()}})


@routes.get(ROOM)
async def get_room_keys(request: web.Request) -> web.Response:
    user_id, service = await _user(request)
    room_id = request.match_info["room_id"]
    rooms = await service.get_keys(user_id, _version(request), room_id)
    # A room without keys is an empty result, not an error (spec, and Synapse).
    return json_response({"sessions": rooms.get(room_id, {})})


@routes.get(SESSION)
async def get_session_key(request: web.Request) -> web.Response:
    user_id, service = await _user(request)
    room_id, session_id = request.match_info["room_id"], request.match_info["session_id"]
    rooms = await service.get_keys(user_id, _version(request), room_id, session_id)
    key = rooms.get(room_id, {}).get(session_id)
    if key is None:
        raise not_found("Key not found")
    return json_response(key)


@routes.delete(KEYS)
@routes.delete(ROOM)
@routes.delete(SESSION)
async def delete_keys(request: web.Request) -> web.Response:
    user_id, service = await _user(request)
    m = request.match_info
    return json_response(await service.delete_keys(user_id, _version(request),
                                                   m.get("room_id"), m.get("session_id")))
