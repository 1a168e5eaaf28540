"""Push rules API (spec "Push Rules: API"): GET the ruleset, add/replace/delete user rules, and
enable/disable or change the actions of any rule. Logic lives in homeserver/push/."""

from __future__ import annotations

from aiohttp import web

from client_api.context import auth, ctx
from homeserver.errors import Codes, MatrixError
from homeserver.http import json_response, read_json
from homeserver.push import rules
from homeserver.push.service import PushRuleService
from homeserver.types import JsonDict

routes = web.RouteTableDef()
V = "/_matrix/client/{v:(v3|r0)}"
RULE = V + "/pushrules/{scope}/{kind}/{rule_id}"


def _service(request: web.Request) -> PushRuleService:
    return ctx(request).push_rules


def _scope(request: web.Request) -> None:
    if request.match_info["scope"] != "global":
        raise MatrixError(400, Codes.INVALID_PARAM, "Only the 'global' scope is supported")


def _target(request: web.Request) -> tuple[str, str]:
    _scope(request)
    return rules.check_kind(request.match_info["kind"]), request.match_info["rule_id"]


async def _existing(request: web.Request, user_id: str) -> tuple[str, str, JsonDict]:
    kind, rule_id = _target(request)
    rule = rules.find_rule(await _service(request).ruleset(user_id), kind, rule_id)
    if rule is None:
        raise MatrixError(404, Codes.NOT_FOUND, f"Unknown push rule {rule_id!r}")
    return kind, rule_id, rule


def _malformed(what: str) -> MatrixError:
    return MatrixError(400, Codes.UNRECOGNIZED, f"Malformed push rule path: {what}")


# The paths end in a slash where the spec has one (GET /pushrules/, /pushrules/global/);
# without it, or with a part missing, the answer is 400, as Synapse gives (SyTest checks).
@routes.get(V + "/pushrules/")
async def get_all(request: web.Request) -> web.Response:
    requester = await auth(request)
    return json_response(await _service(request).ruleset(requester.user_id))


@routes.get(V + "/pushrules/{scope}/")
async def get_scope(request: web.Request) -> web.Response:
    requester = await auth(request)
    _scope(request)
    return json_response((await _service(request).ruleset(requester.user_id))["global"])


@routes.get(V + "/pushrules/{scope}/{kind}/")
async def get_kind(request: web.Request) -> web.Response:
    """The rules of one kind, in priority order (a JSON array; served as Synapse does)."""
    requester = await auth(request)
    _scope(request)
    kind = rules.check_kind(request.match_info["kind"])
    ruleset = await _service(request).ruleset(requester.user_id)
    return json_response(ruleset["global"].get(kind, []))


@routes.get(V + "/pushrules/{scope}")
@routes.get(V + "/pushrules/{scope}/{kind}")
async def get_without_slash(request: web.Request) -> web.Response:
    await auth(request)
    raise _malformed("a scope or kind path ends in '/'")


@routes.get(RULE)
async def get_rule(request: web.Request) -> web.Response:
    requester = await auth(request)
    _, _, rule = await _existing(request, requester.user_id)
    return json_response(rule)


@routes.put(RULE)
async def put_rule(request: web.Request) -> web.Response:
    requester = await auth(request)
    kind, rule_id = _target(request)
    rules.check_user_rule_id(rule_id)
    body = await read_json(request)
    rule = rules.build_user_rule(kind, rule_id, body)
    before = request.query.get("before")
    after = request.query.get("after")
    await _service(request).change(
        requester.user_id, lambda ch: rules.put_user_rule(ch, kind, rule, before, after))
    return json_response({})


@routes.delete(RULE)
async def delete_rule(request: web.Request) -> web.Response:
    requester = await auth(request)
    kind, rule_id = _target(request)
    await _service(request).change(
        requester.user_id, lambda ch: rules.delete_user_rule(ch, kind, rule_id))
    return json_response({})


@routes.get(RULE + "/enabled")
async def get_enabled(request: web.Request) -> web.Response:
    requester = await auth(request)
    _, _, rule = await _existing(request, requester.user_id)
    return json_response({"enabled": rule["enabled"]})


@routes.put(RULE + "/enabled")
async def put_enabled(request: web.Request) -> web.Response:
    requester = await auth(request)
    kind, rule_id = _target(request)
    enabled = rules.check_enabled(await read_json(request))
    await _service(request).change(
        requester.user_id, lambda ch: rules.set_enabled(ch, kind, rule_id, enabled))
    return json_response({})


@routes.get(RULE + "/actions")
async def get_actions(request: web.Request) -> web.Response:
    requester = await auth(request)
    _, _, rule = await _existing(request, requester.user_id)
    return json_response({"actions": rule["actions"]})


@routes.put(RULE + "/actions")
async def put_actions(request: web.Request) -> web.Response:
    requester = await auth(request)
    kind, rule_id = _target(request)
    body = await read_json(request)
    if "actions" not in body:
        raise MatrixError(400, Codes.BAD_JSON, "Missing actions")
    actions = rules.check_actions(body["actions"])
    await _service(request).change(
        requester.user_id, lambda ch: rules.set_actions(ch, kind, rule_id, actions))
    return json_response({})


@routes.get(RULE + "/{attr}")
@routes.put(RULE + "/{attr}")
async def unknown_attribute(request: web.Request) -> web.Response:
    await auth(request)
    raise _malformed(f"unknown rule attribute {request.match_info['attr']!r}")


@routes.put(V + "/pushrules{rest:.*}")
@routes.delete(V + "/pushrules{rest:.*}")
async def incomplete(request: web.Request) -> web.Response:
    """A PUT or DELETE without a scope, kind and rule id."""
    await auth(request)
    raise _malformed("expected /pushrules/global/{kind}/{ruleId}")


@routes.get(V + "/pushrules")
async def bare(request: web.Request) -> web.Response:
    raise MatrixError(404, Codes.UNRECOGNIZED, "Unrecognized request (the path is /pushrules/)")
