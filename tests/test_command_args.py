"""``shell=False``: a value from upstream substituted into a command string stays
one argument of the real child process (never split at its spaces, never changed
by its quotes)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from asyncflow_graph.executor.builders import split_command

NO_SHELL = {"shell": False}


@pytest.mark.parametrize("name", ["a b.txt", "it's here.txt", 'say "hi".txt', "tab\there.txt"])
async def test_an_upstream_file_name_is_one_argument(flow, tmp_path, name):
    @flow.function_task
    def make(directory):
        path = Path(directory) / name
        path.write_text("12345")
        return str(path)

    @flow.executable_task
    def count(path):
        return f"wc -c {path}"

    @flow.executable_task
    def count_quoted(path):  # quoting it as for a shell still works
        return f"wc -c '{path}'" if "'" not in path else f'wc -c "{path}"'

    path = make(str(tmp_path))
    out = await asyncio.wait_for(count(path, task_description=NO_SHELL), 30)
    assert out == f"5 {tmp_path / name}\n"  # one file of 5 bytes, under its own name
    if '"' not in name:
        quoted = await asyncio.wait_for(count_quoted(path, task_description=NO_SHELL), 30)
        assert quoted == out


async def test_literal_text_is_still_split_as_a_shell_would(flow):
    @flow.function_task
    def word():
        return "two words"

    @flow.executable_task
    def echo(w):
        return f"printf '%s|' {w} 'x y' z"

    assert await asyncio.wait_for(echo(word(), task_description=NO_SHELL), 30) == "two words|x y|z|"


def test_split_command_keeps_each_upstream_value_whole():
    assert split_command("cp a b", ["a"]) == ("cp", "a", "b")
    assert split_command("cp 'x y' --to=x y/z", ["x y"]) == ("cp", "x y", "--to=x y/z")
    assert split_command("cat it's", ["it's"]) == ("cat", "it's")
    assert split_command("cat a b c", ["a b", "a b c"]) == ("cat", "a b c")
    assert split_command("cat a b", []) == ("cat", "a", "b")
