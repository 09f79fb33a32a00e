"""The executor: a pure run-state machine and the async driver around it."""

from .driver import Executor
from .events import RunObserver
from .state import RunState

__all__ = ["Executor", "RunObserver", "RunState"]
