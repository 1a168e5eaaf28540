"""Receiving bytes into the media store: streamed, bounded, and never left half written.

`receive` streams an upload (or a remote server's answer, or a generated thumbnail) into a
temporary file, refusing it as soon as it passes the size limit, so a large upload never sits in
memory and an oversized one does not fill the disk. `publish` then renames it to its content path
and writes the row that names it, in one transaction holding the content's lock, so a purge of
the same content cannot delete the file between the rename and the row.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable

from homeserver.errors import Codes, MatrixError
from homeserver.media.storage import MediaStorage, Upload
from homeserver.media.store import MediaStore
from homeserver.storage.database import Conn, Database


def too_large(limit: int) -> MatrixError:
    return MatrixError(413, Codes.TOO_LARGE, f"Media is larger than {limit} bytes")


async def receive(storage: MediaStorage, chunks: AsyncIterable[bytes], max_bytes: int,
                  error: Callable[[int], Exception] = too_large) -> tuple[Upload, str]:
    """Stream `chunks` into a new upload; (the finished upload, its sha256). On any failure
    (too large, client gone, cancelled) the temporary file is removed and the error raised."""
    upload = storage.new_upload()
    try:
        async for chunk in chunks:
            if upload.size + len(chunk) > max_bytes:
                raise error(max_bytes)
            await upload.write(chunk)
        sha256 = await upload.finish()
    except BaseException:
        await upload.abort()
        raise
    return upload, sha256


async def receive_bytes(storage: MediaStorage, data: bytes) -> tuple[Upload, str]:
    async def one() -> AsyncIterable[bytes]:
        yield data

    return await receive(storage, one(), len(data))


async def publish(db: Database, store: MediaStore, storage: MediaStorage, upload: Upload,
                  sha256: str, write_row: Callable[[Conn], Awaitable[bool]]) -> bool:
    """Rename the upload into place and write its row, atomically with respect to purges.

    `write_row` returns False when the row could not be written (e.g. the media id is no
    longer pending); the content is then removed again unless something else names it."""
    written: bool | None = None
    try:
        async with db.transaction() as conn:
            await store.lock_content(conn, sha256)
            await storage.commit(upload, sha256)
            try:
                written = await write_row(conn)
            except MatrixError:  # refused (e.g. a quota race), not a failed statement
                written = False
                raise
            finally:  # (after a failed statement the sweep removes the file instead)
                if written is False and not await store.is_referenced(conn, sha256):
                    await storage.delete(sha256)
            return written
    except BaseException:
        await upload.abort()  # not yet renamed (or renamed: then this finds nothing)
        raise
