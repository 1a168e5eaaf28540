"""Push rules API over real HTTP (spec "Push Rules: API")."""

from __future__ import annotations

from typing import Any

from tests.helpers import Client, User

OVERRIDE = [".m.rule.master", ".m.rule.suppress_notices", ".m.rule.invite_for_me",
            ".m.rule.member_event", ".m.rule.is_user_mention",
            ".m.rule.contains_display_name", ".m.rule.is_room_mention", ".m.rule.roomnotif",
            ".m.rule.tombstone", ".m.rule.reaction", ".m.rule.room.server_acl",
            ".m.rule.suppress_edits"]
UNDERRIDE = [".m.rule.call", ".m.rule.encrypted_room_one_to_one", ".m.rule.room_one_to_one",
             ".m.rule.message", ".m.rule.encrypted"]


def ids(rules: list[dict[str, Any]]) -> list[str]:
    return [r["rule_id"] for r in rules]


async def get_all(c: Client, u: User) -> dict[str, Any]:
    status, body = await c.request("GET", "/pushrules/", token=u.access_token)
    assert status == 200, body
    return dict(body)


async def test_get_all_predefined(c: Client) -> None:
    u = await c.register()
    body = await get_all(c, u)
    g = body["global"]
    assert set(g) == {"override", "content", "room", "sender", "underride"}
    assert ids(g["override"]) == OVERRIDE
    assert ids(g["underride"]) == UNDERRIDE
    assert g["room"] == g["sender"] == []
    assert [(r["rule_id"], r["pattern"], r["default"]) for r in g["content"]] == [
        (".m.rule.contains_user_name", u.user_id[1:].split(":")[0], True)]
    for rule in g["override"] + g["underride"]:
        assert rule["default"] is True
        assert {"rule_id", "default", "enabled", "actions", "conditions"} <= set(rule)
    invite = g["override"][2]
    assert {"key": "state_key", "kind": "event_match", "pattern": u.user_id} in \
        invite["conditions"]
    # The global scope alone, and one kind; without the spec's trailing slash the paths are
    # not found or malformed, as Synapse answers them (SyTest's 61push/80torture checks).
    status, scope = await c.request("GET", "/pushrules/global/", token=u.access_token)
    assert (status, scope) == (200, g)
    status, kind = await c.request("GET", "/pushrules/global/override/", token=u.access_token)
    assert (status, kind) == (200, g["override"])
    status, _ = await c.request("GET", "/pushrules", token=u.access_token)
    assert status == 404
    for path in ("/pushrules/global", "/pushrules/global/room",
                 "/pushrules/global/override/.m.rule.master/not_an_attr"):
        status, err = await c.request("GET", path, token=u.access_token)
        assert (status, err["errcode"]) == (400, "M_UNRECOGNIZED"), path
    for path in ("/pushrules/", "/pushrules/global", "/pushrules/global/room",
                 "/pushrules/global/room/", "/pushrules/global/override/.m.rule.master/x"):
        status, err = await c.request("PUT", path, {"actions": []}, token=u.access_token)
        assert (status, err["errcode"]) == (400, "M_UNRECOGNIZED"), path
    status, rule = await c.request("GET", "/pushrules/global/override/.m.rule.master",
                                   token=u.access_token)
    assert status == 200
    assert rule == {"rule_id": ".m.rule.master", "default": True, "enabled": False,
                    "conditions": [], "actions": []}
    status, err = await c.request("GET", "/pushrules/")
    assert status == 401 and err["errcode"] == "M_MISSING_TOKEN"


