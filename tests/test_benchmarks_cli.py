"""``python -m benchmarks`` writes to a results folder and leaves the tracked results alone
unless ``--update-tracked`` (what is measured is not tested here: benchmarks are ratios in
benchmarks/, never timed tests)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from procs import ROOT, run_python

TRACKED = [ROOT / "benchmarks" / "RESULTS.md", ROOT / "benchmarks" / "results.png"]


def test_a_run_writes_its_folder_and_not_the_tracked_results(tmp_path: Path) -> None:
    before = [p.read_bytes() for p in TRACKED]
    out = tmp_path / "run"
    args = ["-m", "benchmarks", "--quick", "--workloads", "W2", "--systems", "asyncio-floor"]
    proc = run_python([*args, "--out-dir", str(out)], tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert [p.read_bytes() for p in TRACKED] == before
    assert "unchanged (--update-tracked)" in proc.stderr
    text = (out / "RESULTS.md").read_text()
    assert "Mode: --quick; up to 1 runs per cell" in text and "| asyncio-floor |" in text
    (cell,) = json.loads((out / "results.json").read_text())
    assert (cell["workload"], cell["n"], cell["runs"][0]["status"]) == ("W2", 100, "ok")


def test_update_tracked_copies_results_and_chart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks import runner

    repo = tmp_path / "repo"
    (repo / "benchmarks").mkdir(parents=True)
    (repo / "docs" / "img").mkdir(parents=True)
    monkeypatch.setattr(runner, "BENCH_DIR", repo / "benchmarks")
    monkeypatch.setattr(runner, "REPO_ROOT", repo)
    run = tmp_path / "run"
    run.mkdir()
    written = [run / "RESULTS.md", run / "results.json", run / "results.png"]
    for i, path in enumerate(written):
        path.write_text(f"content {i}")
    copies = runner.update_tracked(written)
    assert sorted(copies) == sorted(
        [
            repo / "benchmarks" / "RESULTS.md",
            repo / "benchmarks" / "results.png",
            repo / "docs" / "img" / "results.png",
        ]
    )
    assert (repo / "docs" / "img" / "results.png").read_text() == "content 2"
    assert not (repo / "benchmarks" / "results.json").exists()
