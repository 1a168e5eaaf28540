"""Where media bytes live: a small interface and the local-disk backend.

Content is addressed by its SHA-256, so identical uploads share one file and a name can never
point at half a file: bytes are streamed into a temporary file (hashed as they are written),
fsynced, and only then renamed to their content path. A crash mid-upload leaves at most a file
under `tmp/`, which the next start removes. The database row that names the content is written
after the rename (see service.py), so there is never a row without its file; a crash between
the rename and the row leaves a complete file nothing names, which the retention task sweeps.

Another backend (an S3-compatible one) implements `MediaStorage`; the HTTP layer only sees
`local_path` (to send a file with sendfile when there is one) or `chunks`.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Protocol

WRITE_BUFFER = 1 << 20  # bytes gathered before one write in the worker thread
READ_CHUNK = 1 << 18


class Upload(Protocol):
    """Bytes being received; nothing is visible under a content path until `commit`."""

    size: int

    async def write(self, data: bytes) -> None: ...

    async def finish(self) -> str:
        """Flush and fsync; the SHA-256 (hex) of everything written."""
        ...

    async def abort(self) -> None: ...


class MediaStorage(Protocol):
    async def start(self) -> None:
        """Prepare the store (folders) and drop what a crash left half written."""
        ...

    def new_upload(self) -> Upload: ...

    async def commit(self, upload: Upload, sha256: str) -> None:
        """Make the finished upload the content of `sha256` (atomically)."""
        ...

    def local_path(self, sha256: str) -> Path | None:
        """A file holding the content, if this backend keeps one on local disk."""
        ...

    def chunks(self, sha256: str) -> AsyncIterator[bytes]: ...

    async def exists(self, sha256: str) -> bool: ...

    async def delete(self, sha256: str) -> None: ...

    async def list_older_than(self, ts_ms: int) -> list[str]:
        """Hashes of content written before `ts_ms` (for the orphan sweep)."""
        ...


def _check(sha256: str) -> str:
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise ValueError("not a sha256 hex digest")
    return sha256


class _DiskUpload:
    """Writes go to a worker thread, one at a time, while the next buffer is being received
    (so disk and network overlap); hashing happens in the same thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = 0
        self._hash = hashlib.sha256()
        self._buf = bytearray()
        self._file = open(path, "xb")  # noqa: SIM115 (closed by finish/abort)
        self._writing: asyncio.Future[None] | None = None

    def _write(self, data: bytes) -> None:
        self._hash.update(data)  # hashlib releases the GIL for large buffers
        self._file.write(data)

    async def _drain(self) -> None:
        if self._writing is not None:
            writing, self._writing = self._writing, None
            await writing

    async def write(self, data: bytes) -> None:
        self.size += len(data)
        self._buf += data
        if len(self._buf) >= WRITE_BUFFER:
            await self._drain()
            buf, self._buf = bytes(self._buf), bytearray()
            self._writing = asyncio.ensure_future(asyncio.to_thread(self._write, buf))

    async def finish(self) -> str:
        await self._drain()
        buf, self._buf = bytes(self._buf), bytearray()

        def done() -> str:
            self._write(buf)
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            return self._hash.hexdigest()

        return await asyncio.to_thread(done)

    async def abort(self) -> None:
        try:
            await self._drain()
        except Exception:  # noqa: BLE001 (the upload is being dropped anyway)
            pass

        def drop() -> None:
            self._file.close()
            self.path.unlink(missing_ok=True)

        await asyncio.to_thread(drop)


class LocalDiskStorage:
    """`root/content/ab/cd/abcd...` for content, `root/tmp/<instance>/` for this process's
    uploads in progress (several processes may share the folder: each clears only its own)."""

    def __init__(self, root: Path, instance: str = "main") -> None:
        self.root = root
        self._content = root / "content"
        self._tmp = root / "tmp" / instance

    async def start(self) -> None:
        def prepare() -> None:
            shutil.rmtree(self._tmp, ignore_errors=True)  # half-written uploads of a crash
            self._tmp.mkdir(parents=True, exist_ok=True)
            self._content.mkdir(parents=True, exist_ok=True)

        await asyncio.to_thread(prepare)

    def _path(self, sha256: str) -> Path:
        _check(sha256)
        return self._content / sha256[:2] / sha256[2:4] / sha256

    def new_upload(self) -> Upload:
        return _DiskUpload(self._tmp / secrets.token_hex(16))

    async def commit(self, upload: Upload, sha256: str) -> None:
        assert isinstance(upload, _DiskUpload)
        target = self._path(sha256)

        def move() -> None:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(upload.path, target)  # atomic; same content if it was there already
            fd = os.open(target.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

        await asyncio.to_thread(move)

    def local_path(self, sha256: str) -> Path | None:
        return self._path(sha256)

    async def chunks(self, sha256: str) -> AsyncIterator[bytes]:
        f = await asyncio.to_thread(open, self._path(sha256), "rb")
        try:
            while chunk := await asyncio.to_thread(f.read, READ_CHUNK):
                yield chunk
        finally:
            f.close()

    async def exists(self, sha256: str) -> bool:
        return await asyncio.to_thread(self._path(sha256).is_file)

    async def delete(self, sha256: str) -> None:
        await asyncio.to_thread(self._path(sha256).unlink, True)

    async def list_older_than(self, ts_ms: int) -> list[str]:
        def walk() -> Iterator[str]:
            for dirpath, _dirs, names in os.walk(self._content):
                for name in names:
                    try:
                        mtime = os.stat(os.path.join(dirpath, name)).st_mtime
                    except FileNotFoundError:
                        continue
                    if mtime * 1000 < ts_ms and len(name) == 64:
                        yield name

        return await asyncio.to_thread(lambda: list(walk()))


def now_ms() -> int:
    return int(time.time() * 1000)
