"""Push rules through matrix-nio: nio's set/enable/actions/delete calls against Parley, and nio's
sync parsing the resulting `m.push_rules` account data into a PushRulesEvent."""

from __future__ import annotations

from nio import (
    DeletePushRuleResponse,
    EnablePushRuleResponse,
    PushNotify,
    PushRuleKind,
    PushRulesEvent,
    SetPushRuleActionsResponse,
    SetPushRuleResponse,
    SyncResponse,
)

from tests.e2e.conftest import NioFactory


async def test_nio_push_rules(nio_user: NioFactory) -> None:
    alice = await nio_user("alice")
    assert isinstance(await alice.sync(timeout=0), SyncResponse)

    resp = await alice.set_pushrule("global", PushRuleKind.content, "cake",
                                    actions=[PushNotify()], pattern="cake")
    assert isinstance(resp, SetPushRuleResponse), resp
    resp = await alice.set_pushrule("global", PushRuleKind.content, "pie", before="cake",
                                    actions=[], pattern="pie")
    assert isinstance(resp, SetPushRuleResponse), resp
    enabled = await alice.enable_pushrule("global", PushRuleKind.underride, ".m.rule.message",
                                          False)
    assert isinstance(enabled, EnablePushRuleResponse), enabled
    acts = await alice.set_pushrule_actions("global", PushRuleKind.override,
                                            ".m.rule.suppress_notices", [PushNotify()])
    assert isinstance(acts, SetPushRuleActionsResponse), acts
    deleted = await alice.delete_pushrule("global", PushRuleKind.content, "cake")
    assert isinstance(deleted, DeletePushRuleResponse), deleted

    sync = await alice.sync(timeout=0)
    assert isinstance(sync, SyncResponse), sync
    events = [e for e in sync.account_data_events if isinstance(e, PushRulesEvent)]
    assert len(events) == 1
    rules = events[0].global_rules
    assert [r.id for r in rules.content] == ["pie", ".m.rule.contains_user_name"]
    assert rules.content[0].default is False and rules.content[0].pattern == "pie"
    assert rules.override[0].id == ".m.rule.master" and rules.override[0].enabled is False
    notices = next(r for r in rules.override if r.id == ".m.rule.suppress_notices")
    assert notices.actions == [PushNotify()]
    message = next(r for r in rules.underride if r.id == ".m.rule.message")
    assert message.enabled is False and message.default is True
    assert len(rules.underride) == 5
