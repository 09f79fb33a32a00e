"""A progress bar of a run: tasks done / total per backend.

On a terminal it is a live ``rich`` display redrawn by rich's own refresh thread
(about eight times a second), so the executor's hooks only bump ints. Anywhere else
(a pipe, a CI log, pytest's capture) nothing is drawn while the run goes and one
summary line is written at the end. In a Jupyter notebook it is an HTML display
(one bar per backend) updated a few times a second and once more at the end. Blocks
(they run on the engine itself) are not counted: their member tasks are.

* ``compute(..., progress=True)`` (the script face) uses it.
* ``with show_progress(flow): ...`` (or ``async with``) around awaited work.
* ``await flow.start_telemetry(progress=True)`` until ``stop()``.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..compiler.plan import ENGINE_BACKEND, Plan, Unit
from ..executor.events import RunObserver

if TYPE_CHECKING:
    from ..executor.events import ObservedEngine

__all__ = ["ProgressBar", "show_progress"]

PREFIX = "[asyncflow_graph]"


class ProgressBar(RunObserver):
    """Counts tasks per backend from the run hooks and shows them.

    ``live``: None = a live display when stderr is a terminal and rich is
    installed; True/False force it. ``console``: a ``rich.console.Console`` to draw
    on (default: stderr). Use it as a (sync or async) context manager with an
    ``engine`` to attach it for the length of a block."""

    def __init__(
        self,
        engine: ObservedEngine | None = None,
        *,
        live: bool | None = None,
        console: Any = None,
        title: str = "asyncflow_graph",
    ) -> None:
        self.engine = engine
        self.title = title
        self.total: dict[str, int] = {}
        self.finished: dict[str, int] = {}
        self.failed: dict[str, int] = {}
        self.cancelled: dict[str, int] = {}
        self._backend_of: dict[str, str] = {}
        self._console = console
        self._want_live = live
        self._live: Any = None
        self._display: Any = None  # a Jupyter display handle
        self._shown_at = 0.0
        self._t0 = time.monotonic()
        self._closed = False

    # -- hooks ---------------------------------------------------------------------------

    def on_plan(self, plan: Plan) -> None:
        backend_of, total = self._backend_of, self.total
        for p in plan.partitions:
            if p.backend == ENGINE_BACKEND:
                continue
            n = 0
            for u in p.units:
                for k in u.keys:
                    backend_of[k] = p.backend
                n += len(u.keys)
            if p.backend not in total:
                self.finished[p.backend] = self.failed[p.backend] = 0
                self.cancelled[p.backend] = 0
                total[p.backend] = 0
            total[p.backend] += n

    def on_submitted(self, backend: str, units: Sequence[Unit]) -> None:
        pass

    def on_done(self, key: str, value: Any) -> None:
        backend = self._backend_of.pop(key, None)
        if backend is not None:
            self.finished[backend] += 1
            if self._display is not None:
                self._refresh_display()

    def on_failed(self, key: str, exc: BaseException) -> None:
        backend = self._backend_of.pop(key, None)
        if backend is not None:
            self.finished[backend] += 1
            self.failed[backend] += 1
            if self._display is not None:
                self._refresh_display()

    def on_cancelled(self, key: str, msg: str | None) -> None:
        backend = self._backend_of.pop(key, None)
        if backend is not None:
            self.finished[backend] += 1
            self.cancelled[backend] += 1
            if self._display is not None:
                self._refresh_display()

    # -- display -------------------------------------------------------------------------

    def line(self) -> str:
        """One-line summary: ``[asyncflow_graph] 7/9 (cpu 4/4, gpu 3/5)``."""
        total, finished = dict(self.total), dict(self.finished)
        parts = ", ".join(f"{b} {finished[b]}/{n}" for b, n in total.items())
        text = f"{PREFIX} {sum(finished.values())}/{sum(total.values())} ({parts})"
        failed, cancelled = sum(self.failed.values()), sum(self.cancelled.values())
        if failed or cancelled:
            text += f" - {failed} failed, {cancelled} cancelled"
        return text

    def __repr__(self) -> str:
        return self.line()

    def _repr_html_(self) -> str:
        """Jupyter: one ``<progress>`` bar per backend."""
        from html import escape

        total, finished = dict(self.total), dict(self.finished)
        failed, cancelled = dict(self.failed), dict(self.cancelled)
        rows = [f"<b>{escape(self.title)}</b> {time.monotonic() - self._t0:.1f} s"]
        for b, n in total.items():
            done = finished.get(b, 0)
            notes = "".join(
                f", {count} {what}"
                for count, what in (
                    (failed.get(b, 0), "failed"),
                    (cancelled.get(b, 0), "cancelled"),
                )
                if count
            )
            rows.append(
                f'<code>{escape(b)}</code> <progress value="{done}" max="{max(n, 1)}"></progress>'
                f" {done}/{n}{notes}"
            )
        return "<div>" + "<br>".join(rows) + "</div>"

    def _refresh_display(self) -> None:
        now = time.monotonic()
        if now - self._shown_at >= 0.25:  # a kernel message per update: a few a second
            self._shown_at = now
            self._display.update(self)

    def __rich__(self) -> Any:
        """The live view: one row per backend (rich calls this from its thread;
        every dict is copied first, in one C-level step)."""
        from rich.progress_bar import ProgressBar as Bar
        from rich.table import Table

        total, finished = dict(self.total), dict(self.finished)
        failed, cancelled = dict(self.failed), dict(self.cancelled)
        elapsed = time.monotonic() - self._t0
        table = Table.grid(padding=(0, 1))
        table.add_row(f"[bold]{self.title}[/]", "", f"{elapsed:6.1f} s")
        for b, n in total.items():
            done = finished.get(b, 0)
            notes = []
            if failed.get(b):
                notes.append(f"[red]{failed[b]} failed[/]")
            if cancelled.get(b):
                notes.append(f"[yellow]{cancelled[b]} cancelled[/]")
            table.add_row(
                f"[cyan]{b}[/]",
                Bar(total=max(n, 1), completed=done, width=40),
                f"{done}/{n} " + " ".join(notes),
            )
        return table

    def start(self) -> None:
        """Start the live display (if there is one to show)."""
        live = self._want_live
        console = self._console
        if live is None and console is None:
            self._display = _notebook_display(self)
            if self._display is not None:
                return
        if live is None or live:
            try:
                from rich.console import Console
                from rich.live import Live
            except ImportError:  # the telemetry extra is not installed
                if live or sys.stderr.isatty():  # a live bar was wanted: say how to get one
                    logging.getLogger("asyncflow_graph").warning(
                        "a live progress bar needs the 'rich' package: pip install "
                        "'asyncflow-graph[telemetry]' (or pip install rich); a summary "
                        "line is written at the end instead"
                    )
                return
            console = console or Console(stderr=True)
            if live is None:
                live = console.is_terminal
            if live:
                self._live = Live(self, console=console, refresh_per_second=8, transient=False)
                self._live.start()

    def close(self) -> None:
        """Stop the display; without a live one, write the summary line."""
        if self._closed:
            return
        self._closed = True
        if self._live is not None:
            self._live.refresh()
            self._live.stop()
        elif self._display is not None:
            self._display.update(self)
        else:
            sys.stderr.write(self.line() + "\n")
            sys.stderr.flush()

    # -- context manager -----------------------------------------------------------------

    def __enter__(self) -> ProgressBar:
        if self.engine is not None:
            self.engine.add_observer(self)
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.engine is not None:
            self.engine.remove_observer(self)
        self.close()

    async def __aenter__(self) -> ProgressBar:
        return self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__(*exc)


def _notebook_display(bar: ProgressBar) -> Any:
    """An updatable display of ``bar`` when running in a Jupyter kernel, else None
    (IPython is never imported here: a kernel has imported it already)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None or type(shell).__name__ != "ZMQInteractiveShell":
        return None
    import importlib

    display: Any = importlib.import_module("IPython.display").display
    return display(bar, display_id=True)


def show_progress(
    engine: ObservedEngine, *, live: bool | None = None, console: Any = None
) -> ProgressBar:
    """A progress bar for ``engine``'s tasks while a ``with`` block runs::

    async with show_progress(flow):
        await asyncio.gather(*handles)
    """
    return ProgressBar(engine, live=live, console=console)
