"""Third-party lookups (spec "Third-party Networks"): protocols, locations and users that
bridges (application services) provide. Parley has no application services, so there are no
protocols, and every lookup finds nothing."""

from __future__ import annotations

from aiohttp import web

from client_api.context import auth
from homeserver.errors import Codes, MatrixError, not_found
from homeserver.http import json_response

routes = web.RouteTableDef()
V = "/_matrix/client/{v:(v3|r0)}/thirdparty"


@routes.get(V + "/protocols")
async def protocols(request: web.Request) -> web.Response:
    await auth(request)
    return json_response({})


@routes.get(V + "/protocol/{protocol}")
async def protocol(request: web.Request) -> web.Response:
    await auth(request)
    raise not_found("Unknown protocol")


@routes.get(V + "/location/{protocol}")
@routes.get(V + "/user/{protocol}")
async def by_protocol(request: web.Request) -> web.Response:
    await auth(request)
    return json_response([])


@routes.get(V + "/location")
async def location(request: web.Request) -> web.Response:
    await auth(request)
    if not request.query.get("alias"):
        raise MatrixError(400, Codes.MISSING_PARAM, "Missing query parameter alias")
    return json_response([])


@routes.get(V + "/user")
async def user(request: web.Request) -> web.Response:
    await auth(request)
    if not request.query.get("userid"):
        raise MatrixError(400, Codes.MISSING_PARAM, "Missing query parameter userid")
    return json_response([])
