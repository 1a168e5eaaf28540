"""End-to-end encryption keys (spec "End-to-End Encryption"): upload, query, claim, changes,
cross-signing keys and signatures. The work is in e2ee/; these handlers parse and shape."""

from __future__ import annotations

from aiohttp import web

from client_api.context import auth, ctx
from client_api.register import password_uia
from e2ee.cross_signing import CrossSigningService
from e2ee.device_keys import DeviceKeyService
from e2ee.device_lists import DeviceListService
from homeserver.errors import Codes, MatrixError
from homeserver.http import json_response, read_json
from homeserver.streams.tokens import SyncToken

routes = web.RouteTableDef()
V = "/_matrix/client/{v:(v3|r0)}"
# Cross-signing was first served under /unstable (MSC1756); clients and SyTest still call it there.
VU = "/_matrix/client/{v:(v3|r0|unstable)}"


def _keys(request: web.Request) -> DeviceKeyService:
    svc = ctx(request).keys
    assert svc is not None
    return svc


def _cross_signing(request: web.Request) -> CrossSigningService:
    svc = ctx(request).cross_signing
    assert svc is not None
    return svc


def _device_lists(request: web.Request) -> DeviceListService:
    svc = ctx(request).device_lists
    assert svc is not None
    return svc


@routes.post(V + "/keys/upload")
async def upload(request: web.Request) -> web.Response:
    requester = await auth(request)
    body = await read_json(request, allow_empty=True)
    counts = await _keys(request).upload(requester, body)
    return json_response({"one_time_key_counts": counts})


@routes.post(V + "/keys/query")
async def query(request: web.Request) -> web.Response:
    requester = await auth(request)
    body = await read_json(request)
    return json_response(await _keys(request).query(requester, body))


@routes.post(V + "/keys/claim")
async def claim(request: web.Request) -> web.Response:
    requester = await auth(request)
    body = await read_json(request)
    return json_response(await _keys(request).claim(requester, body))


@routes.get(V + "/keys/changes")
async def changes(request: web.Request) -> web.Response:
    requester = await auth(request)
    raw_from, raw_to = request.query.get("from"), request.query.get("to")
    if raw_from is None or raw_to is None:
        raise MatrixError(400, Codes.MISSING_PARAM, "from and to are required")
    now = ctx(request).sync.current_token()
    start, end = SyncToken.parse(raw_from).capped(now), SyncToken.parse(raw_to).capped(now)
    changed, left = await _device_lists(request).changes(
        requester.user_id, start.device_lists, end.device_lists, start.events, end.events)
    return json_response({"changed": sorted(changed), "left": sorted(left)})


@routes.post(VU + "/keys/device_signing/upload")
async def upload_cross_signing_keys(request: web.Request) -> web.Response:
    requester = await auth(request)
    body = await read_json(request)
    svc = _cross_signing(request)
    if not await svc.upload_keys(requester, body, authed=False):
        await password_uia(request, requester, body)
        await svc.upload_keys(requester, body, authed=True)
    return json_response({})


@routes.post(VU + "/keys/signatures/upload")
async def upload_signatures(request: web.Request) -> web.Response:
    requester = await auth(request)
    body = await read_json(request)
    return json_response(await _cross_signing(request).upload_signatures(requester, body))
