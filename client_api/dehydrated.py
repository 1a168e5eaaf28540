"""Dehydrated devices, MSC3814's unstable endpoints (the work is in e2ee/dehydrated.py)."""

from __future__ import annotations

from aiohttp import web

from client_api.context import auth, ctx
from e2ee.dehydrated import DehydratedDeviceService
from homeserver.http import json_response, read_json

routes = web.RouteTableDef()
U = "/_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device"


def _svc(request: web.Request) -> DehydratedDeviceService:
    svc = ctx(request).dehydrated
    assert svc is not None
    return svc


@routes.put(U)
async def put_device(request: web.Request) -> web.Response:
    requester = await auth(request)
    body = await read_json(request)
    return json_response({"device_id": await _svc(request).put(requester, body)})


@routes.get(U)
async def get_device(request: web.Request) -> web.Response:
    requester = await auth(request)
    return json_response(await _svc(request).get(requester))


@routes.delete(U)
async def delete_device(request: web.Request) -> web.Response:
    requester = await auth(request)
    return json_response({"device_id": await _svc(request).delete(requester)})


@routes.post(U + "/{device_id}/events")
async def events_post(request: web.Request) -> web.Response:
    requester = await auth(request)
    body = await read_json(request, allow_empty=True)
    return json_response(await _svc(request).events(
        requester, request.match_info["device_id"], body.get("next_batch")))


@routes.get(U + "/{device_id}/events")
async def events_get(request: web.Request) -> web.Response:
    requester = await auth(request)
    return json_response(await _svc(request).events(
        requester, request.match_info["device_id"], request.query.get("next_batch")))
