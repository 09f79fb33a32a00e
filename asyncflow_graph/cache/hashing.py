"""The one content hash of the cache: xxHash's XXH3-128 when ``xxhash`` is installed
(about 10 GB/s on one core), else BLAKE2b-128 from the standard library (about
0.4 GB/s). The algorithm's name is part of every key and checksum, so entries made
with one are never read as if made with the other: installing ``xxhash`` costs one
round of misses, never a wrong value."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["HASH_NAME", "Hasher", "checksum", "new_hasher"]


class Hasher(Protocol):
    def update(self, data: Any, /) -> None: ...
    def hexdigest(self) -> str: ...
    def digest(self) -> bytes: ...


def _blake2b() -> Hasher:
    return hashlib.blake2b(digest_size=16)


def _pick() -> tuple[str, Callable[[], Hasher]]:
    try:
        import xxhash
    except ImportError:
        return "blake2b-128", _blake2b
    return "xxh3-128", xxhash.xxh3_128


HASH_NAME, new_hasher = _pick()


def checksum(data: bytes | memoryview) -> str:
    """``"<algorithm>:<hex digest>"`` of ``data`` (stored with each entry)."""
    h = new_hasher()
    h.update(data)
    return f"{HASH_NAME}:{h.hexdigest()}"
