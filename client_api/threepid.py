"""Third-party identifiers of accounts (spec "Adding Account Administrative Contact
Information"): validation tokens by e-mail, the account's 3PIDs, binding and unbinding them at
identity servers. The logic is in homeserver/identity/threepids.py."""

from __future__ import annotations

from aiohttp import web

from client_api.context import auth, ctx
from client_api.register import password_uia
from homeserver.errors import Codes, MatrixError
from homeserver.http import json_response, read_json
from homeserver.identity.threepids import SUBMIT_PATH, ThreepidService, check_client_secret

routes = web.RouteTableDef()
V = "/_matrix/client/{v:(v3|r0)}"
VU = "/_matrix/client/{v:(v3|r0|unstable)}"  # bind and unbind were unstable first


def _threepids(request: web.Request) -> ThreepidService:
    service = ctx(request).threepids
    if service is None:
        raise MatrixError(404, Codes.UNRECOGNIZED, "Third-party identifiers are not available")
    return service


def _str(body: dict[str, object], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise MatrixError(400, Codes.MISSING_PARAM, f"{name} is required")
    return value


@routes.post(V + "/register/email/requestToken")
async def register_email_token(request: web.Request) -> web.Response:
    body = await read_json(request)
    return json_response(await _threepids(request).request_email_token("register", body))


@routes.post(V + "/account/3pid/email/requestToken")
async def account_email_token(request: web.Request) -> web.Response:
    # No access token (the spec's requestToken endpoints have no security requirement).
    body = await read_json(request)
    return json_response(await _threepids(request).request_email_token("add", body))


@routes.post(V + "/account/password/email/requestToken")
async def password_email_token(request: web.Request) -> web.Response:
    body = await read_json(request)
    return json_response(await _threepids(request).request_email_token("password", body))


@routes.post(V + "/register/msisdn/requestToken")
@routes.post(V + "/account/3pid/msisdn/requestToken")
@routes.post(V + "/account/password/msisdn/requestToken")
async def msisdn_token(request: web.Request) -> web.Response:
    await read_json(request)
    raise MatrixError(400, Codes.THREEPID_MEDIUM_NOT_SUPPORTED,
                      "This server does not send text messages")


@routes.get(SUBMIT_PATH)
async def submit_token_link(request: web.Request) -> web.Response:
    """The link in the validation e-mail: a page for the person who followed it, or their
    way on to the client's next_link."""
    q = request.query
    # A bad link gets the Matrix error every /_matrix path answers with.
    next_link = await _threepids(request).submit_token(
        q.get("sid"), q.get("client_secret"), q.get("token"))
    if next_link:
        raise web.HTTPFound(next_link)
    return web.Response(content_type="text/html", text="<html><body><p>Your e-mail address "
                        "is confirmed. You may return to your Matrix client.</p></body></html>")


@routes.post(SUBMIT_PATH)
async def submit_token(request: web.Request) -> web.Response:
    """The response's submit_url: the same check with a JSON body."""
    body = await read_json(request)
    await _threepids(request).submit_token(body.get("sid"), body.get("client_secret"),
                                           body.get("token"))
    return json_response({"success": True})


@routes.get(V + "/account/3pid")
async def list_threepids(request: web.Request) -> web.Response:
    requester = await auth(request)
    return json_response({"threepids": await _threepids(request).threepids(requester.user_id)})


@routes.post(V + "/account/3pid")
async def add_threepid_deprecated(request: web.Request) -> web.Response:
    requester = await auth(request)
    body = await read_json(request)
    creds = body.get("three_pid_creds", body.get("threePidCreds"))
    bind = body.get("bind", False)
    if not isinstance(bind, bool):
        raise MatrixError(400, Codes.BAD_JSON, "bind must be a boolean")
    await _threepids(request).add_from_creds(requester.user_id, creds, bind)
    return json_response({})


@routes.post(V + "/account/3pid/add")
async def add_threepid(request: web.Request) -> web.Response:
    requester = await auth(request)
    body = await read_json(request)
    service = _threepids(request)
    check_client_secret(body.get("sid"), "sid")
    check_client_secret(body.get("client_secret"))
    await password_uia(request, requester, body)
    await service.add_validated(requester.user_id, body["sid"], body["client_secret"])
    return json_response({})


@routes.post(VU + "/account/3pid/bind")
async def bind(request: web.Request) -> web.Response:
    requester = await auth(request)
    body = await read_json(request)
    sid = check_client_secret(body.get("sid"), "sid")
    client_secret = check_client_secret(body.get("client_secret"))
    await _threepids(request).bind(requester.user_id, _str(body, "id_server"),
                                   _str(body, "id_access_token"), sid, client_secret)
    return json_response({})


@routes.post(VU + "/account/3pid/unbind")
async def unbind(request: web.Request) -> web.Response:
    requester = await auth(request)
    body = await read_json(request)
    result = await _threepids(request).unbind(requester.user_id, body.get("medium"),
                                              body.get("address"), body.get("id_server"))
    return json_response({"id_server_unbind_result": result})


@routes.post(V + "/account/3pid/delete")
async def delete(request: web.Request) -> web.Response:
    requester = await auth(request)
    body = await read_json(request)
    result = await _threepids(request).delete(requester.user_id, body.get("medium"),
                                              body.get("address"), body.get("id_server"))
    return json_response({"id_server_unbind_result": result})
