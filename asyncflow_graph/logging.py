"""Logging helpers with AsyncFlow's names; the engine logs to "asyncflow_graph"."""

from __future__ import annotations

import logging
import sys

__all__ = ["get_logger", "init_default_logger"]

_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def init_default_logger(
    log_level: int | str = logging.INFO,
    *,
    output_file: str | None = None,
    file_log_level: int | str | None = None,
    clear_handlers: bool = False,
    logger_name: str | None = None,
    **_ignored: object,
) -> logging.Logger:
    """Send the library's logs to stderr (and optionally a file)."""
    logger = logging.getLogger(logger_name or "asyncflow_graph")
    if clear_handlers:
        logger.handlers.clear()
    logger.setLevel(log_level)
    if not any(getattr(h, "_asyncflow_graph", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(_FORMAT))
        handler._asyncflow_graph = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    if output_file:
        fh = logging.FileHandler(output_file)
        fh.setLevel(file_log_level or log_level)
        fh.setFormatter(logging.Formatter(_FORMAT))
        logger.addHandler(fh)
    return logger


def get_logger(name: str | None = None, level: int | str = logging.INFO) -> logging.Logger:
    logger = logging.getLogger(name or "asyncflow_graph")
    logger.setLevel(level)
    return logger
