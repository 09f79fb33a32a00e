"""InputFile/OutputFile and AsyncFlow's data-linking hooks on adapter backends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from asyncflow_style_backend import AsyncFlowStyleBackend

from asyncflow_graph import InputFile, OutputFile, WorkflowEngine


class LinkingBackend(AsyncFlowStyleBackend):
    supports_implicit_data_linking = True
    supports_explicit_data_linking = True

    def __init__(self, name: str = "linking") -> None:
        super().__init__(name=name)
        self.links: list[tuple[str, Any, Any, str | None]] = []

    def link_implicit_data_deps(self, src_task: dict, dst_task: dict) -> None:
        self.links.append(("implicit", src_task["name"], dst_task["name"], None))

    def link_explicit_data_deps(self, src_task=None, dst_task=None, file_name=None, file_path=None):
        src = src_task["name"] if src_task else None
        self.links.append(("explicit", src, dst_task["name"], file_name))
        return {"target": f"{dst_task['uid']}/{file_name}"}


def test_file_objects(tmp_path: Path) -> None:
    existing = tmp_path / "in.csv"
    existing.write_text("x")
    assert InputFile(existing).filepath == str(existing.resolve())
    assert InputFile("produced.csv").produced_by_task
    assert InputFile("https://example.org/a/b.txt").filename == "b.txt"
    assert OutputFile("out/result.txt").filename == "result.txt"
    for bad in ("", "dir/"):
        with pytest.raises(ValueError):
            OutputFile(bad)


async def test_linking_hooks_follow_asyncflow_rules(tmp_path: Path) -> None:
    staged = tmp_path / "raw.csv"
    staged.write_text("1,2")
    backend = LinkingBackend()
    flow = await WorkflowEngine.create(backend=backend, work_dir=tmp_path)
    try:

        @flow.function_task
        async def produce(out):
            return "made"

        @flow.function_task
        async def plain():
            return 1

        @flow.function_task
        async def consume(prev, other, data, raw):
            return (prev, other)

        made = produce(OutputFile("data.bin"))
        one = plain()
        result = consume(made, one, InputFile("data.bin"), InputFile(staged))
        assert await result == ("made", 1)
        assert result.task["metadata"]["input_files"] == ["data.bin", "raw.csv"]
        assert made.task["metadata"]["output_files"] == ["data.bin"]
    finally:
        await flow.shutdown()
    assert ("explicit", "produce", "consume", "data.bin") in backend.links
    assert ("implicit", "plain", "consume", None) in backend.links
    assert ("explicit", None, "consume", "raw.csv") in backend.links
    assert backend._work_dir == str(tmp_path / flow.uid)


async def test_implicit_linking_can_be_disabled(tmp_path: Path) -> None:
    backend = LinkingBackend()
    flow = await WorkflowEngine.create(backend=backend, work_dir=tmp_path, implicit_data=False)
    try:

        @flow.function_task
        async def a():
            return 1

        @flow.function_task
        async def b(x):
            return x + 1

        assert await b(a()) == 2
    finally:
        await flow.shutdown()
    assert not [link for link in backend.links if link[0] == "implicit"]
