"""Builds the federation routes: /_matrix/key/v2, /_matrix/federation and the server
well-known, on whichever listener serves the `federation` resource."""

from __future__ import annotations

from aiohttp import web

from federation import directory, events, keys, media, openid, query, rooms, threepid, user
from federation.context import fed
from homeserver.errors import not_found
from homeserver.http import add_routes, json_response

routes = web.RouteTableDef()


@routes.get("/_matrix/federation/v1/version")
async def version(request: web.Request) -> web.Response:
    return json_response({"server": {"name": "Parley", "version": "0.1.0"}})


@routes.get("/.well-known/matrix/server")
async def well_known(request: web.Request) -> web.Response:
    delegated = fed(request).well_known_server
    if not delegated:
        raise not_found("No server delegation configured")
    return json_response({"m.server": delegated})


def add_federation_routes(app: web.Application) -> None:
    for module_routes in (routes, keys.routes, query.routes, rooms.routes, events.routes,
                          user.routes, directory.routes, openid.routes, media.routes,
                          threepid.routes):
        add_routes(app, module_routes)
