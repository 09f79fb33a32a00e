"""SIGTERM/SIGINT on the main thread shut engines down gracefully."""

from __future__ import annotations

import signal
import sys
import textwrap
from pathlib import Path

import pytest
from procs import run_python

SCRIPT = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from asyncflow_graph import WorkflowEngine, LocalExecutionBackend

    async def main():
        flows = [await WorkflowEngine.create(backend=LocalExecutionBackend(name=f"b{i}"))
                 for i in range(2)]
        started = asyncio.Event()
        handles = []
        for flow in flows:
            @flow.function_task
            async def forever():
                started.set()
                await asyncio.Event().wait()
            handles.append(forever())
        await started.wait()
        os.kill(os.getpid(), signal.SIG{name})
        results = await asyncio.gather(*handles, return_exceptions=True)
        print("states:", [h.state for h in handles])
        print("cancelled:", all(isinstance(r, asyncio.CancelledError) for r in results))
        # Joins the shutdown the signal started (shutdown is idempotent).
        await asyncio.gather(*(f.shutdown() for f in flows))
        print("backends:", [f.backend.state() for f in flows])

    asyncio.run(main())
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("name", ["TERM", "INT"])
def test_signal_shuts_every_engine_down(name: str, tmp_path: Path) -> None:
    proc = run_python(["-c", SCRIPT.replace("{name}", name)], tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "states: ['CANCELLED', 'CANCELLED']" in proc.stdout
    assert "cancelled: True" in proc.stdout
    assert "backends: ['SHUTDOWN', 'SHUTDOWN']" in proc.stdout
    assert f"received SIG{name}" in proc.stderr
    assert signal.SIGTERM  # the parent is untouched
