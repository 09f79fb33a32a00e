"""Explicit data dependencies: ``InputFile`` and ``OutputFile`` as in AsyncFlow.

Unlike AsyncFlow, a URL is not downloaded when the object is built (that did
network I/O at call time, into the current directory); it is recorded and left to
the task or backend that stages it.
"""

from __future__ import annotations

import os
from urllib.parse import urlparse

__all__ = ["URL_SCHEMES", "File", "InputFile", "OutputFile"]

#: the schemes that make an ``InputFile`` a URL (AsyncFlow's list)
URL_SCHEMES = ("http", "https", "ftp", "ftps", "sftp", "file", "data", "s3", "azure", "r2", "gs")
_URL_SCHEMES = frozenset(URL_SCHEMES)


class File:
    """Base of :class:`InputFile` and :class:`OutputFile` (``isinstance(x, File)``)."""

    __slots__ = ()
    filename: str


class InputFile(File):
    """A file a task reads: an existing local path (``filepath`` made absolute), a
    URL (recorded, not downloaded), or the name of a file that does not exist here
    (another task's output, or one a remote or staging backend provides)."""

    __slots__ = ("filename", "filepath", "is_remote", "produced_by_task")

    def __init__(self, path: str | os.PathLike[str]) -> None:
        text = os.fspath(path)
        if not isinstance(text, str) or not text:
            raise ValueError("InputFile needs a non-empty path, URL or file name")
        self.is_remote = urlparse(text).scheme in _URL_SCHEMES
        self.produced_by_task = not self.is_remote and not os.path.exists(text)
        self.filepath = text if self.is_remote or self.produced_by_task else os.path.abspath(text)
        self.filename = os.path.basename(urlparse(text).path if self.is_remote else text)

    def __repr__(self) -> str:
        return f"InputFile({self.filepath!r})"

    def __fspath__(self) -> str:
        return self.filepath


class OutputFile(File):
    """A file a task writes (``filename`` = the base name)."""

    __slots__ = ("filename",)

    def __init__(self, name: str | os.PathLike[str]) -> None:
        text = os.fspath(name)
        if not text or text.endswith(("/", os.sep)):
            raise ValueError(f"OutputFile needs a file name, got {text!r}")
        self.filename = os.path.basename(text)

    def __repr__(self) -> str:
        return f"OutputFile({self.filename!r})"

    def __fspath__(self) -> str:
        return self.filename