async def test_disable_rule_and_sync(c: Client) -> None:
    u = await c.register()
    first = await c.sync(u)
    url = "/pushrules/global/underride/.m.rule.message/enabled"
    status, body = await c.request("GET", url, token=u.access_token)
    assert (status, body) == (200, {"enabled": True})
    status, body = await c.request("PUT", url, {"enabled": False}, token=u.access_token)
    assert (status, body) == (200, {})
    status, body = await c.request("GET", url, token=u.access_token)
    assert (status, body) == (200, {"enabled": False})
    g = (await get_all(c, u))["global"]
    message = next(r for r in g["underride"] if r["rule_id"] == ".m.rule.message")
    assert message["enabled"] is False
    assert ids(g["underride"]) == UNDERRIDE

    nxt = await c.sync(u, first["next_batch"])
    events = [e for e in nxt["account_data"]["events"] if e["type"] == "m.push_rules"]
    assert len(events) == 1
    assert events[0]["content"] == {"global": g}
    full = await c.sync(u)
    assert {"type": "m.push_rules", "content": {"global": g}} in full["account_data"]["events"]
    # Clients still cannot write m.push_rules directly.
    status, err = await c.request("PUT", f"/user/{u.user_id}/account_data/m.push_rules",
                                  {"global": {}}, token=u.access_token)
    assert status == 400


async def test_set_actions(c: Client) -> None:
    u = await c.register()
    url = "/pushrules/global/override/.m.rule.suppress_notices/actions"
    status, body = await c.request("GET", url, token=u.access_token)
    assert (status, body) == (200, {"actions": []})
    actions = ["notify", {"set_tweak": "sound", "value": "default"}]
    status, body = await c.request("PUT", url, {"actions": actions}, token=u.access_token)
    assert (status, body) == (200, {})
    status, body = await c.request("GET", url, token=u.access_token)
    assert (status, body) == (200, {"actions": actions})
    status, err = await c.request("PUT", url, {"actions": "notify"}, token=u.access_token)
    assert (status, err["errcode"]) == (400, "M_BAD_JSON")
    status, err = await c.request("PUT", url, {"actions": ["explode"]}, token=u.access_token)
    assert (status, err["errcode"]) == (400, "M_INVALID_PARAM")


async def test_user_content_rules_before_and_delete(c: Client) -> None:
    u = await c.register()
    base = "/pushrules/global/content/"
    cake = {"pattern": "cake", "actions": ["notify", {"set_tweak": "sound",
                                                      "value": "cakealarm.wav"}]}
    status, body = await c.request("PUT", base + "SSByZWFsbHkgbGlrZSBjYWtl", cake,
                                   token=u.access_token)
    assert (status, body) == (200, {})
    status, body = await c.request("PUT", base + "U3BvbmdlIGNha2UgaXMgYmVzdA",
                                   {"pattern": "cake*lie", "actions": ["notify"]},
                                   token=u.access_token,
                                   params={"before": "SSByZWFsbHkgbGlrZSBjYWtl"})
    assert (status, body) == (200, {})
    status, body = await c.request("PUT", base + "third", {"pattern": "pie", "actions": []},
                                   token=u.access_token,
                                   params={"after": "SSByZWFsbHkgbGlrZSBjYWtl"})
    assert status == 200, body
    g = (await get_all(c, u))["global"]
    assert ids(g["content"]) == ["U3BvbmdlIGNha2UgaXMgYmVzdA", "SSByZWFsbHkgbGlrZSBjYWtl",
                                 "third", ".m.rule.contains_user_name"]
    status, rule = await c.request("GET", base + "SSByZWFsbHkgbGlrZSBjYWtl",
                                   token=u.access_token)
    assert status == 200
    assert rule == {"rule_id": "SSByZWFsbHkgbGlrZSBjYWtl", "default": False, "enabled": True,
                    **cake}
    # Room and sender rules use ids that need escaping in the path.
    status, body = await c.request("PUT", "/pushrules/global/room/%21dj234r78wl45Gh4D%3Amatrix.org",
                                   {"actions": []}, token=u.access_token)
    assert status == 200, body
    status, rule = await c.request("GET", "/pushrules/global/room/%21dj234r78wl45Gh4D%3Amatrix.org",
                                   token=u.access_token)
    assert status == 200
    assert rule == {"rule_id": "!dj234r78wl45Gh4D:matrix.org", "default": False,
                    "enabled": True, "actions": []}

    status, body = await c.request("DELETE", base + "SSByZWFsbHkgbGlrZSBjYWtl",
                                   token=u.access_token)
    assert (status, body) == (200, {})
    g = (await get_all(c, u))["global"]
    assert ids(g["content"]) == ["U3BvbmdlIGNha2UgaXMgYmVzdA", "third",
                                 ".m.rule.contains_user_name"]
    status, err = await c.request("DELETE", base + "SSByZWFsbHkgbGlrZSBjYWtl",
                                  token=u.access_token)
    assert (status, err["errcode"]) == (404, "M_NOT_FOUND")
    # Another user sees none of it.
    other = await c.register()
    assert ids((await get_all(c, other))["global"]["content"]) == [".m.rule.contains_user_name"]


