"""Pure media rules, table by table: download headers, thumbnail sizes and plans, the media
config section."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from homeserver.config import ConfigError, load_config
from homeserver.media.headers import clean_content_type, clean_filename, disposition
from homeserver.media.thumbnails import ThumbnailError, choose_size, make_thumbnail


@pytest.mark.parametrize(("ctype", "name", "expected"), [
    ("image/png", None, "inline"),
    ("image/png; charset=x", "a.png", 'inline; filename="a.png"'),
    ("text/html", "x.html", 'attachment; filename="x.html"'),
    ("image/svg+xml", None, "attachment"),
    (None, None, "attachment"),
    ("application/octet-stream", 'a"b.txt', "attachment; filename*=utf-8''a%22b.txt"),
    ("text/plain", "ä.txt", "inline; filename*=utf-8''%C3%A4.txt"),
    ("text/plain", "a;\r\nSet-Cookie: x", "inline; filename*=utf-8''a%3B%0D%0ASet-Cookie%3A%20x"),
])
def test_disposition(ctype: str | None, name: str | None, expected: str) -> None:
    assert disposition(ctype, name) == expected


@pytest.mark.parametrize(("raw", "expected"), [
    ("image/png", "image/png"), ("  text/plain  ", "text/plain"), ("", None), ("png", None),
    ("text/html\r\nX: y", None), ("a/" + "b" * 300, None), (None, None),
])
def test_clean_content_type(raw: str | None, expected: str | None) -> None:
    assert clean_content_type(raw) == expected


@pytest.mark.parametrize(("raw", "expected"), [
    ("a.txt", "a.txt"), ("../../etc/passwd", ".._.._etc_passwd"), ("a\x00b\nc", "abc"),
    ("", None), ("   ", None), (None, None), ("x" * 300, "x" * 255),
])
def test_clean_filename(raw: str | None, expected: str | None) -> None:
    assert clean_filename(raw) == expected


@pytest.mark.parametrize(("req", "expected"), [
    ((1, 1, "crop"), (32, 32)), ((32, 32, "crop"), (32, 32)), ((33, 20, "crop"), (96, 96)),
    ((100, 100, "crop"), (160, 160)), ((10, 10, "scale"), (320, 240)),
    ((321, 10, "scale"), (640, 480)), ((800, 600, "scale"), (800, 600)),
    ((801, 600, "scale"), (960, 640)), ((9000, 9000, "scale"), (2048, 2048)),
])
def test_choose_size(req: tuple[int, int, str], expected: tuple[int, int]) -> None:
    assert choose_size(*req) == expected


def _jpeg(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (9, 9, 9)).save(buf, "JPEG")
    return buf.getvalue()


@pytest.mark.parametrize(("src", "req", "out"), [
    ((4000, 3000), (800, 600, "scale"), (800, 600)),
    ((4000, 3000), (320, 320, "scale"), (320, 240)),  # aspect kept, within the box
    ((1000, 4000), (320, 240, "scale"), (60, 240)),
    ((4000, 3000), (96, 96, "crop"), (96, 96)),
    ((100, 40), (96, 96, "crop"), (40, 40)),  # smaller in one direction: cropped, not upscaled
    ((50, 40), (96, 96, "crop"), None),  # smaller: the original is served
])
def test_thumbnail_sizes(src: tuple[int, int], req: tuple[int, int, str],
                         out: tuple[int, int] | None) -> None:
    thumb = make_thumbnail(_jpeg(*src), *req, animated=False, max_pixels=10**8,
                           max_frames=10)
    if out is None:
        assert thumb is None
    else:
        assert thumb is not None and (thumb.width, thumb.height) == out
        assert Image.open(io.BytesIO(thumb.data)).size == out


def test_exif_rotation_is_applied() -> None:
    im = Image.new("RGB", (400, 200), (9, 9, 9))
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 degrees: shown as 200 x 400
    buf = io.BytesIO()
    im.save(buf, "JPEG", exif=exif)
    thumb = make_thumbnail(buf.getvalue(), 96, 96, "scale", False, 10**8, 10)
    assert thumb is not None and (thumb.width, thumb.height) == (48, 96)


def test_pixel_limit_refuses_before_decoding() -> None:
    with pytest.raises(ThumbnailError) as e:
        make_thumbnail(_jpeg(1000, 1000), 32, 32, "crop", False, max_pixels=999_999,
                       max_frames=10)
    assert e.value.too_large
    with pytest.raises(ThumbnailError) as e:
        make_thumbnail(b"GIF89a not really", 32, 32, "crop", False, 10**8, 10)
    assert not e.value.too_large


def test_media_config(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("media:\n  max_upload_bytes: 1000\n  store_path: files\n"
                 "  url_preview_enabled: true\n  url_preview_allow: [127.0.0.1]\n")
    cfg = load_config(f, {})
    assert cfg.media.max_upload_bytes == 1000 and cfg.media.url_preview_enabled
    assert cfg.media_path == tmp_path / "files"
    assert cfg.media.url_preview_allow == ("127.0.0.1",)
    for bad in ("media: {max_upload_bytes: 0}", "media: {nosuch: 1}",
                "media: {url_preview_deny: [not-a-range]}", "media: [1]"):
        f.write_text(bad)
        with pytest.raises(ConfigError):
            load_config(f, {})


def _gif(frames: int) -> bytes:
    buf = io.BytesIO()
    shots = [Image.new("RGB", (40, 30), (i * 20 % 256, 0, 0)) for i in range(frames)]
    shots[0].save(buf, "GIF", save_all=True, append_images=shots[1:], duration=50, loop=0)
    return buf.getvalue()


@pytest.mark.parametrize(("frames", "max_frames", "animated_out"), [
    (5, 10, True), (10, 10, True), (11, 10, False),
])
def test_animation_frame_limit(frames: int, max_frames: int, animated_out: bool) -> None:
    thumb = make_thumbnail(_gif(frames), 32, 32, "crop", True, 10**8, max_frames)
    assert thumb is not None
    out = Image.open(io.BytesIO(thumb.data))
    assert getattr(out, "n_frames", 1) == (frames if animated_out else 1)
    assert thumb.content_type == ("image/gif" if animated_out else "image/png")
