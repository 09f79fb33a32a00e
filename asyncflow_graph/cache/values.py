"""Content tokens of argument and result values.

A token is a hash of what a value *is*, never of where it lives: equal values give
equal tokens in any process (``{"a": 1, "b": 2}`` and ``{"b": 2, "a": 1}`` too), and a
value of another type gives another token (``1``, ``1.0`` and ``True`` differ). Bytes,
numpy arrays and files are hashed by content with the fast hash of
:mod:`.hashing`, straight from their buffers (no copy); a large buffer's token is
memoized per object for the run, so an array passed to a thousand tasks is hashed
once. Objects with no rule of their own are hashed by their pickle (protocol 5,
large buffers out of band). What cannot be pickled has no token:
:class:`Untokenizable` says why, and the task is then run without the cache.
"""

from __future__ import annotations

import enum
import os
import pickle
import struct
from collections.abc import Callable, Mapping
from pathlib import PurePath
from types import BuiltinFunctionType, FunctionType, MethodType
from typing import Any

from ..data import InputFile
from ..spec import Ref
from .hashing import Hasher, new_hasher

__all__ = ["MEMO_MIN_BYTES", "Untokenizable", "ValueTokens"]

#: buffers at least this large are memoized per object (smaller ones hash faster
#: than a memo lookup costs)
MEMO_MIN_BYTES = 1 << 16
#: nesting deeper than this is hashed through pickle (no Python recursion limit)
MAX_DEPTH = 64
_FILE_CHUNK = 1 << 22


class Untokenizable(Exception):
    """A value has no content token (it cannot be pickled)."""


class ValueTokens:
    """Tokens of values for one run: memoizes large buffers and files.

    ``code_token`` gives the token of a function or class found among the values
    (the code tokenizer; values do not import it)."""

    __slots__ = ("_code_token", "_files", "_memo")

    def __init__(self, code_token: Callable[[Any], str]) -> None:
        self._code_token = code_token
        #: id -> (the object, kept alive so its id stays its own; its digest)
        self._memo: dict[int, tuple[Any, bytes]] = {}
        #: (path, size, mtime_ns, inode) -> digest
        self._files: dict[tuple[str, int, int, int], bytes] = {}

    def token(self, obj: Any, refs: Mapping[str, bytes] | None = None) -> bytes:
        """The digest of ``obj``; every :class:`Ref` inside it stands for
        ``refs[ref.key]`` (the upstream task's token)."""
        h = new_hasher()
        self.feed(h, obj, refs, 0)
        return h.digest()

    def feed(self, h: Hasher, obj: Any, refs: Mapping[str, bytes] | None, depth: int) -> None:
        """Add ``obj``'s unambiguous encoding (type tag, length, content) to ``h``."""
        t = type(obj)
        rule = _RULES.get(t)
        if rule is not None:
            rule(self, h, obj, refs, depth)
        elif t is Ref:
            if refs is None or obj.key not in refs:
                raise Untokenizable(f"no token for the result of upstream task {obj.key!r}")
            h.update(b"R")
            h.update(refs[obj.key])
        elif depth > MAX_DEPTH:
            self._pickled(h, obj)
        else:
            self._other(h, obj, refs, depth)

    # -- containers -------------------------------------------------------------------

    def _sequence(self, h: Hasher, obj: Any, refs: Any, depth: int) -> None:
        if len(obj) <= 64 and _REPR_EXACT.issuperset(map(type, obj)):
            # the common call: a few numbers and strings, whose repr is exact and
            # unambiguous; one update instead of one per item
            h.update(b"r" + _TAG[type(obj)] + repr(obj).encode("utf-8", "surrogatepass"))
            return
        h.update(b"%s%d:" % (_TAG[type(obj)], len(obj)))
        for item in obj:
            self.feed(h, item, refs, depth + 1)

    def _dict(self, h: Hasher, obj: dict[Any, Any], refs: Any, depth: int) -> None:
        h.update(b"d%d:" % len(obj))
        if not obj:
            return
        if all(type(k) is str for k in obj):
            for k in sorted(obj):
                _str(self, h, k, refs, depth)
                self.feed(h, obj[k], refs, depth + 1)
            return
        items = sorted((self.token(k, refs), v) for k, v in obj.items())
        for kt, v in items:
            h.update(kt)
            self.feed(h, v, refs, depth + 1)

    def _set(self, h: Hasher, obj: Any, refs: Any, depth: int) -> None:
        h.update(b"%s%d:" % (_TAG[type(obj)], len(obj)))
        for digest in sorted(self.token(v, refs) for v in obj):
            h.update(digest)

    # -- buffers and files ------------------------------------------------------------

    def _bytes(self, h: Hasher, obj: Any, refs: Any, depth: int) -> None:
        h.update(b"b%d:" % len(obj))
        if len(obj) < MEMO_MIN_BYTES:
            h.update(obj)
        else:
            h.update(self._memoized(obj, lambda: _digest_of(memoryview(obj).cast("B"))))

    def _memoized(self, obj: Any, compute: Callable[[], bytes]) -> bytes:
        known = self._memo.get(id(obj))
        if known is not None and known[0] is obj:
            return known[1]
        digest = compute()
        self._memo[id(obj)] = (obj, digest)
        return digest

    def file_digest(self, path: str) -> bytes:
        """Digest of a file's content, memoized while its size, mtime and inode stay."""
        st = os.stat(path)
        stamp = (path, st.st_size, st.st_mtime_ns, st.st_ino)
        digest = self._files.get(stamp)
        if digest is None:
            hasher = new_hasher()
            with open(path, "rb") as f:
                while chunk := f.read(_FILE_CHUNK):
                    hasher.update(chunk)
            digest = self._files[stamp] = hasher.digest()
        return digest

    def _path(self, h: Hasher, obj: Any, refs: Any, depth: int) -> None:
        text = os.fspath(obj)
        h.update(b"P")
        _str(self, h, text, refs, depth)
        if os.path.isfile(text):  # an existing file: its content too
            h.update(self.file_digest(text))

    def _input_file(self, h: Hasher, obj: InputFile, refs: Any, depth: int) -> None:
        h.update(b"I")
        _str(self, h, obj.filename, refs, depth)
        if not obj.is_remote and os.path.isfile(obj.filepath):
            h.update(self.file_digest(obj.filepath))
        else:  # a URL or a file a task will produce: the name is all there is now
            _str(self, h, obj.filepath, refs, depth)

    # -- everything else --------------------------------------------------------------

    def _other(self, h: Hasher, obj: Any, refs: Any, depth: int) -> None:
        t = type(obj)
        if t.__module__ == "numpy":
            self._numpy(h, obj)
        elif isinstance(obj, PurePath):
            self._path(h, obj, refs, depth)
        elif isinstance(obj, FunctionType | BuiltinFunctionType | MethodType | type):
            h.update(b"F")
            _str(self, h, self._code_token(obj), refs, depth)
        elif isinstance(obj, enum.Enum):
            h.update(b"E")
            _str(self, h, f"{t.__module__}.{t.__qualname__}", refs, depth)
            self.feed(h, obj.value, refs, depth + 1)
        elif isinstance(obj, tuple):  # namedtuples and other tuple subclasses
            h.update(b"N")
            _str(self, h, f"{t.__module__}.{t.__qualname__}", refs, depth)
            self._sequence_items(h, obj, refs, depth)
        else:
            self._pickled(h, obj)

    def _sequence_items(self, h: Hasher, obj: tuple[Any, ...], refs: Any, depth: int) -> None:
        h.update(b"%d:" % len(obj))
        for item in obj:
            self.feed(h, item, refs, depth + 1)

    def _numpy(self, h: Hasher, obj: Any) -> None:
        import numpy as np

        if not isinstance(obj, np.ndarray | np.generic):
            self._pickled(h, obj)
            return
        arr = np.asarray(obj)
        if arr.dtype.hasobject:  # references, not data: hash what they point to
            self._pickled(h, obj)
            return
        h.update(b"A%s%s:" % (arr.dtype.str.encode(), repr(arr.shape).encode()))
        if arr.nbytes < MEMO_MIN_BYTES or isinstance(obj, np.generic):
            h.update(_contiguous(arr))
        else:
            h.update(self._memoized(obj, lambda: _digest_of(_contiguous(arr))))

    def _pickled(self, h: Hasher, obj: Any) -> None:
        buffers: list[pickle.PickleBuffer] = []
        try:
            data = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
        except Exception as exc:
            raise Untokenizable(
                f"{type(obj).__qualname__} object cannot be pickled ({type(exc).__name__}: {exc})"
            ) from None
        h.update(b"p%d:" % len(data))
        h.update(data)
        for buf in buffers:
            h.update(buf.raw())


