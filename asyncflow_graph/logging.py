"""Logging helpers with AsyncFlow's names and behaviour (``radical.asyncflow.logging``).

``init_default_logger()`` configures the **root** logger, as AsyncFlow's does, so the
``logging.getLogger(__name__)`` lines of a user's program show next to the engine's
own (which logs to ``"asyncflow_graph"``): a console handler on stdout whose level is
``log_level``, the logger itself at ``NOTSET``, ``warnings`` captured. Console lines
look like AsyncFlow's: ``2025-01-01 12:00:00.123 │ INFO │ [main] │ message``; colours
are used only when the stream is a terminal, so piped output stays plain text.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from typing import Any, TextIO

__all__ = ["StructuredLogger", "get_logger", "get_structured_logger", "init_default_logger"]

_SEP = " │ "
_DATE = "%Y-%m-%d %H:%M:%S"
_RESET = "\033[0m"
_GREY = "\033[90m"
_NAME = "\033[38;5;165m"
_LEVEL_COLOURS = {
    logging.DEBUG: "\033[96m",
    logging.INFO: "\033[94m",
    logging.WARNING: "\033[93m",
    logging.ERROR: "\033[91m",
    logging.CRITICAL: "\033[91m\033[1m",
}
#: attributes every LogRecord has; the others came from ``extra=`` (structured logs)
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message"}


def _short_name(name: str) -> str:
    if name == "__main__":
        return "main"
    return name.rsplit(".", 1)[-1] or "root"


class ConsoleFormatter(logging.Formatter):
    """``time │ LEVEL │ [short logger name] │ message``, optionally coloured, with
    ``[TID:.. PID:..]`` when ``show_details``."""

    def __init__(self, *, colours: bool, show_details: bool = False) -> None:
        super().__init__(datefmt=_DATE)
        self.colours = colours
        self.show_details = show_details

    def format(self, record: logging.LogRecord) -> str:
        when = f"{self.formatTime(record, _DATE)}.{int(record.msecs):03d}"
        level, name = record.levelname, f"[{_short_name(record.name)}]"
        details = ""
        if self.show_details:
            details = f"[TID:{threading.get_native_id()} PID:{record.process}] "
        if self.colours:
            colour = _LEVEL_COLOURS.get(record.levelno, "")
            when, level = f"{_GREY}{when}{_RESET}", f"{colour}{level}{_RESET}"
            name = f"{_NAME}{name}{_RESET}"
        line = f"{when}{_SEP}{details}{level}{_SEP}{name}{_SEP}{record.getMessage()}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per record: timestamp, level, logger, message, and every
    field passed with ``extra=``."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "timestamp": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        data.update((k, v) for k, v in vars(record).items() if k not in _STANDARD)
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def init_default_logger(
    log_level: int | str = logging.INFO,
    *,
    output_file: str | os.PathLike[str] | None = None,
    file_log_level: int | str | None = None,
    use_colors: bool = True,
    show_details: bool = False,
    style: str = "modern",
    clear_handlers: bool = False,
    logger_name: str | None = None,
    structured_logging: bool = False,
    structured_file: str | os.PathLike[str] | None = None,
) -> logging.Logger:
    """Configure the root logger (or ``logger_name``) as AsyncFlow's helper does:
    console lines on stdout at ``log_level``, optionally a plain-text file
    (``output_file`` at ``file_log_level``) and a JSON-lines file
    (``structured_logging``; ``structured_file`` defaults to ``output_file`` with a
    ``.json`` suffix, else ``radical.asyncflow.logs.json``). ``style`` is accepted
    for compatibility (there is one style)."""
    del style
    logger = logging.getLogger(logger_name)
    if clear_handlers:
        logger.handlers.clear()
    stream: TextIO = sys.stdout
    console = logging.StreamHandler(stream)
    console.setLevel(log_level)
    console.setFormatter(
        ConsoleFormatter(colours=use_colors and _is_terminal(stream), show_details=show_details)
    )
    logger.addHandler(console)
    file_level = log_level if file_log_level is None else file_log_level
    if output_file is not None:
        plain = ConsoleFormatter(colours=False, show_details=show_details)
        logger.addHandler(_file_handler(output_file, file_level, plain))
    if structured_logging:
        if structured_file is None:
            structured_file = (
                os.path.splitext(os.fspath(output_file))[0] + ".json"
                if output_file is not None
                else "radical.asyncflow.logs.json"
            )
        logger.addHandler(_file_handler(structured_file, file_level, JsonFormatter()))
    # The handlers filter by level; the root logger passes everything on to them. A
    # named logger at NOTSET would defer to the root's WARNING: it gets the lowest.
    if logger_name is None:
        logger.setLevel(logging.NOTSET)
    else:
        logger.setLevel(min(_level(log_level), _level(file_level)))
    logging.captureWarnings(True)
    return logger


def _level(level: int | str) -> int:
    if isinstance(level, int):
        return level
    return logging.getLevelNamesMapping().get(level.upper(), logging.INFO)


def _file_handler(
    path: str | os.PathLike[str], level: int | str, formatter: logging.Formatter
) -> logging.Handler:
    directory = os.path.dirname(os.fspath(path))
    if directory:
        os.makedirs(directory, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setLevel(level)
    handler.setFormatter(formatter)
    return handler


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


def get_logger(name: str | None = None, level: int | str = logging.INFO) -> logging.Logger:
    """``logging.getLogger(name)``, configuring logging first if nothing has."""
    if not logging.getLogger().handlers:
        init_default_logger(level, logger_name=name)
    return logging.getLogger(name)


class StructuredLogger:
    """A logger whose ``info(msg, **fields)`` (and the other levels) records
    ``fields`` as structured data (``extra=``); everything else is delegated."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def _log(self, level: int, message: str, fields: dict[str, Any]) -> None:
        self._logger.log(level, message, extra=fields or None)

    def debug(self, message: str, **fields: Any) -> None:
        self._log(logging.DEBUG, message, fields)

    def info(self, message: str, **fields: Any) -> None:
        self._log(logging.INFO, message, fields)

    def warning(self, message: str, **fields: Any) -> None:
        self._log(logging.WARNING, message, fields)

    def error(self, message: str, **fields: Any) -> None:
        self._log(logging.ERROR, message, fields)

    def critical(self, message: str, **fields: Any) -> None:
        self._log(logging.CRITICAL, message, fields)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._logger, name)


def get_structured_logger(
    name: str | None = None, level: int | str = logging.INFO
) -> StructuredLogger:
    """A :class:`StructuredLogger`; configures JSON logging for ``name`` first when
    that logger has no handler yet."""
    logger = logging.getLogger(name)
    if not logger.handlers:
        init_default_logger(level, logger_name=name, structured_logging=True)
    return StructuredLogger(logger)
