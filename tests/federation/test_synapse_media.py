"""Remote media with Synapse over real TLS on loopback, both ways: a Synapse client downloads
and thumbnails media uploaded on Parley (Synapse fetches it from Parley's federation media
endpoints), and a Parley client downloads and thumbnails media uploaded on Synapse (Parley
fetches it from Synapse's), each cached by the fetching server."""

from __future__ import annotations

import io

import orjson
from PIL import Image

from tests.federation.conftest import Factory, FedServer
from tests.federation.synapse_peer import Synapse
from tests.federation.test_synapse_interop import _register
from tests.helpers import Client, User

V1 = "/_matrix/client/v1/media"




def png(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (200, 60, 10)).save(buf, "PNG")
    return buf.getvalue()


async def _upload(c: Client, user: User, data: bytes, ctype: str, name: str) -> tuple[str, str]:
    async with c.session.post(c.base + "/_matrix/media/v3/upload", data=data,
                              params={"filename": name},
                              headers={"Authorization": f"Bearer {user.access_token}",
                                       "Content-Type": ctype}) as resp:
        body = await resp.json()
        assert resp.status == 200, body
    server, _, media_id = body["content_uri"].removeprefix("mxc://").partition("/")
    return server, media_id


async def _get(c: Client, user: User, path: str, **params: str
               ) -> tuple[int, dict[str, str], bytes]:
    async with c.session.get(c.base + V1 + path, params=params,
                             headers={"Authorization": f"Bearer {user.access_token}"}) as resp:
        return resp.status, dict(resp.headers), await resp.read()


async def test_synapse_client_gets_parley_media(make_server: Factory,
                                                synapse: tuple[Synapse, Client]) -> None:
    syn, sc = synapse
    a: FedServer = await make_server()
    alice, sam = await a.client.register("alice"), await _register(sc, "sam")
    image = png(400, 300)
    origin, media_id = await _upload(a.client, alice, image, "image/png", "parley.png")
    assert origin == a.name
    status, headers, body = await _get(sc, sam, f"/download/{a.name}/{media_id}")
    assert status == 200, (body[:300], syn.log_tail())
    assert body == image and headers["Content-Type"] == "image/png"
    assert "parley.png" in headers.get("Content-Disposition", "")
    status, headers, body = await _get(sc, sam, f"/thumbnail/{a.name}/{media_id}",
                                       width="32", height="32", method="crop")
    assert status == 200, (body[:300], syn.log_tail())
    with Image.open(io.BytesIO(body)) as thumb:
        assert thumb.size[0] <= 96 and thumb.size[1] <= 96
    status, _, body = await _get(sc, sam, f"/download/{a.name}/nosuchmedia")
    assert status == 404 and orjson.loads(body)["errcode"] == "M_NOT_FOUND", body
    # Synapse cached it: it still serves it after Parley stops serving it
    assert await a.hs.media.service.set_quarantined(a.name, media_id)
    status, _, body = await _get(sc, sam, f"/download/{a.name}/{media_id}")
    assert (status, body) == (200, image)


async def test_parley_client_gets_synapseedia(make_server: Factory,
                                                synapse: tuple[Synapse, Client]) -> None:
    syn, sc = synapse
    a: FedServer = await make_server()
    alice, sam = await a.client.register("alice"), await _register(sc, "sam")
    image = png(500, 250)
    origin, media_id = await _upload(sc, sam, image, "image/png", "synapse.png")
    assert origin == syn.name
    status, headers, body = await _get(a.client, alice, f"/download/{syn.name}/{media_id}")
    assert status == 200, (body[:300], syn.log_tail())
    assert body == image and headers["Content-Type"] == "image/png"
    assert headers["Content-Disposition"] == 'inline; filename="synapse.png"'
    status, headers, body = await _get(a.client, alice, f"/thumbnail/{syn.name}/{media_id}",
                                       width="64", height="64", method="scale")
    assert status == 200, body[:300]
    with Image.open(io.BytesIO(body)) as thumb:
        assert thumb.size[0] < 500 and thumb.size[0] == 2 * thumb.size[1]
    row = await a.hs.db.pool.fetchrow(
        "SELECT size, upload_name FROM remote_media WHERE origin = $1 AND media_id = $2",
        syn.name, media_id)
    assert row is not None and (row["size"], row["upload_name"]) == (len(image), "synapse.png")
    status, _, body = await _get(a.client, alice, f"/download/{syn.name}/nosuchmedia")
    assert status == 404 and orjson.loads(body)["errcode"] == "M_NOT_FOUND", body