def _contiguous(arr: Any) -> memoryview:
    import numpy as np

    contiguous: Any = np.ascontiguousarray(arr)
    return memoryview(contiguous).cast("B")


def _digest_of(view: memoryview) -> bytes:
    hasher = new_hasher()
    hasher.update(view)
    return hasher.digest()


def _str(_: ValueTokens, h: Hasher, obj: str, refs: Any, depth: int) -> None:
    data = obj.encode("utf-8", "surrogatepass")
    h.update(b"s%d:" % len(data))
    h.update(data)


def _int(_: ValueTokens, h: Hasher, obj: int, refs: Any, depth: int) -> None:
    h.update(b"i%d;" % obj)


def _float(_: ValueTokens, h: Hasher, obj: float, refs: Any, depth: int) -> None:
    h.update(b"f" + struct.pack("<d", obj))


def _complex(_: ValueTokens, h: Hasher, obj: complex, refs: Any, depth: int) -> None:
    h.update(b"c" + struct.pack("<dd", obj.real, obj.imag))


def _constant(_: ValueTokens, h: Hasher, obj: Any, refs: Any, depth: int) -> None:
    h.update(_CONSTANTS[obj])


#: types whose repr() tells every value apart (floats: repr round-trips exactly)
_REPR_EXACT = frozenset({int, float, str, bool, type(None)})
_CONSTANTS: dict[Any, bytes] = {None: b"n", True: b"T", False: b"F", Ellipsis: b"e"}
_TAG: dict[type, bytes] = {list: b"l", tuple: b"t", set: b"S", frozenset: b"z"}
_RULES: dict[type, Callable[[ValueTokens, Hasher, Any, Any, int], None]] = {
    str: _str,
    int: _int,
    float: _float,
    complex: _complex,
    bool: _constant,
    type(None): _constant,
    type(Ellipsis): _constant,
    bytes: ValueTokens._bytes,
    bytearray: ValueTokens._bytes,
    memoryview: lambda self, h, obj, refs, depth: ValueTokens._bytes(
        self, h, obj.tobytes(), refs, depth
    ),
    list: ValueTokens._sequence,
    tuple: ValueTokens._sequence,
    dict: ValueTokens._dict,
    set: ValueTokens._set,
    frozenset: ValueTokens._set,
    InputFile: ValueTokens._input_file,
}
