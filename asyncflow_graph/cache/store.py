"""The embedded store: a SQLite index, and a blob file per entry too large for it.

Layout of a cache directory::

    index.sqlite          key -> task name, size, checksum, value token, duration,
                          times; and the pickled value itself when it is small
    entries/ab/abcd...    one file per larger entry: a header (JSON), the pickled value
    tmp/                  files being written (same file system: the rename is atomic)

* Values up to :data:`INLINE_MAX` bytes live in their index row: one query finds
  and reads a whole batch of hits (opening a file per entry costs ~20 µs; a row of a
  batched query ~4 µs). Larger values get a file, so the index stays small and a
  value is read only when something needs it.
* A blob is written to ``tmp/`` and renamed into place, so a reader sees a whole
  entry or none, and a process killed mid-write leaves only a stray temp file.
* A blob file is self-describing (its header repeats the index row): a blob with no
  row (written by a Dask worker, which never opens SQLite, or by a process killed
  between rename and commit) is found by its path and indexed on first use.
* Every payload's checksum is kept with it. Inline and small file entries are
  verified and unpickled when looked up, large ones when first loaded. An entry that
  fails (torn, truncated, altered, unpicklable, wrong key) is removed, warned about
  once, and is a miss; an index SQLite cannot read is set aside and rebuilt.
* SQLite runs in WAL mode with a busy timeout: several processes on one machine
  read and write at once. Writes of one key race harmlessly (last one wins, each
  whole).

Entries are pickles: loading one runs code. The directory must be trusted like the
code itself, so a directory other users may write to is refused.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import CacheCorruptError, ConfigurationError
from .blobs import (
    LEN,
    MAGIC,
    Entry,
    blob_path,
    dumps,
    entry_of,
    read_header,
    unpickle,
    write_blob,
)

__all__ = [
    "INLINE_MAX",
    "SMALL_ENTRY",
    "Entry",
    "Store",
    "check_permissions",
    "dumps",
    "write_blob",
]

log = logging.getLogger("asyncflow_graph.cache")

#: entries up to this size are read, verified and unpickled when looked up
SMALL_ENTRY = 1 << 16
#: values up to this size are kept in the index row, larger ones in a file
INLINE_MAX = 1 << 14

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY, task TEXT NOT NULL, size INTEGER NOT NULL,
    checksum TEXT NOT NULL, token TEXT NOT NULL, duration REAL NOT NULL,
    created REAL NOT NULL, last_used REAL NOT NULL, hits INTEGER NOT NULL DEFAULT 0,
    inline BLOB
)
"""
_COLUMNS = "key, task, size, checksum, token, duration, created, last_used, hits"


