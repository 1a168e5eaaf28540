"""The notifier's waiters: woken by a notification (True) or by their deadline (False), the
deadlines of many waiters served by one loop timer, and nothing kept once a waiter leaves."""

from __future__ import annotations

import asyncio
import gc
import weakref

from homeserver.streams.notifier import DEADLINE_GRAIN, Notifier


async def test_deadline_resolves_false_not_before_it() -> None:
    n = Notifier()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 0.1
    fut = n.subscribe("@a:x", deadline)
    assert await fut is False
    assert deadline <= loop.time() < deadline + DEADLINE_GRAIN + 0.1
    n.unsubscribe("@a:x", fut, deadline)
    assert n.waiting_users == 0


async def test_notify_resolves_true_before_the_deadline() -> None:
    n = Notifier()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    fut = n.subscribe("@a:x", deadline)
    other = n.subscribe("@b:x", deadline)
    loop.call_later(0.05, n.notify_users, ["@a:x"])
    assert await asyncio.wait_for(fut, 2) is True
    assert not other.done()  # only the user notified
    n.unsubscribe("@a:x", fut, deadline)
    n.unsubscribe("@b:x", other, deadline)
    assert other.cancelled()


async def test_many_deadlines_share_one_timer() -> None:
    n = Notifier()
    loop = asyncio.get_running_loop()
    base = loop.time()
    scheduled = len(getattr(loop, "_scheduled", []))
    futs = [(n.subscribe(f"@u{i}:x", base + 0.2 + i / 10_000), base + 0.2 + i / 10_000)
            for i in range(200)]
    if hasattr(loop, "_scheduled"):  # the default loop's timer list
        assert len(loop._scheduled) <= scheduled + 1
    results = await asyncio.gather(*(f for f, _ in futs))
    assert results == [False] * 200
    assert loop.time() >= base + 0.2 + 199 / 10_000
    for i, (f, d) in enumerate(futs):
        n.unsubscribe(f"@u{i}:x", f, d)


async def test_a_waiter_that_left_is_not_kept() -> None:
    n = Notifier()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    refs = []
    for _ in range(3):  # woken early, again and again, with the same deadline
        fut = n.subscribe("@a:x", deadline)
        n.notify_users(["@a:x"])
        assert await fut is True
        n.unsubscribe("@a:x", fut, deadline)
        refs.append(weakref.ref(fut))
        del fut
    gc.collect()
    assert all(r() is None for r in refs)
    # a later waiter with that deadline still times out
    fut = n.subscribe("@a:x", loop.time() + 0.05)
    assert await fut is False


async def test_close_wakes_everyone_and_later_waiters_at_once() -> None:
    n = Notifier()
    loop = asyncio.get_running_loop()
    fut = n.subscribe("@a:x", loop.time() + 60)
    n.close()
    assert await fut is True
    assert await n.subscribe("@b:x", loop.time() + 60) is True


async def test_subscribe_many_wakes_on_any_key_and_leaves_nothing() -> None:
    n = Notifier()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    keys = ["@peeker:x", "@m1:x", "@m2:x"]
    fut = n.subscribe_many(keys, deadline)
    loop.call_later(0.02, n.notify_users, ["@m2:x"])
    assert await asyncio.wait_for(fut, 2) is True
    n.unsubscribe_many(keys, fut, deadline)
    assert n.waiting_users == 0
    # a second waiter on the same keys times out when nobody is notified
    soon = loop.time() + 0.05
    fut = n.subscribe_many(keys, soon)
    assert await asyncio.wait_for(fut, 2) is False
    n.unsubscribe_many(keys, fut, soon)
    assert n.waiting_users == 0
