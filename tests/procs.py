"""Running Python in a child process with this checkout importable."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_python(
    args: Sequence[str], cwd: Path, *, timeout: float = 120, path: Sequence[Path] = ()
) -> subprocess.CompletedProcess[str]:
    """``python *args`` in ``cwd``, with ``path`` and the repository first on its
    ``PYTHONPATH``; output captured as text. Raises ``TimeoutExpired`` past ``timeout``."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    entries = [*map(str, path), str(ROOT), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in entries if p)
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
