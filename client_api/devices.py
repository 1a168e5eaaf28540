"""Device management: list, get, rename, delete (deletion needs user-interactive auth, except
for an application service), and creation by an application service (spec v1.17)."""

from __future__ import annotations

from aiohttp import web

from client_api.context import auth, ctx
from client_api.register import password_uia
from homeserver.errors import Codes, MatrixError
from homeserver.http import json_response, read_json

routes = web.RouteTableDef()
V = "/_matrix/client/{v:(v3|r0)}"


@routes.get(V + "/devices")
async def list_devices(request: web.Request) -> web.Response:
    requester = await auth(request)
    return json_response({"devices": await ctx(request).devices.devices(requester.user_id)})


@routes.get(V + "/devices/{device_id}")
async def get_device(request: web.Request) -> web.Response:
    requester = await auth(request)
    return json_response(await ctx(request).devices.device(requester.user_id,
                                                         request.match_info["device_id"]))


@routes.put(V + "/devices/{device_id}")
async def rename_device(request: web.Request) -> web.Response:
    requester = await auth(request)
    body = await read_json(request, allow_empty=True)
    name = body.get("display_name")
    if name is not None and not isinstance(name, str):
        raise MatrixError(400, Codes.BAD_JSON, "display_name must be a string")
    device_id = request.match_info["device_id"]
    if requester.app_service is not None and 0 < len(device_id) <= 255 and \
            not await ctx(request).devices.has_device(requester.user_id, device_id):
        await ctx(request).devices.create_device(requester.user_id, device_id, name)
        return json_response({}, status=201)
    if name is not None:
        await ctx(request).devices.rename_device(requester.user_id,
                                               request.match_info["device_id"], name)
    else:
        await ctx(request).devices.device(requester.user_id, request.match_info["device_id"])
    return json_response({})


@routes.delete(V + "/devices/{device_id}")
async def delete_device(request: web.Request) -> web.Response:
    requester = await auth(request)
    body = await read_json(request, allow_empty=True)
    c = ctx(request)
    await c.devices.device(requester.user_id, request.match_info["device_id"])
    await password_uia(request, requester, body)
    await c.devices.delete_devices(requester.user_id, [request.match_info["device_id"]])
    return json_response({})


@routes.post(V + "/delete_devices")
async def delete_devices(request: web.Request) -> web.Response:
    requester = await auth(request)
    body = await read_json(request)
    devices = body.get("devices")
    if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
        raise MatrixError(400, Codes.BAD_JSON, "devices must be a list of strings")
    await password_uia(request, requester, body)
    await ctx(request).devices.delete_devices(requester.user_id, devices)
    return json_response({})