class Store:
    """A cache directory (created, mode 0700, if missing)."""

    def __init__(self, path: str | os.PathLike[str], *, trust_group: bool = False) -> None:
        text = os.fspath(path)
        if "://" in text:
            raise ConfigurationError(
                f"cache directory {text!r} looks like a URL; caches are read from a local "
                f"or shared file system path only (entries are pickles: never load them "
                f"from the network)"
            )
        self.root = Path(text).expanduser().absolute()
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._root = str(self.root)
        check_permissions(self.root, trust_group)
        self._local = threading.local()
        self._warned: set[str] = set()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        try:
            with self._transaction() as db:
                db.execute(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            self._set_index_aside(exc)

    def _set_index_aside(self, exc: Exception) -> None:
        """An index SQLite cannot read: keep it for inspection, start a new one (the
        entries in files are found again; inline ones are lost)."""
        self.close()
        index = self.root / "index.sqlite"
        aside = index.with_name(f"index.sqlite.unreadable-{int(time.time())}")
        log.warning("cache index %s is unreadable (%s): moved to %s", index, exc, aside.name)
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.replace(f"{index}{suffix}", f"{aside}{suffix}")
        with self._transaction() as db:
            db.execute(_SCHEMA)

    # -- SQLite -----------------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.root / "index.sqlite", timeout=60, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
            with self._lock:
                self._connections.append(db)
        return db

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            for db in self._connections:
                with contextlib.suppress(sqlite3.Error):
                    db.close()
            self._connections = []
        self._local = threading.local()

    # -- reading ----------------------------------------------------------------------

    def lookup(self, key: str) -> Entry | None:
        """The entry for ``key``, checked; None on a miss (or a bad entry, removed)."""
        return self.lookup_many([key]).get(key)

    def lookup_many(self, keys: Sequence[str]) -> dict[str, Entry]:
        """The checked entries of those ``keys`` that are hits (one index query per
        500 keys)."""
        db, found = self._db(), {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            marks = ",".join("?" * len(chunk))
            query = f"SELECT {_COLUMNS}, inline FROM entries WHERE key IN ({marks})"
            for *row, inline in db.execute(query, chunk):
                entry = Entry(*row)
                checked = self._verified(entry) if inline is None else self._inline(entry, inline)
                if checked is not None:
                    found[entry.key] = checked
        for key in keys:
            if key not in found:
                adopted = self._adopt(key, blob_path(self._root, key))
                if adopted is not None:
                    found[key] = adopted
        return found

    def _inline(self, entry: Entry, payload: bytes) -> Entry | None:
        try:
            entry.value = unpickle(entry, memoryview(payload))
        except CacheCorruptError as exc:
            self._bad(entry, None, str(exc))
            return None
        entry.loaded = True
        return entry

    def _verified(self, entry: Entry) -> Entry | None:
        path = blob_path(self._root, entry.key)
        if entry.size <= SMALL_ENTRY:
            return self._checked(entry, path)
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            self._forget(entry.key)  # removed by `cache clear` in another process
            return None
        if size < entry.size:
            self._bad(entry, path, f"the file holds {size} bytes, fewer than its {entry.size}")
            return None
        return entry

    def _adopt(self, key: str, path: str) -> Entry | None:
        """A blob without an index row (a worker wrote it): index it."""
        try:
            with open(path, "rb") as f:
                entry = entry_of(read_header(f))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self._bad(Entry(key, "?", 0, "", "", 0.0, 0.0), path, f"bad header: {exc}")
            return None
        if entry.key != key:
            self._bad(entry, path, f"its header names key {entry.key!r}")
            return None
        checked = self._checked(entry, path) if entry.size <= SMALL_ENTRY else entry
        if checked is not None:
            self._index([(checked, None)])
        return checked

    def _checked(self, entry: Entry, path: str) -> Entry | None:
        try:
            entry.value = self._read_value(entry, path)
        except FileNotFoundError:
            self._forget(entry.key)  # removed by `cache clear` in another process
            return None
        except (OSError, ValueError, CacheCorruptError) as exc:
            self._bad(entry, path, str(exc))
            return None
        entry.loaded = True
        return entry

    def load(self, entry: Entry) -> Any:
        """The value of ``entry`` (read and verified now unless already loaded)."""
        if entry.loaded:
            return entry.value
        path = blob_path(self._root, entry.key)
        try:
            value = self._read_value(entry, path)
        except (OSError, ValueError, CacheCorruptError) as exc:
            self._bad(entry, path, str(exc))
            raise CacheCorruptError(
                f"the cached result of task {entry.task!r} ({path}) cannot be read: {exc}; "
                f"the entry was removed, so running the workflow again recomputes it"
            ) from exc
        entry.value, entry.loaded = value, True
        return value

    def _read_value(self, entry: Entry, path: str) -> Any:
        with open(path, "rb") as f:
            data = f.read()
        start = len(MAGIC) + LEN
        if not data.startswith(MAGIC) or len(data) < start:
            raise CacheCorruptError("not a cache entry (bad magic)")
        return unpickle(
            entry, memoryview(data)[start + int.from_bytes(data[len(MAGIC) : start], "little") :]
        )

    def _bad(self, entry: Entry, path: str | None, why: str) -> None:
        if entry.key not in self._warned:
            self._warned.add(entry.key)
            log.warning(
                "cache entry %s of task %r is unreadable (%s): removed, the task runs again",
                path or f"{entry.key} (in the index)",
                entry.task,
                why,
            )
        if path is not None:
            with contextlib.suppress(OSError):
                os.unlink(path)
        self._forget(entry.key)

    def _forget(self, key: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM entries WHERE key=?", (key,))

    # -- writing ----------------------------------------------------------------------

    def write(self, items: Iterable[tuple[Entry, bytes]]) -> int:
        """Write entries (large ones as blob files first), then index them all in
        one transaction; returns the bytes written."""
        rows: list[tuple[Entry, bytes | None]] = []
        total = 0
        for entry, payload in items:
            if len(payload) > INLINE_MAX:
                write_blob(self._root, entry, payload)
                rows.append((entry, None))
            else:
                rows.append((entry, payload))
            total += len(payload)
        if rows:
            self._index(rows)
        return total

    def _index(self, entries: list[tuple[Entry, bytes | None]]) -> None:
        now = time.time()
        rows = [
            (e.key, e.task, e.size, e.checksum, e.token, e.duration, e.created, now, 0, inline)
            for e, inline in entries
        ]
        with self._transaction() as db:
            db.executemany(
                f"INSERT OR REPLACE INTO entries ({_COLUMNS}, inline) VALUES (?,?,?,?,?,?,?,?,?,?)",
                rows,
            )

    def touch(self, keys: Iterable[str]) -> None:
        """Record hits (for ``cache ls`` and ``clear --older-than``)."""
        now = time.time()
        rows = [(now, k) for k in keys]
        if rows:
            with self._transaction() as db:
                db.executemany("UPDATE entries SET last_used=?, hits=hits+1 WHERE key=?", rows)

    # -- management -------------------------------------------------------------------

    def entries(self) -> list[Entry]:
        self._adopt_all()
        rows = self._db().execute(f"SELECT {_COLUMNS} FROM entries ORDER BY created").fetchall()
        return [Entry(*r) for r in rows]

    def _adopt_all(self) -> None:
        indexed = {r[0] for r in self._db().execute("SELECT key FROM entries")}
        for path in (self.root / "entries").glob("*/*"):
            if path.name not in indexed:
                self._adopt(path.name, str(path))

    def clear(self, older_than: float | None = None) -> int:
        """Remove every entry, or those not used for ``older_than`` seconds;
        returns how many were removed."""
        cutoff = None if older_than is None else time.time() - older_than
        removed = 0
        for e in self.entries():
            if cutoff is not None and max(e.last_used, e.created) >= cutoff:
                continue
            with contextlib.suppress(FileNotFoundError):
                os.unlink(blob_path(self._root, e.key))
            self._forget(e.key)
            removed += 1
        if older_than is None:  # stray temp files of writers killed mid-write
            for tmp in (self.root / "tmp").glob("*.tmp"):
                with contextlib.suppress(OSError):
                    tmp.unlink()
        return removed


def check_permissions(root: Path, trust_group: bool) -> None:
    """Refuse a directory that other users can write to (or that one owns)."""
    st = root.stat()
    problem = None
    if hasattr(os, "getuid") and st.st_uid not in (os.getuid(), 0):
        problem = f"it belongs to another user (uid {st.st_uid})"
    elif st.st_mode & stat.S_IWOTH:
        problem = "every user may write to it"
    elif st.st_mode & stat.S_IWGRP and not trust_group:
        problem = "its group may write to it"
    if problem is not None:
        raise ConfigurationError(
            f"refusing cache directory {root}: {problem}. Cache entries are pickles, so "
            f"whoever can write them can run code in your workflow. Use a directory only "
            f"you can write (chmod go-w {root}), or pass trust_group=True for a project "
            f"directory shared with a group you trust"
        )
