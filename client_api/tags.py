"""Room tagging (spec "Room Tagging"): a user's own labels on rooms, e.g. `m.favourite`.

The tags live in the room's `m.tag` account data ({"tags": {tag: {"order": 0.5}}}), so they reach
all the user's devices in the room's `account_data` section of /sync with no extra machinery.
"""

from __future__ import annotations

from aiohttp import web

from client_api.context import auth, ctx
from homeserver.errors import Codes, MatrixError, forbidden
from homeserver.http import json_response, read_json
from homeserver.types import JsonDict, Requester, is_valid_room_id

routes = web.RouteTableDef()
V = "/_matrix/client/{v:(v3|r0)}"
MAX_TAG_BYTES = 255  # "The name of a tag MUST NOT exceed 255 bytes."


def _target(request: web.Request, requester: Requester) -> tuple[str, str]:
    """(user_id, room_id) from the path: only one's own tags, on a well-formed room id."""
    if request.match_info["user_id"] != requester.user_id:
        raise forbidden("Cannot access another user's room tags")
    room_id = request.match_info["room_id"]
    if not is_valid_room_id(room_id):
        raise MatrixError(400, Codes.INVALID_PARAM, "Invalid room id")
    return requester.user_id, room_id


def _tag(request: web.Request) -> str:
    tag = request.match_info["tag"]
    if not tag or len(tag.encode()) > MAX_TAG_BYTES:
        raise MatrixError(400, Codes.INVALID_PARAM,
                          f"Tag names must be 1 to {MAX_TAG_BYTES} bytes long")
    return tag


def _tag_info(body: JsonDict) -> JsonDict:
    """The tag object: `order`, when present, must be a number in [0, 1]."""
    if "order" in body:
        order = body["order"]
        if isinstance(order, bool) or not isinstance(order, int | float):
            raise MatrixError(400, Codes.BAD_JSON, "order must be a number")
        if not 0 <= order <= 1:
            raise MatrixError(400, Codes.INVALID_PARAM, "order must be between 0 and 1")
    return body


@routes.get(V + "/user/{user_id}/rooms/{room_id}/tags")
async def get_tags(request: web.Request) -> web.Response:
    user_id, room_id = _target(request, await auth(request))
    return json_response({"tags": await ctx(request).account_data.room_tags(user_id, room_id)})


@routes.put(V + "/user/{user_id}/rooms/{room_id}/tags/{tag}")
async def put_tag(request: web.Request) -> web.Response:
    user_id, room_id = _target(request, await auth(request))
    tag = _tag(request)
    info = _tag_info(await read_json(request, allow_empty=True))
    await ctx(request).account_data.set_room_tag(user_id, room_id, tag, info)
    return json_response({})


@routes.delete(V + "/user/{user_id}/rooms/{room_id}/tags/{tag}")
async def delete_tag(request: web.Request) -> web.Response:
    user_id, room_id = _target(request, await auth(request))
    await ctx(request).account_data.set_room_tag(user_id, room_id, _tag(request), None)
    return json_response({})
