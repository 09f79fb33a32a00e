"""The executor: a pure run-state machine and the async driver around it.

* :mod:`.state` — :class:`RunState`, events in, :mod:`.instructions` out;
* :mod:`.driver` — :class:`Executor`, the thin async shell that carries them out;
* :mod:`.intake` — :class:`Intake`, tasks created but not yet compiled;
* :mod:`.observers`, :mod:`.events`, :mod:`.view` — how a run is observed;
* :mod:`.builders`, :mod:`.remote` — executable/prompt builders, remote values.
"""

from .driver import Executor
from .events import ObservedEngine, RunObserver, RunView
from .intake import Intake
from .state import RunState

__all__ = ["Executor", "Intake", "ObservedEngine", "RunObserver", "RunState", "RunView"]
