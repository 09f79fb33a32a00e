"""The attached run observers, as the executor calls them.

The bound methods of the hooks each observer overrides are looked up once, when the
set changes, so a hook nobody overrides costs one truthiness test per step. Keys a
backend reports done together are collected in :attr:`Observers.batch` and handed
over in one ``on_done_many`` call per observer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any

from .events import HOOKS, RunObserver, overridden

__all__ = ["Observers"]

log = logging.getLogger("asyncflow_graph")

DoneMany = Callable[[list[tuple[str, Any]]], Any]


class Observers:
    __slots__ = ("all", "batch", "hooks", "on_done", "on_done_many", "on_running")

    def __init__(self) -> None:
        #: attached observers; empty (falsy) keeps every hook to one test
        self.all: tuple[RunObserver, ...] = ()
        self.hooks: dict[str, tuple[Callable[..., Any], ...]] = dict.fromkeys(HOOKS, ())
        self.on_running: tuple[Callable[[str], Any], ...] = ()  # the two per-key hooks
        self.on_done: tuple[Callable[[str, Any], Any], ...] = ()
        self.on_done_many: tuple[DoneMany, ...] = ()
        #: while the executor records a batch of outcomes (and someone observes
        #: on_done): the keys done so far, told in one call per observer
        self.batch: list[tuple[str, Any]] | None = None

    def add(self, observer: RunObserver) -> None:
        self._set((*self.all, observer))

    def remove(self, observer: RunObserver) -> None:
        self._set(tuple(o for o in self.all if o is not observer))

    def _set(self, observers: tuple[RunObserver, ...]) -> None:
        self.all = observers
        self.hooks = {h: tuple(getattr(o, h) for o in observers if overridden(o, h)) for h in HOOKS}
        self.on_running = self.hooks["on_running"]
        # Batches go to on_done_many; an observer that overrides only one of the two
        # hooks gets the other built from it, each key's call failing on its own.
        one: list[Callable[[str, Any], Any]] = []
        many: list[DoneMany] = []
        for o in observers:
            if overridden(o, "on_done_many"):
                many.append(o.on_done_many)
                one.append(o.on_done if overridden(o, "on_done") else partial(_one, o))
            elif overridden(o, "on_done"):
                many.append(partial(_each, o.on_done))
                one.append(o.on_done)
        self.on_done, self.on_done_many = tuple(one), tuple(many)

    def notify(self, hook: str, *args: Any) -> None:
        for fn in self.hooks[hook]:
            try:
                fn(*args)
            except Exception:
                failed(fn, hook)

    def running(self, key: str) -> None:
        for fn in self.on_running:
            try:
                fn(key)
            except Exception:
                failed(fn, "on_running")

    def done(self, key: str, value: Any) -> None:
        batch = self.batch
        if batch is not None:
            batch.append((key, value))
            return
        for fn in self.on_done:
            try:
                fn(key, value)
            except Exception:
                failed(fn, "on_done")

    def open_batch(self) -> list[tuple[str, Any]] | None:
        """Start collecting done keys; returns the batch this one is nested in."""
        self.flush()  # a report nested in another: the outer keys come first
        outer, self.batch = self.batch, [] if self.on_done_many else None
        return outer

    def close_batch(self, outer: list[tuple[str, Any]] | None) -> None:
        done, self.batch = self.batch, outer
        if done:
            self.tell_done_many(done)

    def flush(self) -> None:
        """Hand the keys done so far in this batch to the observers (before an
        end or a nested report, so they see the ends in order)."""
        batch = self.batch
        if batch:
            self.batch = []
            self.tell_done_many(batch)

    def tell_done_many(self, batch: list[tuple[str, Any]]) -> None:
        for fn in self.on_done_many:
            try:
                fn(batch)
            except Exception:
                failed(fn, "on_done_many")


def failed(fn: Callable[..., Any], hook: str) -> None:
    log.exception("run observer %r failed in %s", fn, hook)


def _each(on_done: Callable[[str, Any], Any], done: list[tuple[str, Any]]) -> None:
    """on_done_many from an observer's on_done: one call per key, each on its own."""
    for key, value in done:
        try:
            on_done(key, value)
        except Exception:
            failed(on_done, "on_done")


def _one(observer: RunObserver, key: str, value: Any) -> None:
    """on_done from an observer's on_done_many."""
    observer.on_done_many([(key, value)])
