"""Pausing the cyclic garbage collector around the engine's own allocation bursts."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["BURST", "gc_paused"]

#: below this many objects a burst is not worth pausing for
BURST = 1000


@contextmanager
def gc_paused(n: int) -> Iterator[None]:
    """Pause the cyclic GC while a synchronous step handles ``n`` tasks.

    Compiling, dispatching or recording a large batch allocates a burst of objects
    that live on (handles, jobs, scheduled callbacks); every collection in the middle
    of it would re-walk all of them, and a burst of N tasks would trigger O(N) of
    them. These steps create no garbage cycles, so nothing is lost by collecting
    after instead of during; the previous state is restored, and nothing is paused
    if the caller (or the user) already disabled the GC.
    """
    paused = n > BURST and gc.isenabled()
    if paused:
        gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()
