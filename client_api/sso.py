"""Single sign-on (spec "Client login via SSO") through CAS: the redirect to the CAS login
page, and the ticket endpoint CAS sends the browser back to, which hands the client a login
token (homeserver/identity/sso.py). Unconfigured, these endpoints do not exist (404)."""

from __future__ import annotations

from html import escape

from aiohttp import web

from client_api.context import ctx
from client_api.uia import UIA
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
@routes.get(V + "/login/cas/redirect")  # the older CAS-only name, which Synapse still serves
async def redirect(request: web.Request) -> web.Response:
    sso = _sso(request)
    raise web.HTTPFound(sso.redirect(sso.login_service(_redirect_url(request))))


@routes.get(V + "/login/sso/redirect/{idp_id}")
async def redirect_idp(request: web.Request) -> web.Response:
    sso = _sso(request)
    if request.match_info["idp_id"] != "cas":
        raise MatrixError(404, Codes.NOT_FOUND, "Unknown identity provider")
    raise web.HTTPFound(sso.redirect(sso.login_service(_redirect_url(request))))


@routes.get(V + "/auth/m.login.sso/fallback/web")
async def sso_fallback(request: web.Request) -> web.Response:
    """The m.login.sso stage's fallback (spec "Fallback"): sign in at CAS, which comes back
    to the ticket endpoint with the session."""
    sso = _sso(request)
    session = request.query.get("session")
    if not session:
        raise MatrixError(400, Codes.MISSING_PARAM, "session is required")
    raise web.HTTPFound(sso.redirect(sso.ui_auth_service(session)))


def _page(title: str, body: str) -> web.Response:
    return web.Response(content_type="text/html", text=(
        f"<!DOCTYPE html><html><head><title>{escape(title)}</title></head><body>{body}"
        "</body></html>"))


@routes.get(V + "/login/cas/ticket")
async def cas_ticket(request: web.Request) -> web.Response:
    """Validate the ticket. For a login, show the way back to the client with its login
    token: a page rather than a redirect, as Synapse does for clients it does not know, so
    the person sees which site is about to be logged in. For a user-interactive auth session,
    complete its m.login.sso stage (if CAS names the session's own user)."""
    sso = _sso(request)
    ticket = request.query.get("ticket")
    if not ticket:
        raise MatrixError(400, Codes.MISSING_PARAM, "ticket is required")
    session = request.query.get("session")
    if session is not None:
        user_id = await sso.cas_ticket(ticket, sso.ui_auth_service(session), create=False)
        uia = ctx(request).uia
        assert isinstance(uia, UIA)
        if await uia.complete_sso(session, user_id):
            return _page("Authenticated", "<p>Done. You may return to your Matrix client.</p>")
        # A page too (the browser shows it); the client's next request learns the outcome.
        return _page("Not authenticated", "<p>The account you signed in with is not the one "
                     "that asked, or the request has expired.</p>")
    redirect_url = _redirect_url(request)
    user_id = await sso.cas_ticket(ticket, sso.login_service(redirect_url))
    assert user_id is not None
    token = await sso.login_token(user_id)
    target = redirect_url + ("&" if "?" in redirect_url else "?") + "loginToken=" + token
    return _page("Continue to your account",
                 f"<p>You are signed in as {escape(user_id)}.</p>"
                 f'<p><a href="{escape(target, quote=True)}">Continue to '
                 f"{escape(redirect_url)}</a></p>")
