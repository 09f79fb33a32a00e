"""A script without a main guard that starts an embedded Dask cluster with worker
processes gets the real cause and the fix, not "Nanny failed to start"."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
from procs import run_python

from asyncflow_graph.backends.dask_guard import check_main_guard
from asyncflow_graph.errors import ConfigurationError

SCRIPT = """\
import asyncio
from asyncflow_graph import WorkflowEngine
from asyncflow_graph.backends import DaskExecutionBackend

async def main():
    flow = await WorkflowEngine.create(backend=DaskExecutionBackend(n_workers=1))
    await flow.shutdown()

{run}
"""


def test_unguarded_script_is_told_the_cause_and_the_fix(tmp_path: Path) -> None:
    script = tmp_path / "pipeline.py"
    script.write_text(SCRIPT.format(run="asyncio.run(main())"))
    proc = run_python([str(script)], tmp_path, timeout=60)
    assert proc.returncode == 1
    assert "ConfigurationError" in proc.stderr
    assert "has no main guard" in proc.stderr and 'if __name__ == "__main__":' in proc.stderr
    assert "Nanny failed" not in proc.stderr


def _as_main(monkeypatch: pytest.MonkeyPatch, path: Path | None) -> None:
    main = types.ModuleType("__main__")
    if path is not None:
        main.__file__ = str(path)
    monkeypatch.setitem(sys.modules, "__main__", main)


def test_guarded_scripts_and_sessions_without_a_file_pass(tmp_path, monkeypatch) -> None:
    guarded = tmp_path / "guarded.py"
    guarded.write_text(SCRIPT.format(run='if __name__ == "__main__":\n    asyncio.run(main())'))
    _as_main(monkeypatch, guarded)
    check_main_guard("dask")
    _as_main(monkeypatch, None)  # python -c, a REPL, a notebook kernel
    check_main_guard("dask")


def test_unguarded_check_names_the_script(tmp_path, monkeypatch) -> None:
    bare = tmp_path / "bare.py"
    bare.write_text(SCRIPT.format(run="asyncio.run(main())"))
    _as_main(monkeypatch, bare)
    with pytest.raises(ConfigurationError, match="bare.py"):
        check_main_guard("dask")
