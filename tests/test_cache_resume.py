"""Durable campaigns, end to end in real processes: a campaign killed mid-run with
SIGKILL resumes and reruns exactly the tasks that had not finished; editing a
helper in another module reruns what calls it, editing a comment reruns nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from procs import ROOT, run_python

HELPERS = """
def scale(x):
    return x * 10
"""

CAMPAIGN = '''
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import asyncflow_graph as afg
from asyncflow_graph.cache.store import Store
from helpers import scale

HERE = os.path.dirname(os.path.abspath(__file__))
N = 12


def wait_for_entries(n):
    """Test hook: hold until the n results before this task are on disk."""
    store = Store(os.path.join(HERE, ".asyncflow-cache"))
    deadline = time.monotonic() + 30
    while len(store.entries()) < n:
        assert time.monotonic() < deadline, "results never reached the cache"
        time.sleep(0.01)


@afg.function_task(cache=True)
def simulate(i):
    with open(os.path.join(HERE, "ran.log"), "a") as f:
        f.write(f"simulate {i}\\n")
    # read here, not into a global: a global constant is part of the key
    if i == int(os.environ.get("KILL_AT", "-1")):
        wait_for_entries(i)
        open(os.path.join(HERE, "started"), "w").close()
        time.sleep(600)  # killed here
    value = scale(i)  # a comment
    return value


@afg.function_task(cache=True)
def summarize(*xs):
    with open(os.path.join(HERE, "ran.log"), "a") as f:
        f.write("summarize\\n")
    return sum(xs)


if __name__ == "__main__":
    total = summarize(*[simulate(i) for i in range(N)])
    # one worker thread: the simulations run one after the other, in order
    backend = afg.LocalExecutionBackend(ThreadPoolExecutor(max_workers=1))
    print(afg.compute(total, backends=[backend])[0])
'''


def _setup(tmp_path: Path) -> None:
    (tmp_path / "helpers.py").write_text(HELPERS)
    (tmp_path / "campaign.py").write_text(CAMPAIGN)


def _ran(tmp_path: Path) -> list[str]:
    log = tmp_path / "ran.log"
    lines = log.read_text().splitlines() if log.exists() else []
    log.unlink(missing_ok=True)
    return lines


def _run(tmp_path: Path) -> str:
    # -B: no .pyc files, so an edit within the same second is never masked by one
    done = run_python(["-B", "campaign.py"], tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_killed_campaign_resumes_and_reruns_exactly_the_unfinished_tasks(tmp_path):
    _setup(tmp_path)
    env = dict(os.environ, KILL_AT="5", PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-B", "campaign.py"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "started").exists():
            assert proc.poll() is None, proc.communicate()[1].decode()
            assert time.monotonic() < deadline, "the campaign never reached task 5"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)  # a node failure: no clean-up of any kind
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert _ran(tmp_path) == [f"simulate {i}" for i in range(6)]

    assert _run(tmp_path) == str(sum(i * 10 for i in range(12)))
    # exactly the unfinished: task 5 (killed) and the six never started, then the summary
    assert _ran(tmp_path) == [f"simulate {i}" for i in range(5, 12)] + ["summarize"]
    assert _run(tmp_path) == str(sum(i * 10 for i in range(12)))
    assert _ran(tmp_path) == []  # everything from the cache now


def test_edits_rerun_what_they_change_and_nothing_else(tmp_path):
    _setup(tmp_path)
    expected = str(sum(i * 10 for i in range(12)))
    assert _run(tmp_path) == expected
    assert len(_ran(tmp_path)) == 13

    # a comment and a renamed local in the task module: nothing reruns
    src = (tmp_path / "campaign.py").read_text()
    src = src.replace("# a comment", "# another comment, longer").replace("value", "result")
    (tmp_path / "campaign.py").write_text("# header comment\n" + src)
    assert _run(tmp_path) == expected
    assert _ran(tmp_path) == []

    # the helper, in another module, changes: every task that calls it reruns, and the
    # summary, whose inputs changed
    (tmp_path / "helpers.py").write_text(HELPERS.replace("x * 10", "x * 100"))
    assert _run(tmp_path) == str(sum(i * 100 for i in range(12)))
    assert sorted(_ran(tmp_path)) == sorted([f"simulate {i}" for i in range(12)] + ["summarize"])

    # back to the old helper: the old entries are still there
    (tmp_path / "helpers.py").write_text(HELPERS)
    assert _run(tmp_path) == expected
    assert _ran(tmp_path) == []

    listing = run_python(["-m", "asyncflow_graph", "cache", "stats"], tmp_path)
    assert listing.returncode == 0 and "entries: 26" in listing.stdout
    cleared = run_python(["-m", "asyncflow_graph", "cache", "clear"], tmp_path)
    assert "removed 26 entries" in cleared.stdout
