"""Single sign-on (spec "Client login via SSO") through CAS: the redirect to the CAS login
page, and the ticket endpoint CAS sends the browser back to, which hands the client a login
token (homeserver/identity/sso.py). Unconfigured, these endpoints do not exist (404)."""

from __future__ import annotations

from html import escape

from aiohttp import web

from client_api.context import ctx
from homeserver.errors import Codes, MatrixError
from homeserver.identity.sso import SsoService

routes = web.RouteTableDef()
V = "/_matrix/client/{v:(v3|r0)}"


def _sso(request: web.Request) -> SsoService:
    sso = ctx(request).sso
    if sso is None or not sso.enabled:
        raise MatrixError(404, Codes.UNRECOGNIZED, "Single sign-on is not configured")
    return sso


def _redirect_url(request: web.Request) -> str:
    url = request.query.get("redirectUrl")
    if not url:
        raise MatrixError(400, Codes.MISSING_PARAM, "redirectUrl is required")
    return url


@routes.get(V + "/login/sso/redirect")
async def redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound(_sso(request).redirect(_redirect_url(request)))


@routes.get(V + "/login/sso/redirect/{idp_id}")
async def redirect_idp(request: web.Request) -> web.Response:
    sso = _sso(request)
    if request.match_info["idp_id"] != "cas":
        raise MatrixError(404, Codes.NOT_FOUND, "Unknown identity provider")
    raise web.HTTPFound(sso.redirect(_redirect_url(request)))


@routes.get(V + "/login/cas/ticket")
async def cas_ticket(request: web.Request) -> web.Response:
    """Validate the ticket, then show the way back to the client with its login token. A page
    rather than a redirect, as Synapse does for clients it does not know: the person sees
    which site is about to be logged in before it is."""
    sso = _sso(request)
    redirect_url = _redirect_url(request)
    ticket = request.query.get("ticket")
    if not ticket:
        raise MatrixError(400, Codes.MISSING_PARAM, "ticket is required")
    user_id = await sso.cas_ticket(ticket, redirect_url)
    token = await sso.login_token(user_id)
    target = redirect_url + ("&" if "?" in redirect_url else "?") + "loginToken=" + token
    return web.Response(content_type="text/html", text=(
        "<!DOCTYPE html><html><head><title>Continue to your account</title></head><body>"
        f"<p>You are signed in as {escape(user_id)}.</p>"
        f'<p><a href="{escape(target, quote=True)}">Continue to {escape(redirect_url)}</a></p>'
        "</body></html>"))
