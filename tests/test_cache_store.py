"""The cache store: atomic blobs + SQLite index, checks, permissions, concurrency."""

from __future__ import annotations

import logging
import os
import pickle
import sqlite3
import time
from pathlib import Path

import pytest

from asyncflow_graph.cache.hashing import checksum
from asyncflow_graph.cache.store import INLINE_MAX, SMALL_ENTRY, Entry, Store, write_blob
from asyncflow_graph.errors import CacheCorruptError, ConfigurationError


def _entry(key: str, value: object, task: str = "t") -> tuple[Entry, bytes]:
    payload = pickle.dumps(value)
    return Entry(key, task, len(payload), checksum(payload), "ab" * 16, 0.5, time.time()), payload


def _key(i: int) -> str:
    return f"{i:032x}"


def _blobs(root: Path) -> list[Path]:
    return sorted((root / "entries").glob("*/*"))


def test_write_lookup_load_round_trip(tmp_path):
    store = Store(tmp_path / "c")
    small = _entry(_key(1), {"a": 1})  # in its index row
    medium = _entry(_key(2), b"m" * (INLINE_MAX * 2))  # a file, read at lookup
    big = _entry(_key(3), b"x" * (SMALL_ENTRY * 2))  # a file, read when needed
    store.write([small, medium, big])
    assert len(_blobs(tmp_path / "c")) == 2
    hit = store.lookup(_key(1))
    assert hit is not None and hit.loaded and hit.value == {"a": 1} and hit.duration == 0.5
    mid = store.lookup(_key(2))
    assert mid is not None and mid.loaded and mid.value == b"m" * (INLINE_MAX * 2)
    lazy = store.lookup(_key(3))
    assert lazy is not None and not lazy.loaded
    assert store.load(lazy) == b"x" * (SMALL_ENTRY * 2)
    assert store.lookup(_key(4)) is None
    assert set(store.lookup_many([_key(i) for i in range(5)])) == {_key(1), _key(2), _key(3)}
    assert not list((tmp_path / "c" / "tmp").iterdir())  # temp files were renamed


def test_corrupted_inline_entry_is_a_miss_with_one_warning(tmp_path, caplog):
    store = Store(tmp_path / "c")
    store.write([_entry(_key(1), list(range(100)), task="simulate")])
    db = sqlite3.connect(tmp_path / "c" / "index.sqlite")
    (payload,) = db.execute("SELECT inline FROM entries").fetchone()
    flipped = payload[:-5] + bytes([payload[-5] ^ 0xFF]) + payload[-4:]
    db.execute("UPDATE entries SET inline=?", (flipped,))
    db.commit()
    db.close()
    with caplog.at_level(logging.WARNING, logger="asyncflow_graph.cache"):
        assert store.lookup(_key(1)) is None
        assert store.lookup(_key(1)) is None
    warnings = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
    assert len(warnings) == 1 and "simulate" in warnings[0] and "checksum" in warnings[0]
    assert store.entries() == []  # removed: the next run writes a good one


def test_corrupted_file_entry_is_a_miss_with_one_warning(tmp_path, caplog):
    store = Store(tmp_path / "c")
    store.write([_entry(_key(1), bytes(INLINE_MAX * 2), task="simulate")])
    (blob,) = _blobs(tmp_path / "c")
    data = bytearray(blob.read_bytes())
    data[-5] ^= 0xFF  # one flipped byte in the payload
    blob.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="asyncflow_graph.cache"):
        assert store.lookup(_key(1)) is None
        assert store.lookup(_key(1)) is None
    warnings = [r for r in caplog.records if "unreadable" in r.message]
    assert len(warnings) == 1 and "simulate" in warnings[0].getMessage()
    assert not blob.exists()


def test_unreadable_index_is_set_aside_and_file_entries_found_again(tmp_path, caplog):
    root = tmp_path / "c"
    store = Store(root)
    store.write([_entry(_key(1), bytes(INLINE_MAX * 2), task="kept")])
    store.close()
    (root / "index.sqlite").write_bytes(b"this is not a database" * 100)
    for suffix in ("-wal", "-shm"):
        (root / f"index.sqlite{suffix}").unlink(missing_ok=True)
    with caplog.at_level(logging.WARNING, logger="asyncflow_graph.cache"):
        store = Store(root)
    assert any("unreadable" in r.getMessage() for r in caplog.records)
    assert list(root.glob("index.sqlite.unreadable-*"))
    hit = store.lookup(_key(1))
    assert hit is not None and hit.task == "kept"


