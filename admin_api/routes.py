"""Adds the admin API's routes to the client listener's app (as Synapse serves them)."""

from __future__ import annotations

from aiohttp import web

from admin_api import federation, media, rooms, server, users
from admin_api.context import ADMIN, AdminContext
from homeserver.http import add_routes


def add_admin_routes(app: web.Application, context: AdminContext) -> None:
    app[ADMIN] = context
    for module in (users, rooms, server, media, federation):
        add_routes(app, module.routes)
