"""Thumbnails with Pillow: which size to make, and making it. No I/O beyond reading the source.

The spec's sizes (32x32 and 96x96 crop; 320x240, 640x480 and 800x600 scale) are what a request
is rounded up to, so a few thumbnails per image serve every client; a request above the largest
gets its own size, rounded up to a multiple of `ROUND` and capped at `MAX_SIDE`. Thumbnails are
never upscaled: when the source already fits, the caller serves the original.

Images are opened lazily: only the header is read before the pixel count is checked against
`max_pixels`, so a decompression bomb (a tiny file declaring 50,000 x 50,000 pixels) is refused
without decoding it. JPEGs are decoded at a reduced scale (`draft`) when the thumbnail is much
smaller, which is most of the cost of a 4000x3000 photo. `make_thumbnail` is CPU-bound and runs
in a worker thread (service.py).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, ImageSequence

THUMBNAIL_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
FORMATS = {"JPEG": "image/jpeg", "MPO": "image/jpeg", "PNG": "image/png", "GIF": "image/gif",
           "WEBP": "image/webp"}
STANDARD_SIZES = ((32, 32, "crop"), (96, 96, "crop"), (320, 240, "scale"),
                  (640, 480, "scale"), (800, 600, "scale"))
ROUND = 160
MAX_SIDE = 2048
JPEG_QUALITY = 80
ORIENTATION = 0x0112


class ThumbnailError(Exception):
    """The source cannot be thumbnailed: `too_large` (pixels), else not a supported image."""

    def __init__(self, message: str, too_large: bool = False) -> None:
        super().__init__(message)
        self.too_large = too_large


@dataclass(frozen=True, slots=True)
class Thumbnail:
    data: bytes
    content_type: str
    width: int
    height: int


def choose_size(width: int, height: int, method: str) -> tuple[int, int]:
    """The size to make for a request: the smallest of the spec's sizes for `method` that
    covers it, else the request rounded up (bounded)."""
    fitting = [(w, h) for w, h, m in STANDARD_SIZES if m == method and w >= width and h >= height]
    if fitting:
        return min(fitting, key=lambda s: s[0] * s[1])

    def up(v: int) -> int:
        return min(MAX_SIDE, -(-v // ROUND) * ROUND)

    return up(width), up(height)


def _scaled(w0: int, h0: int, width: int, height: int) -> tuple[int, int]:
    """`scale`: the aspect kept, fitting within width x height (one side equal)."""
    if width * h0 < height * w0:
        return width, max(1, width * h0 // w0)
    return max(1, height * w0 // h0), height


def _plan(w0: int, h0: int, width: int, height: int, method: str
          ) -> tuple[tuple[int, int, int, int] | None, tuple[int, int]] | None:
    """(crop box in source pixels or None, output size), or None: serve the original."""
    if w0 <= width and h0 <= height:
        return None
    if method == "scale":
        return None, _scaled(w0, h0, width, height)
    # crop: cover the box, then cut the middle; where the source is smaller than the box in
    # one direction, keep the box's aspect without upscaling.
    s = max(width / w0, height / h0)
    if s >= 1:
        cw, ch = min(w0, round(h0 * width / height)), min(h0, round(w0 * height / width))
        out = (cw, ch)
    else:
        cw, ch = round(width / s), round(height / s)
        out = (width, height)
    cw, ch = min(cw, w0), min(ch, h0)
    left, top = (w0 - cw) // 2, (h0 - ch) // 2
    return (left, top, left + cw, top + ch), out


def _resize(frame: Image.Image, box: tuple[int, int, int, int] | None,
            size: tuple[int, int]) -> Image.Image:
    if box is not None:
        frame = frame.crop(box)
    if frame.size != size:
        frame = frame.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    return frame


def open_image(source: Path | bytes, max_pixels: int) -> Image.Image:
    """Open (header only) and check the pixel count before anything is decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source,
                            formats=["JPEG", "PNG", "GIF", "WEBP"])
    except Image.DecompressionBombError as e:
        raise ThumbnailError("image is too large to thumbnail", too_large=True) from e
    except (OSError, ValueError, SyntaxError) as e:
        raise ThumbnailError("not an image this server can thumbnail") from e
    w0, h0 = im.size
    if w0 <= 0 or h0 <= 0 or w0 * h0 > max_pixels:
        im.close()
        raise ThumbnailError("image is too large to thumbnail", too_large=True)
    return im


def make_thumbnail(source: Path | bytes, width: int, height: int, method: str,
                   animated: bool, max_pixels: int, max_frames: int) -> Thumbnail | None:
    """The thumbnail of `source` at (width, height) by `method`; None when the source fits
    already (serve the original). Raises ThumbnailError."""
    im = open_image(source, max_pixels)
    try:
        return _make(im, width, height, method, animated, max_pixels, max_frames)
    except ThumbnailError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError) as e:  # truncated or corrupt data
        raise ThumbnailError("not an image this server can thumbnail") from e
    finally:
        im.close()


def _make(im: Image.Image, width: int, height: int, method: str, animated: bool,
          max_pixels: int, max_frames: int) -> Thumbnail | None:
    fmt = im.format or ""
    w0, h0 = im.size
    # is_animated looks for a second frame only; frames are counted while they are made
    moving = animated and fmt in ("GIF", "WEBP") and bool(getattr(im, "is_animated", False))
    frame_budget = min(max_frames, max(1, 4 * max_pixels // (w0 * h0)))
    rotated = fmt in ("JPEG", "MPO") and im.getexif().get(ORIENTATION) in (5, 6, 7, 8)
    ow, oh = (h0, w0) if rotated else (w0, h0)
    plan = _plan(ow, oh, width, height, method)
    if plan is None:
        return None
    if fmt in ("JPEG", "MPO"):
        box, size = plan
        need = size if box is None else (
            max(size[0], -(-size[0] * ow // (box[2] - box[0]))),
            max(size[1], -(-size[1] * oh // (box[3] - box[1]))))
        im.draft("RGB", (need[1], need[0]) if rotated else need)
        base = ImageOps.exif_transpose(im) or im
        # the plan's coordinates are in full-size pixels: plan again at the decoded size
        replan = _plan(base.width, base.height, width, height, method)
        box, size = replan if replan is not None else (None, base.size)
        out = _resize(base.convert("RGB"), box, size)
        buf = io.BytesIO()
        out.save(buf, "JPEG", quality=JPEG_QUALITY, optimize=True)
        return Thumbnail(buf.getvalue(), "image/jpeg", *out.size)
    box, size = plan
    buf = io.BytesIO()
    if moving:
        durations: list[int] = []
        shots: list[Image.Image] = []
        for frame in ImageSequence.Iterator(im):
            if len(shots) == frame_budget:  # too long an animation: the still thumbnail
                shots = []
                break
            durations.append(int(frame.info.get("duration", 100)))
            shots.append(_resize(frame.convert("RGBA"), box, size))
        if shots:
            save_fmt = "GIF" if fmt == "GIF" else "WEBP"
            shots[0].save(buf, save_fmt, save_all=True, append_images=shots[1:],
                          duration=durations, loop=int(im.info.get("loop", 0)), disposal=2)
            return Thumbnail(buf.getvalue(), FORMATS[fmt], *size)
    im.seek(0)
    mode = "RGBA" if (im.mode in ("RGBA", "LA", "P", "PA") or "transparency" in im.info) else (
        "RGB")
    out = _resize(im.convert(mode), box, size)
    out.save(buf, "PNG", optimize=False, compress_level=6)
    return Thumbnail(buf.getvalue(), "image/png", *out.size)

