"""The headers every media download carries, so served bytes can never run as a page.

The spec ("Serving inline content"): `Content-Disposition: inline` only for a short list of
types that browsers will not execute, `attachment` for everything else (HTML, SVG, XML, PDF,
JavaScript...). The uploader's Content-Type is kept (the spec allows no more than small
corrections), and on every download `Content-Security-Policy: sandbox ...` and
`X-Content-Type-Options: nosniff` stop a browser that opens the URL directly from running
script in the server's origin or guessing another type. Pure functions, no HTTP library.
"""

from __future__ import annotations

from urllib.parse import quote

INLINE_TYPES = frozenset({
    "text/css", "text/plain", "text/csv", "application/json", "application/ld+json",
    "image/jpeg", "image/gif", "image/png", "image/apng", "image/webp", "image/avif",
    "video/mp4", "video/webm", "video/ogg", "video/quicktime",
    "audio/mp4", "audio/webm", "audio/aac", "audio/mpeg", "audio/ogg", "audio/wave",
    "audio/wav", "audio/x-wav", "audio/x-pn-wav", "audio/flac", "audio/x-flac",
})

CSP = ("sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; "
       "style-src 'unsafe-inline'; media-src 'self'; object-src 'self';")

SAFE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Resource-Policy": "cross-origin",
    # authenticated media is per user: shared caches must not keep it
    "Cache-Control": "private, max-age=86400, immutable",
    "Referrer-Policy": "no-referrer",
}

MAX_CONTENT_TYPE = 255
MAX_FILENAME = 255


def base_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def clean_content_type(value: str | None) -> str | None:
    """An uploader's Content-Type as stored: printable ASCII, bounded, or None."""
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > MAX_CONTENT_TYPE or "/" not in value:
        return None
    if any(not (32 <= ord(c) < 127) for c in value):
        return None
    return value


def clean_filename(value: str | None) -> str | None:
    """A file name as stored: no path separators or control characters, bounded."""
    if not value:
        return None
    value = value.replace("/", "_").replace("\\", "_")
    value = "".join(c for c in value if c.isprintable())
    value = value.strip()
    if not value or len(value.encode()) > MAX_FILENAME * 4:
        return None
    return value[:MAX_FILENAME]


def served_type(content_type: str | None) -> str:
    if not content_type:
        return "application/octet-stream"
    base = base_type(content_type)
    if base.startswith("text/") and "charset" not in content_type.lower():
        return f"{content_type}; charset=utf-8"
    return content_type


def disposition(content_type: str | None, filename: str | None) -> str:
    kind = "inline" if content_type and base_type(content_type) in INLINE_TYPES else (
        "attachment")
    if not filename:
        return kind
    if filename.isascii() and all(c.isalnum() or c in " ._-()[]+,=" for c in filename):
        return f'{kind}; filename="{filename}"'
    return f"{kind}; filename*=utf-8''{quote(filename, safe='')}"


def download_headers(content_type: str | None, filename: str | None) -> dict[str, str]:
    """Content-Type, Content-Disposition and the safety headers of one download."""
    headers = dict(SAFE_HEADERS)
    headers["Content-Type"] = served_type(content_type)
    headers["Content-Disposition"] = disposition(content_type, filename)
    return headers
