"""Media repository benchmark over the client-server API (Parley or Synapse).

    bench/media_bench.py --url http://127.0.0.1:8008 --label parley --pid PID [--runs 7]

Measures, each as the median of `--runs` trials:
- upload: POST /_matrix/media/v3/upload of a 10 MB random file (MB/s);
- download: GET /_matrix/client/v1/media/download of that file (MB/s);
- thumbnail: a 4000x3000 JPEG (a gradient with noise, ~6 MB), new bytes each trial: the upload's
  time, then
  the first GET .../thumbnail at 320x240 scale (made on demand by Parley; Synapse makes its
  thumbnails during the upload), and a second request (served stored);
- memory (with --pid, Linux): the server's RSS sampled every 5 ms during 10 MB uploads and
  downloads; the growth above the RSS before them (the point: it must not be the file's size).

The server must allow registration (m.login.dummy) and have no low rate limits for media.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import secrets
import statistics
import time
from pathlib import Path
from typing import Any

import aiohttp

MB = 1_000_000


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Sampler:
    """Peak RSS of a process while a block runs."""

    def __init__(self, pid: int | None) -> None:
        self.pid, self.peak, self._task = pid, 0, None

    async def _run(self) -> None:
        assert self.pid is not None
        while True:
            self.peak = max(self.peak, rss_kb(self.pid))
            await asyncio.sleep(0.005)

    async def __aenter__(self) -> Sampler:
        if self.pid:
            self.peak = rss_kb(self.pid)
            self._task = asyncio.create_task(self._run())  # type: ignore[assignment]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()  # type: ignore[unreachable]


def photo(width: int = 4000, height: int = 3000) -> bytes:
    from PIL import Image

    grad = Image.linear_gradient("L").resize((width, height))
    noise = Image.effect_noise((width, height), 40)
    im = Image.merge("RGB", (grad, noise, grad.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=85)
    return buf.getvalue()


async def register(s: aiohttp.ClientSession, url: str) -> str:
    body = {"username": "mb" + secrets.token_hex(5), "password": "bench-pw-1",
            "auth": {"type": "m.login.dummy"}}
    async with s.post(url + "/_matrix/client/v3/register", json=body) as r:
        data = await r.json()
        assert r.status == 200, data
        return str(data["access_token"])


async def upload(s: aiohttp.ClientSession, url: str, token: str, data: bytes,
                 ctype: str) -> str:
    async with s.post(url + "/_matrix/media/v3/upload", data=data, headers={
            "Authorization": f"Bearer {token}", "Content-Type": ctype}) as r:
        body = await r.json()
        assert r.status == 200, body
        return str(body["content_uri"]).removeprefix("mxc://")


async def get(s: aiohttp.ClientSession, url: str, token: str, path: str) -> bytes:
    async with s.get(url + "/_matrix/client/v1/media/" + path,
                     headers={"Authorization": f"Bearer {token}"}) as r:
        data = await r.read()
        assert r.status == 200, (r.status, data[:200])
        return data


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--label", required=True)
    ap.add_argument("--pid", type=int, default=None, help="server process, for RSS")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    url = args.url.rstrip("/")
    blob = os.urandom(10 * MB)
    jpeg = photo()
    res: dict[str, Any] = {"label": args.label, "runs": args.runs, "file_bytes": len(blob),
                           "jpeg_bytes": len(jpeg)}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as s:
        token = await register(s, url)
        await upload(s, url, token, b"warm-up", "text/plain")
        ups, downs, media = [], [], []
        for _ in range(args.runs):
            t = time.perf_counter()
            media.append(await upload(s, url, token, blob, "application/octet-stream"))
            ups.append(time.perf_counter() - t)
        for m in media:
            t = time.perf_counter()
            assert len(await get(s, url, token, "download/" + m)) == len(blob)
            downs.append(time.perf_counter() - t)
        res["upload_MBps"] = round(len(blob) / MB / statistics.median(ups), 1)
        res["download_MBps"] = round(len(blob) / MB / statistics.median(downs), 1)

        up_ms, first_ms, again_ms = [], [], []
        for _ in range(args.runs):
            t = time.perf_counter()
            # bytes after the JPEG's end marker: decoders ignore them, but the content (and
            # its hash) differs, so no server can reuse an earlier trial's thumbnails
            m = await upload(s, url, token, jpeg + os.urandom(16), "image/jpeg")
            up_ms.append((time.perf_counter() - t) * 1000)
            path = f"thumbnail/{m}?width=320&height=240&method=scale"
            t = time.perf_counter()
            await get(s, url, token, path)
            first_ms.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            await get(s, url, token, path)
            again_ms.append((time.perf_counter() - t) * 1000)
        res["jpeg_upload_ms"] = round(statistics.median(up_ms), 1)
        res["thumbnail_first_ms"] = round(statistics.median(first_ms), 1)
        res["thumbnail_again_ms"] = round(statistics.median(again_ms), 1)
        res["upload_plus_first_thumbnail_ms"] = round(
            statistics.median(a + b for a, b in zip(up_ms, first_ms, strict=True)), 1)

        if args.pid:
            before = rss_kb(args.pid)
            async with Sampler(args.pid) as sampler:
                for _ in range(3):
                    m = await upload(s, url, token, blob, "application/octet-stream")
                    await get(s, url, token, "download/" + m)
            res["rss_before_MB"] = round(before / 1000, 1)
            res["rss_peak_growth_MB"] = round((sampler.peak - before) / 1000, 1)
            res["rss_after_MB"] = round(rss_kb(args.pid) / 1000, 1)
    print(json.dumps(res, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
