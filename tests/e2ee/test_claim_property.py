"""Property: however many devices claim at once, a one-time key is handed out at most once and
none is lost (claimed + still stored = uploaded); the fallback key only when none is left."""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2ee.keys import b64, claim, login, new_device, upload
from tests.helpers import Client


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(keys=st.lists(st.integers(0, 8), min_size=1, max_size=3),
       claims=st.lists(st.integers(1, 4), min_size=1, max_size=5),
       with_fallback=st.booleans())
async def test_concurrent_claims(c: Client, keys: list[int], claims: list[int],
                                 with_fallback: bool) -> None:
    owner = await c.register()
    devices = [owner] + [await login(c, owner, f"D{i}") for i in range(1, len(keys))]
    uploaded: dict[str, set[str]] = {}
    fallbacks: dict[str, str] = {}
    for dev_user, n in zip(devices, keys, strict=True):
        dev = new_device(dev_user)
        body = {"one_time_keys": dev.one_time_keys(n)}
        if with_fallback:
            body["fallback_keys"] = {f"signed_curve25519:FB{dev_user.device_id}":
                                     dev.sign({"key": b64(), "fallback": True})}
            fallbacks[dev_user.device_id] = f"signed_curve25519:FB{dev_user.device_id}"
        assert (await upload(c, dev_user, body))[0] == 200
        uploaded[dev_user.device_id] = set(body["one_time_keys"])
    claimers = [await c.register() for _ in claims]
    want = {owner.user_id: {d.device_id: "signed_curve25519" for d in devices}}

    async def run(user_index: int) -> list[tuple[str, str]]:
        got: list[tuple[str, str]] = []
        for _ in range(claims[user_index]):
            body = await claim(c, claimers[user_index], want)
            for device_id, by_key in body["one_time_keys"].get(owner.user_id, {}).items():
                got.extend((device_id, kid) for kid in by_key)
        return got

    results = await asyncio.gather(*(run(i) for i in range(len(claims))))
    handed = [pair for r in results for pair in r]
    for d in devices:
        mine = [kid for dev_id, kid in handed if dev_id == d.device_id]
        otks = [k for k in mine if k != fallbacks.get(d.device_id)]
        assert len(otks) == len(set(otks)), "a one-time key was handed out twice"
        assert set(otks) <= uploaded[d.device_id]
        counts = (await upload(c, d, {}))[1]["one_time_key_counts"]
        left = counts.get("signed_curve25519", 0)
        assert len(otks) + left == len(uploaded[d.device_id]), "a key was lost"
        total_claims = sum(claims)
        if with_fallback:
            # every claim got a key: a one-time key while any was left, else the fallback
            assert len(mine) == total_claims
            assert left == max(0, len(uploaded[d.device_id]) - total_claims)
        else:
            assert len(mine) == min(total_claims, len(uploaded[d.device_id]))
