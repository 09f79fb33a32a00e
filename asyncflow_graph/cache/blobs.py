"""The on-disk format of one cache entry, shared by the store and by Dask workers
(which write blob files and never open the index).

A blob file is ``MAGIC``, the header's length (4 bytes, little-endian), the header
(JSON: the entry's index row and who wrote it), then the pickled value.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CacheCorruptError
from .hashing import checksum

__all__ = [
    "MAGIC",
    "Entry",
    "blob_path",
    "dumps",
    "entry_of",
    "read_header",
    "unpickle",
    "write_blob",
]

MAGIC = b"AFGCACHE1\n"
LEN = 4


@dataclass(slots=True)
class Entry:
    """One cached result. ``value`` is set once loaded (small entries: at lookup)."""

    key: str
    task: str
    size: int
    checksum: str
    token: str  # the value's content token (hex): what dependents' keys use
    duration: float  # seconds the task took when it ran
    created: float
    last_used: float = 0.0
    hits: int = 0
    value: Any = None
    loaded: bool = False

    def header(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "task": self.task,
            "size": self.size,
            "checksum": self.checksum,
            "token": self.token,
            "duration": self.duration,
            "created": self.created,
            "writer": f"{os.getpid()}@{socket.gethostname()}",
        }


def write_blob(root: Path | str, entry: Entry, payload: bytes) -> str:
    """Write ``entry``'s blob atomically (temp file + rename); no index row. Safe
    from any process that can reach ``root`` (a Dask worker on a shared file system)."""
    root = os.fspath(root)
    final = blob_path(root, entry.key)
    header = json.dumps(entry.header()).encode()
    tmp = f"{root}/tmp/{entry.key}.{uuid.uuid4().hex}.tmp"
    try:
        f = open(tmp, "wb")  # noqa: SIM115 - closed below, before the rename
    except FileNotFoundError:  # the first write (or `cache clear` removed tmp/)
        os.makedirs(os.path.dirname(tmp), mode=0o700, exist_ok=True)
        f = open(tmp, "wb")  # noqa: SIM115
    try:
        with f:
            f.write(MAGIC + len(header).to_bytes(LEN, "little") + header)
            f.write(payload)
        try:
            os.replace(tmp, final)
        except FileNotFoundError:  # the first entry under this prefix
            os.makedirs(os.path.dirname(final), mode=0o700, exist_ok=True)
            os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return final


def blob_path(root: str, key: str) -> str:
    return f"{root}/entries/{key[:2]}/{key}"


def read_header(f: Any) -> dict[str, Any]:
    start = f.read(len(MAGIC) + LEN)
    if len(start) < len(MAGIC) + LEN or not start.startswith(MAGIC):
        raise ValueError("not a cache entry (bad magic)")
    n = int.from_bytes(start[len(MAGIC) :], "little")
    raw = f.read(n)
    if len(raw) != n:
        raise ValueError("truncated header")
    header: dict[str, Any] = json.loads(raw)
    return header


def entry_of(header: dict[str, Any]) -> Entry:
    return Entry(
        key=str(header["key"]),
        task=str(header["task"]),
        size=int(header["size"]),
        checksum=str(header["checksum"]),
        token=str(header["token"]),
        duration=float(header["duration"]),
        created=float(header["created"]),
    )


def unpickle(entry: Entry, payload: memoryview) -> Any:
    if len(payload) != entry.size or checksum(payload) != entry.checksum:
        raise CacheCorruptError("its checksum does not match (torn or altered)")
    try:
        return pickle.loads(payload)
    except Exception as exc:
        raise CacheCorruptError(f"it cannot be unpickled ({type(exc).__name__}: {exc})") from exc


def dumps(value: Any) -> bytes:
    """The pickle of a result (cloudpickle for what plain pickle refuses)."""
    try:
        return pickle.dumps(value, protocol=5)
    except Exception:
        import cloudpickle

        data: bytes = cloudpickle.dumps(value, protocol=5)
        return data
