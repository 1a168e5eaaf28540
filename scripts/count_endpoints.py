"""How many of the spec's client-server endpoints (method and path) Parley routes.

Usage: python scripts/count_endpoints.py PATH/TO/matrix-spec [--missing]

Reads data/api/client-server/*.yaml, fills each path's parameters with sample values and asks
the routers of client_api/ and admin_api/ (no server, no database) whether they match.
"""

from __future__ import annotations

import asyncio
import glob
import importlib
import pkgutil
import re
import sys

import yaml
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

import admin_api
import client_api

SAMPLES = {"{roomId}": "!r:x", "{userId}": "@u:x", "{eventId}": "$e",
           "{roomIdOrAlias}": "!r:x"}


async def main(spec: str, show_missing: bool) -> None:
    app = web.Application()
    for pkg in (client_api, admin_api):
        for m in pkgutil.iter_modules(pkg.__path__):
            mod = importlib.import_module(f"{pkg.__name__}.{m.name}")
            table = getattr(mod, "routes", None)
            if isinstance(table, web.RouteTableDef):
                app.router.add_routes(table)
    total, missing = 0, []
    for f in sorted(glob.glob(f"{spec}/data/api/client-server/*.yaml")):
        with open(f) as fh:
            d = yaml.safe_load(fh)
        if not isinstance(d, dict) or "paths" not in d:
            continue
        base = d["servers"][0]["variables"]["basePath"]["default"]
        for path, ops in d["paths"].items():
            for method in ops:
                if method not in ("get", "put", "post", "delete"):
                    continue
                total += 1
                url = base + re.sub(r"\{[^}]+\}",
                                    lambda mm: SAMPLES.get(mm.group(0), "x.y"), path.strip())
                info = await app.router.resolve(make_mocked_request(method.upper(), url))
                if info.http_exception is not None:
                    missing.append(f"{method.upper()} {base}{path}")
    print(f"{total - len(missing)} of {total} routed")
    if show_missing:
        print("\n".join(missing))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], "--missing" in sys.argv[2:]))