def test_truncated_large_entry_fails_its_load_clearly_and_is_removed(tmp_path):
    store = Store(tmp_path / "c")
    store.write([_entry(_key(1), b"y" * (SMALL_ENTRY * 4), task="big")])
    entry = store.lookup(_key(1))
    assert entry is not None
    (blob,) = _blobs(tmp_path / "c")
    data = blob.read_bytes()
    blob.write_bytes(data[:-10] + b"0123456789")
    with pytest.raises(CacheCorruptError, match="'big'.*checksum.*recomputes"):
        store.load(entry)
    assert store.lookup(_key(1)) is None


def test_truncated_file_and_garbage_are_misses(tmp_path):
    store = Store(tmp_path / "c")
    store.write([_entry(_key(1), b"z" * (SMALL_ENTRY * 4))])
    (blob,) = _blobs(tmp_path / "c")
    blob.write_bytes(blob.read_bytes()[:100])
    assert store.lookup(_key(1)) is None  # shorter than indexed: caught by the stat
    garbage = tmp_path / "c" / "entries" / _key(2)[:2] / _key(2)
    garbage.parent.mkdir(exist_ok=True)
    garbage.write_bytes(b"not a cache entry")
    assert store.lookup(_key(2)) is None


def test_blob_without_index_row_is_adopted(tmp_path):
    """What a Dask worker writes (blob only) is found and indexed by the client."""
    root = tmp_path / "c"
    store = Store(root)
    entry, payload = _entry(_key(7), "from a worker", task="remote")
    write_blob(root, entry, payload)
    hit = store.lookup(_key(7))
    assert hit is not None and hit.value == "from a worker" and hit.task == "remote"
    assert [e.key for e in store.entries()] == [_key(7)]


def test_clear_all_and_older_than(tmp_path):
    store = Store(tmp_path / "c")
    store.write([_entry(_key(1), 1), _entry(_key(2), 2)])
    db = sqlite3.connect(tmp_path / "c" / "index.sqlite")
    old = time.time() - 10 * 86400
    db.execute("UPDATE entries SET created=?, last_used=? WHERE key=?", (old, old, _key(1)))
    db.commit()
    db.close()
    assert store.clear(older_than=7 * 86400) == 1
    assert [e.key for e in store.entries()] == [_key(2)]
    assert store.clear() == 1
    assert store.entries() == []


def test_refuses_directories_other_users_can_write(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(ConfigurationError, match=r"every user may write.*chmod go-w"):
        Store(shared)
    shared.chmod(0o775)
    with pytest.raises(ConfigurationError, match="group may write.*trust_group=True"):
        Store(shared)
    Store(shared, trust_group=True).close()
    with pytest.raises(ConfigurationError, match="URL.*never load them from the network"):
        Store("https://example.org/cache")


def test_new_directory_is_private(tmp_path):
    Store(tmp_path / "new" / "cache").close()
    assert (tmp_path / "new" / "cache").stat().st_mode & 0o777 == 0o700


WRITER = """
import pickle, sys, time
from asyncflow_graph.cache.hashing import checksum
from asyncflow_graph.cache.store import Entry, Store

root, who, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = Store(root)
open(root + f"/../ready-{who}", "w").close()
while not __import__("os").path.exists(root + "/../go"):  # start together
    time.sleep(0.001)
for i in range(n):
    # half the keys are written by both processes (same key, same value), half by one
    key = f"{i:032x}" if i % 2 == 0 else f"{who}{i:031x}"
    # most values inline in the index, every tenth in a blob file
    payload = pickle.dumps((key, bytes(1000 + i if i % 10 else 20_000 + i)))
    e = Entry(key, who, len(payload), checksum(payload), "00" * 16, 0.0, time.time())
    store.write([(e, payload)])
store.close()
print("ok")
"""


def test_two_processes_writing_at_once_never_corrupt_the_store(tmp_path):
    import subprocess
    import sys

    from procs import ROOT

    root = tmp_path / "c"
    Store(root).close()
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    n = 300
    procs = [
        subprocess.Popen([sys.executable, str(script), str(root), who, str(n)], env=env,
                         stdout=subprocess.PIPE, text=True)
        for who in ("a", "b")
    ]  # fmt: skip
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"ready-{w}").exists() for w in "ab"):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
        time.sleep(0.01)
    (tmp_path / "go").touch()
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0] and outs == ["ok\n", "ok\n"]
    store = Store(root)
    entries = store.entries()
    assert len(entries) == n // 2 + 2 * (n // 2)
    for e in entries:  # every entry whole, verified by its checksum, holding its own key
        full = store.lookup(e.key)
        assert full is not None and store.load(full)[0] == e.key
    db = sqlite3.connect(root / "index.sqlite")
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    db.close()
