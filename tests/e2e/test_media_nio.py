"""Media through matrix-nio: an avatar and a file uploaded, sent in a room, and fetched by
another user through authenticated media, with a thumbnail."""

from __future__ import annotations

import io
import os

from nio import (
    DownloadResponse,
    JoinResponse,
    ProfileGetAvatarResponse,
    ProfileSetAvatarResponse,
    ResizingMethod,
    RoomCreateResponse,
    RoomSendResponse,
    SyncResponse,
    ThumbnailResponse,
    UploadResponse,
)
from PIL import Image

from tests.e2e.conftest import NioFactory


def photo(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (30, 160, 90)).save(buf, "JPEG")
    return buf.getvalue()


async def test_avatar_and_file_through_nio(nio_user: NioFactory) -> None:
    alice = await nio_user("alice")
    bob = await nio_user("bob")

    avatar = photo(640, 640)
    up, _ = await alice.upload(io.BytesIO(avatar), content_type="image/jpeg",
                               filename="me.jpg", filesize=len(avatar))
    assert isinstance(up, UploadResponse), up
    assert up.content_uri.startswith("mxc://parley.test/")
    set_resp = await alice.set_avatar(up.content_uri)
    assert isinstance(set_resp, ProfileSetAvatarResponse), set_resp
    got = await bob.get_avatar(alice.user_id)
    assert isinstance(got, ProfileGetAvatarResponse) and got.avatar_url == up.content_uri

    # bob fetches the avatar as a client does: a small cropped thumbnail
    server_name, media_id = up.content_uri.removeprefix("mxc://").split("/")
    thumb = await bob.thumbnail(server_name, media_id, 96, 96, ResizingMethod.crop)
    assert isinstance(thumb, ThumbnailResponse), thumb
    assert thumb.content_type == "image/jpeg"
    assert Image.open(io.BytesIO(thumb.body)).size == (96, 96)

    # a file sent in a room, downloaded by the other member
    data = os.urandom(2 * 1024 * 1024 + 17)
    up_file, _ = await alice.upload(io.BytesIO(data), content_type="application/pdf",
                                    filename="report.pdf", filesize=len(data))
    assert isinstance(up_file, UploadResponse), up_file
    room = await alice.room_create(invite=[bob.user_id])
    assert isinstance(room, RoomCreateResponse), room
    assert isinstance(await bob.join(room.room_id), JoinResponse)
    sent = await alice.room_send(room.room_id, "m.room.message", {
        "msgtype": "m.file", "body": "report.pdf", "url": up_file.content_uri,
        "info": {"mimetype": "application/pdf", "size": len(data)}})
    assert isinstance(sent, RoomSendResponse), sent

    sync = await bob.sync(timeout=0)
    assert isinstance(sync, SyncResponse), sync
    urls = [e.source["content"].get("url") for e in sync.rooms.join[room.room_id].timeline.events
            if e.source["type"] == "m.room.message"]
    assert urls == [up_file.content_uri]
    down = await bob.download(up_file.content_uri)
    assert isinstance(down, DownloadResponse), down
    assert down.body == data
    assert down.content_type == "application/pdf"
    assert down.filename == "report.pdf"
