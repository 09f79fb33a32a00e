"""A persistent, code-aware result cache (``cache=`` on tasks, engines and
``compute()``): keys are content tokens of a task's code and inputs, entries live
in a cache directory (a SQLite index and one blob file per entry), and the compiler
prunes the tasks whose results are there. See ``docs/caching.md``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from .backend import CacheStats
from .run import CacheRun
from .store import Entry, Store

if TYPE_CHECKING:
    from ..executor import Executor, Intake

__all__ = ["DEFAULT_DIRECTORY", "CacheRun", "CacheStats", "Entry", "Store", "open_cache"]

#: the cache directory inside an engine's work_dir when none is given
DEFAULT_DIRECTORY = ".asyncflow-cache"


def check_cache_option(cache: Any) -> None:
    """Fail at once (at engine creation) on a ``cache=`` that means nothing."""
    if cache is None or isinstance(cache, bool | str | os.PathLike | Store):
        return
    raise ConfigurationError(
        f"cache= takes True (cache every function and executable task in "
        f"<work_dir>/{DEFAULT_DIRECTORY}), a directory path, a cache.Store, False (off, "
        f"even for tasks with cache=True) or None (only tasks with cache=True); got {cache!r}"
    )


def open_cache(cache: Any, work_dir: Path, executor: Executor, intake: Intake) -> CacheRun:
    """Open the :class:`CacheRun` an engine's ``cache=`` asks for and join it to the
    engine's executor (the ``@cache`` backend, the submit gate, the result hooks) and
    intake (the compiler's cache pass)."""
    check_cache_option(cache)
    if cache is False:
        raise ConfigurationError("this engine was created with cache=False: it has no result cache")
    if isinstance(cache, Store):
        run = CacheRun(cache, default=True)
    elif cache is None or cache is True:
        run = CacheRun(Store(work_dir / DEFAULT_DIRECTORY), default=cache is True)
    else:
        run = CacheRun(Store(cache), default=True)
    run.attach(executor)
    intake.cache = run
    return run
