"""SIGTERM/SIGINT on the main thread shut engines down gracefully."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

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
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT.replace("{name}", name)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "states: ['CANCELLED', 'CANCELLED']" in proc.stdout
    assert "cancelled: True" in proc.stdout
    assert "backends: ['SHUTDOWN', 'SHUTDOWN']" in proc.stdout
    assert f"received SIG{name}" in proc.stderr
    assert signal.SIGTERM  # the parent is untouched
