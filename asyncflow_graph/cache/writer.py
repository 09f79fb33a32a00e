"""Writes entries on a background thread, in batches: the event loop only pickles
(so a value mutated later is stored as it was when its task ended) and queues."""

from __future__ import annotations

import logging
import queue
import threading

from .store import Entry, Store

__all__ = ["Writer"]

log = logging.getLogger("asyncflow_graph.cache")


class Writer:
    """One daemon thread per store of a run; ``flush`` waits until everything queued
    so far is written and indexed."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.bytes_written = 0
        self._queue: queue.SimpleQueue[tuple[Entry, bytes] | threading.Event | None] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def put(self, entry: Entry, payload: bytes) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="asyncflow-cache-writer", daemon=True
                    )
                    self._thread.start()
        self._queue.put((entry, payload))

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until the queue so far is written; False on timeout."""
        if self._thread is None:
            return True
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def close(self, timeout: float | None = 60.0) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            batch: list[tuple[Entry, bytes]] = []
            events: list[threading.Event] = []
            stop = False
            while True:  # take everything queued now: one transaction for the lot
                if item is None:
                    stop = True
                elif isinstance(item, threading.Event):
                    events.append(item)
                else:
                    batch.append(item)
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            self._write(batch)
            for ev in events:
                ev.set()
            if stop:
                return

    def _write(self, batch: list[tuple[Entry, bytes]]) -> None:
        if not batch:
            return
        try:
            self.bytes_written += self.store.write(batch)
        except Exception as exc:  # a full disk must not stop the run
            names = sorted({e.task for e, _ in batch})
            log.warning(
                "could not write %d cache entries (%s) to %s: %s",
                len(batch),
                ", ".join(names[:5]),
                self.store.root,
                exc,
            )
