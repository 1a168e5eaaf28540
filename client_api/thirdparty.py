"""Third-party lookups (spec "Third-party Networks"): protocols, locations and users that
bridges (application services) provide, asked of the ASes that declare the protocol
(homeserver/appservice/service.py). With no AS, there are no protocols and every lookup finds
nothing."""

from __future__ import annotations

from aiohttp import web

from client_api.context import auth, ctx
from homeserver.appservice.service import query_fields
from homeserver.errors import Codes, MatrixError, not_found
from homeserver.http import json_response

routes = web.RouteTableDef()
V = "/_matrix/client/{v:(v3|r0)}/thirdparty"


@routes.get(V + "/protocols")
async def protocols(request: web.Request) -> web.Response:
    await auth(request)
    q = ctx(request).appservices
    return json_response(await q.protocols() if q is not None else {})


@routes.get(V + "/protocol/{protocol}")
async def protocol(request: web.Request) -> web.Response:
    await auth(request)
    q = ctx(request).appservices
    info = await q.protocol(request.match_info["protocol"]) if q is not None else None
    if info is None:
        raise not_found("Unknown protocol")
    return json_response(info)


@routes.get(V + "/location/{protocol}")
async def location_by_protocol(request: web.Request) -> web.Response:
    return await _lookup(request, "location")


@routes.get(V + "/user/{protocol}")
async def user_by_protocol(request: web.Request) -> web.Response:
    return await _lookup(request, "user")


async def _lookup(request: web.Request, kind: str) -> web.Response:
    await auth(request)
    q = ctx(request).appservices
    if q is None:
        return json_response([])
    return json_response(await q.lookup(kind, request.match_info["protocol"],
                                        query_fields(request.query)))


@routes.get(V + "/location")
async def location(request: web.Request) -> web.Response:
    await auth(request)
    alias = request.query.get("alias")
    if not alias:
        raise MatrixError(400, Codes.MISSING_PARAM, "Missing query parameter alias")
    q = ctx(request).appservices
    return json_response(await q.lookup("location", None, {"alias": alias}) if q else [])


@routes.get(V + "/user")
async def user(request: web.Request) -> web.Response:
    await auth(request)
    userid = request.query.get("userid")
    if not userid:
        raise MatrixError(400, Codes.MISSING_PARAM, "Missing query parameter userid")
    q = ctx(request).appservices
    return json_response(await q.lookup("user", None, {"userid": userid}) if q else [])