async def test_errors(c: Client) -> None:
    u = await c.register()
    t = u.access_token
    cases: list[tuple[str, str, Any, dict[str, str] | None, int, str]] = [
        ("GET", "/pushrules/global/override/nope", None, None, 404, "M_NOT_FOUND"),
        ("GET", "/pushrules/global/override/nope/enabled", None, None, 404, "M_NOT_FOUND"),
        ("GET", "/pushrules/global/content/nope/actions", None, None, 404, "M_NOT_FOUND"),
        ("PUT", "/pushrules/global/override/nope/enabled", {"enabled": True}, None, 404,
         "M_NOT_FOUND"),
        ("PUT", "/pushrules/global/override/nope/actions", {"actions": []}, None, 404,
         "M_NOT_FOUND"),
        ("DELETE", "/pushrules/global/override/nope", None, None, 404, "M_NOT_FOUND"),
        ("GET", "/pushrules/global/bogus/.m.rule.master", None, None, 400, "M_INVALID_PARAM"),
        ("PUT", "/pushrules/global/bogus/x", {"actions": []}, None, 400, "M_INVALID_PARAM"),
        ("GET", "/pushrules/device/override/.m.rule.master", None, None, 400,
         "M_INVALID_PARAM"),
        ("GET", "/pushrules/device/", None, None, 400, "M_INVALID_PARAM"),
        ("PUT", "/pushrules/global/override/.m.rule.master", {"actions": []}, None, 400,
         "M_INVALID_PARAM"),
        ("PUT", "/pushrules/global/override/.mine", {"actions": []}, None, 400,
         "M_INVALID_PARAM"),
        ("DELETE", "/pushrules/global/underride/.m.rule.message", None, None, 400,
         "M_INVALID_PARAM"),
        ("PUT", "/pushrules/global/content/x", {"actions": ["notify"]}, None, 400,
         "M_BAD_JSON"),  # no pattern
        ("PUT", "/pushrules/global/override/x", {"conditions": []}, None, 400, "M_BAD_JSON"),
        ("PUT", "/pushrules/global/override/x", {"actions": [], "conditions": [{"no": 1}]},
         None, 400, "M_BAD_JSON"),
        ("PUT", "/pushrules/global/override/x", {"actions": [], "conditions": [
            {"kind": "room_member_count", "is": "lots"}]}, None, 400, "M_INVALID_PARAM"),
        ("PUT", "/pushrules/global/override/x", {"actions": []}, {"before": "missing"}, 404,
         "M_NOT_FOUND"),
        ("PUT", "/pushrules/global/override/x", {"actions": []},
         {"after": ".m.rule.master"}, 400, "M_INVALID_PARAM"),
        ("PUT", "/pushrules/global/underride/.m.rule.message/enabled", {"enabled": "no"},
         None, 400, "M_BAD_JSON"),
        ("PUT", "/pushrules/global/underride/.m.rule.message/actions", {}, None, 400,
         "M_BAD_JSON"),
    ]
    for method, path, body, params, status, errcode in cases:
        got, err = await c.request(method, path, body, t, params=params)
        assert (got, err.get("errcode")) == (status, errcode), (method, path, err)
    got, err = await c.request("PUT", "/pushrules/global/override/x", token=t, raw=b"{nope")
    assert (got, err["errcode"]) == (400, "M_NOT_JSON")
    got, err = await c.request("PUT", "/pushrules/global/override/x", token=t, raw=b"[1]")
    assert (got, err["errcode"]) == (400, "M_BAD_JSON")
    # Nothing above changed the ruleset.
    g = (await get_all(c, u))["global"]
    assert ids(g["override"]) == OVERRIDE and ids(g["underride"]) == UNDERRIDE
    assert all(r["enabled"] for r in g["underride"])
