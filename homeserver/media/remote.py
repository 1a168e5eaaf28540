"""Other servers' media for MediaService: the `RemoteMediaSource` it caches from.

The transport (federation/media_fetch.py) fetches; this decides what a client is told when that
fails, as Synapse does: the origin's 404 is 404 M_NOT_FOUND, an answer saying the content is
too large is 502 M_TOO_LARGE, content not yet uploaded there is 504 M_NOT_YET_UPLOADED, and
anything else (unreachable, refused by the outbound policy, an error status, a malformed or
cut-off answer) is 502 — never a 500. Errors while the bytes arrive are translated too, since
the cache consumes them after `fetch` has returned.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Protocol

from homeserver.errors import Codes, MatrixError, not_found
from homeserver.federation.transport import RemoteError, Unreachable

log = logging.getLogger(__name__)

Fetched = tuple[str | None, str | None, AsyncIterator[bytes]]


class MediaTransport(Protocol):
    async def download(self, origin: str, media_id: str, max_bytes: int) -> Fetched:
        """Raises RemoteError or Unreachable, also from the byte iterator."""
        ...


class FederatedMedia:
    def __init__(self, transport: MediaTransport) -> None:
        self._transport = transport

    async def fetch(self, origin: str, media_id: str, max_bytes: int) -> Fetched:
        try:
            ctype, name, body = await self._transport.download(origin, media_id, max_bytes)
        except (RemoteError, Unreachable) as e:
            raise _client_error(origin, media_id, e) from None
        except MatrixError:
            raise
        except Exception as e:  # noqa: BLE001 (a transport bug is still not the client's 500)
            log.warning("fetching mxc://%s/%s failed", origin, media_id, exc_info=True)
            raise _client_error(origin, media_id, e) from None
        return ctype, name, _translated(origin, media_id, body)


async def _translated(origin: str, media_id: str, body: AsyncIterator[bytes]
                      ) -> AsyncIterator[bytes]:
    try:
        async for chunk in body:
            yield chunk
    except (RemoteError, Unreachable) as e:
        raise _client_error(origin, media_id, e) from None
    except MatrixError:
        raise
    except Exception as e:  # noqa: BLE001 (as in fetch)
        log.warning("receiving mxc://%s/%s failed", origin, media_id, exc_info=True)
        raise _client_error(origin, media_id, e) from None
    finally:
        aclose = getattr(body, "aclose", None)
        if aclose is not None:
            await aclose()


def _client_error(origin: str, media_id: str, e: Exception) -> MatrixError:
    log.info("fetching mxc://%s/%s failed: %s", origin, media_id, e)
    if isinstance(e, RemoteError):
        if e.status == 404:
            return not_found("Remote media not found")
        if e.errcode == Codes.TOO_LARGE:
            return MatrixError(502, Codes.TOO_LARGE, "Remote media is too large")
        if e.status == 504 and e.errcode == Codes.NOT_YET_UPLOADED:
            return MatrixError(504, Codes.NOT_YET_UPLOADED, "Content has not yet been uploaded")
    return MatrixError(502, Codes.UNKNOWN, "Failed to fetch remote media")
