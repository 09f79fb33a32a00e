"""What one live engine owns alone: its backend objects and its session directory.

A backend reports to the one engine that started it (a second engine would take
its reporter, and the first would wait forever); a session directory holds files
named by task key (``task.000001.stdout``), which another engine with the same
uid would overwrite. Both are claimed when an engine starts and released when it
shuts down; the registry holds weak references only, so an engine that was never
shut down stops claiming anything once it is garbage.
"""

from __future__ import annotations

import os
import weakref
from typing import Any

from ..errors import ConfigurationError

__all__ = ["claim_backend", "claim_directory", "release_backend", "release_directory"]

#: id(backend object) -> (weak ref to it, uid of its engine, closed by that engine)
_backends: dict[int, tuple[weakref.ref[Any], str, bool]] = {}
#: session directory -> (uid of its live engine, weak ref to an object of that engine)
_directories: dict[str, tuple[str, weakref.ref[Any]]] = {}


def _target(backend: Any) -> Any:
    # An adapter around an AsyncFlow-style object: the user's object is what is shared.
    return getattr(backend, "wrapped", backend)


def claim_backend(backend: Any, engine_uid: str) -> None:
    """Mark ``backend`` as used by engine ``engine_uid``, or refuse it."""
    target = _target(backend)
    entry = _backends.get(id(target))
    if entry is not None and entry[0]() is target:
        _, owner, closed = entry
        if closed:
            raise ConfigurationError(
                f"backend {backend.name!r} ({type(target).__name__}) was closed when engine "
                f"{owner} shut down; a backend serves one engine: create a new backend "
                f"object for engine {engine_uid}"
            )
        raise ConfigurationError(
            f"backend {backend.name!r} ({type(target).__name__}) is already used by the live "
            f"engine {owner}; one backend object reports to one engine (its results would "
            f"go to the wrong one): create a new backend object for engine {engine_uid}, or "
            f"shut {owner} down first"
        )
    key = id(target)

    def forget(ref: weakref.ref[Any]) -> None:  # the object died: its id may be reused
        if _backends.get(key, (None,))[0] is ref:
            del _backends[key]

    _backends[key] = (weakref.ref(target, forget), engine_uid, False)


def release_backend(backend: Any, engine_uid: str, *, closed: bool) -> None:
    """Engine ``engine_uid`` is done with ``backend``; ``closed``: it closed it."""
    target = _target(backend)
    entry = _backends.get(id(target))
    if entry is None or entry[0]() is not target or entry[1] != engine_uid:
        return
    if closed:
        _backends[id(target)] = (entry[0], engine_uid, True)
    else:
        del _backends[id(target)]


def claim_directory(path: os.PathLike[str] | str, engine_uid: str, owner: Any) -> None:
    """Claim session directory ``path`` for ``owner`` (an object that lives as long
    as the engine), or refuse it."""
    where = os.path.abspath(os.fspath(path))
    entry = _directories.get(where)
    if entry is not None and entry[1]() is not None:
        raise ConfigurationError(
            f"engine uid {os.path.basename(where)!r} with work_dir "
            f"{os.path.dirname(where)!r}: its session directory {where} is used by the "
            f"live engine {entry[0]}, whose output files (task.000001.stdout, ...) the "
            f"new engine would overwrite. Give each engine its own uid= or work_dir=, or "
            f"shut the other one down first"
        )
    _directories[where] = (engine_uid, weakref.ref(owner))


def release_directory(path: os.PathLike[str] | str, owner: Any) -> None:
    where = os.path.abspath(os.fspath(path))
    entry = _directories.get(where)
    if entry is not None and entry[1]() in (owner, None):
        del _directories[where]
