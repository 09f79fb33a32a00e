"""Credentials in a server URL, kept out of every message and log line.

A ``base_url`` may carry a password (``http://user:secret@host/v1``) or a token in
its query (``?key=...``). :class:`Credentials` splits them off: the URL the backend
shows (in messages, ``InferenceServerError.server``, logs, telemetry) has neither;
httpx gets the user and password as Basic auth and the query as request
parameters. :func:`public_url` masks any URL built from it (httpx's request URLs
carry the parameters), and a :class:`Redactor` installed on httpx's own loggers
replaces every secret in their lines, as one on exceptions does for messages built
elsewhere.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlsplit, urlunsplit

__all__ = ["MASK", "Credentials", "Redactor", "public_url"]

MASK = "***"
#: loggers of the HTTP stack whose lines may hold request URLs
HTTP_LOGGERS = ("httpx", "httpcore")


def public_url(url: Any) -> str:
    """``url`` without its user and password, every query value masked."""
    parts = urlsplit(str(url))
    netloc = parts.netloc.rpartition("@")[2]
    if parts.username is not None or parts.password is not None:
        netloc = f"{MASK}@{netloc}"
    query = "&".join(f"{k}={MASK}" for k, _ in parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


class Credentials:
    """A URL split into its address and its credentials."""

    __slots__ = ("auth", "params", "secrets", "url")

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        host = parts.netloc.rpartition("@")[2]
        self.url = urlunsplit((parts.scheme, host, parts.path, "", parts.fragment))
        user = unquote(parts.username) if parts.username is not None else None
        password = unquote(parts.password) if parts.password is not None else None
        self.auth = (user, password or "") if user is not None else None
        self.params = parse_qsl(parts.query, keep_blank_values=True)
        secrets = [v for _, v in self.params] + [s for s in (user, password) if s]
        if self.auth is not None:
            pair = f"{self.auth[0]}:{self.auth[1]}".encode()
            secrets.append(base64.b64encode(pair).decode())  # the Basic auth header
        self.secrets = tuple(secrets)


class Redactor(logging.Filter):
    """Replaces each secret (and its URL-quoted forms) by ``***``: in log records
    (as a filter on a logger) and in exception messages (:meth:`exception`)."""

    def __init__(self, secrets: Iterable[str | None]) -> None:
        super().__init__()
        forms: set[str] = set()
        for s in secrets:
            if s and len(s) >= 3:  # a one- or two-letter value would mask everything
                forms.update((s, quote(s, safe=""), quote_plus(s)))
        self._forms = sorted(forms, key=len, reverse=True)

    def __bool__(self) -> bool:
        return bool(self._forms)

    def text(self, text: str) -> str:
        for form in self._forms:
            if form in text:
                text = text.replace(form, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = self.text(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True

    def exception(self, exc: BaseException) -> BaseException:
        """``exc`` with every secret gone from its message and its notes."""
        if not self:
            return exc
        exc.args = tuple(self.text(a) if isinstance(a, str) else a for a in exc.args)
        notes = getattr(exc, "__notes__", None)
        if notes:
            exc.__notes__ = [self.text(n) for n in notes]
        for name in ("server", "body"):
            value = getattr(exc, name, None)
            if isinstance(value, str):
                setattr(exc, name, self.text(value))
        return exc

    def install(self) -> None:
        """Filter the lines of the HTTP stack's loggers (children included: a
        logger's filters do not apply to its children's records)."""
        for logger in _http_loggers():
            logger.addFilter(self)

    def uninstall(self) -> None:
        for logger in _http_loggers():
            logger.removeFilter(self)


def _http_loggers() -> list[logging.Logger]:
    names = [
        n for n in list(logging.root.manager.loggerDict) if n.partition(".")[0] in HTTP_LOGGERS
    ]
    return [logging.getLogger(n) for n in {*HTTP_LOGGERS, *names}]
