"""Shared fixtures."""

from __future__ import annotations

# Imported up front: CPython 3.11.7 can corrupt its AST recursion counter while
# logging a never-retrieved future exception in a finalizer, which then breaks a
# *later* first import under pytest's assertion rewriting (hypothesis' summary hook).
import hypothesis  # noqa: F401
