"""Cache keys: code tokens (what changes a function's key and what does not) and
value tokens (content, not identity)."""

from __future__ import annotations

import functools
import importlib
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from asyncflow_graph.cache.code import CodeTokens, library_of
from asyncflow_graph.cache.keys import KeyMaker
from asyncflow_graph.cache.values import Untokenizable, ValueTokens
from asyncflow_graph.data import InputFile
from asyncflow_graph.spec import Node, Ref, TaskKind, TaskOptions

HELPER = """
def scale(x):
    return x * 2
"""

TASK = """
import helper_mod
from helper_mod import scale

OFFSET = 3

def task(x, y=1):
    {doc}
    {comment}
    {local} = scale(x) + OFFSET
    return helper_mod.scale({local}) + y
"""


def _token_of(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, task_src: str, helper: str) -> str:
    """The token of ``task`` from freshly written and (re)imported modules."""
    (tmp_path / "helper_mod.py").write_text(helper)
    (tmp_path / "task_mod.py").write_text(task_src)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    for name in ("helper_mod", "task_mod"):
        sys.modules.pop(name, None)
    module = importlib.import_module("task_mod")
    return CodeTokens().token(module.task)


def _task(doc: str = "", comment: str = "", local: str = "tmp") -> str:
    return textwrap.dedent(TASK).format(doc=doc, comment=comment, local=local)


def test_comment_docstring_and_renamed_local_keep_the_token(tmp_path, monkeypatch):
    base = _token_of(tmp_path, monkeypatch, _task(), HELPER)
    assert _token_of(tmp_path, monkeypatch, _task(comment="# a new comment"), HELPER) == base
    assert _token_of(tmp_path, monkeypatch, _task(doc='"""Now documented."""'), HELPER) == base
    assert _token_of(tmp_path, monkeypatch, _task(local="renamed"), HELPER) == base
    # blank lines above the function move every line number
    assert _token_of(tmp_path, monkeypatch, "\n\n\n" + _task(), HELPER) == base


def test_changed_helper_in_another_module_changes_the_token(tmp_path, monkeypatch):
    base = _token_of(tmp_path, monkeypatch, _task(), HELPER)
    changed = HELPER.replace("x * 2", "x * 3")
    assert _token_of(tmp_path, monkeypatch, _task(), changed) != base


def test_changed_code_and_constant_global_change_the_token(tmp_path, monkeypatch):
    base = _token_of(tmp_path, monkeypatch, _task(), HELPER)
    assert _token_of(tmp_path, monkeypatch, _task().replace("+ y", "- y"), HELPER) != base
    assert (
        _token_of(tmp_path, monkeypatch, _task().replace("OFFSET = 3", "OFFSET = 4"), HELPER)
        != base
    )
    # an argument's name is part of the interface (keyword calls bind by it)
    assert (
        _token_of(
            tmp_path, monkeypatch, _task().replace("y=1", "z=1").replace("+ y", "+ z"), HELPER
        )
        != base
    )
    assert _token_of(tmp_path, monkeypatch, _task().replace("y=1", "y=2"), HELPER) != base


REGISTRY: list[Any] = []


def appends_to_registry(x):
    REGISTRY.append(x)
    return x


def test_a_mutable_global_enters_by_type_not_content():
    before = CodeTokens().token(appends_to_registry)
    REGISTRY.append("something")
    try:
        assert CodeTokens().token(appends_to_registry) == before
    finally:
        REGISTRY.clear()


def _make_closure(factor):
    def inner(x):
        return x * factor

    return inner


class Model:
    def __init__(self, weight):
        self.weight = weight

    def predict(self, x):
        return x * self.weight


def test_closure_values_and_bound_objects_enter_by_value():
    tokens = CodeTokens()
    assert tokens.token(_make_closure(2)) != tokens.token(_make_closure(3))
    assert CodeTokens().token(_make_closure(2)) == CodeTokens().token(_make_closure(2))
    assert tokens.token(Model(1).predict) != tokens.token(Model(2).predict)
    assert CodeTokens().token(Model(1).predict) == CodeTokens().token(Model(1).predict)
    assert tokens.token(functools.partial(_make_closure, 1)) != tokens.token(
        functools.partial(_make_closure, 2)
    )


def test_library_functions_enter_by_package_version():
    assert library_of("json") == f"python=={sys.version_info[0]}.{sys.version_info[1]}"
    assert library_of("numpy.linalg") == f"numpy=={np.__version__}"
    assert library_of(__name__) is None  # this test module is the user's code
    assert CodeTokens().token(json.dumps).startswith("lib:python==")
    assert f"numpy=={np.__version__}" in CodeTokens().token(np.sum)


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def test_recursive_functions_terminate():
    assert CodeTokens().token(fib) == CodeTokens().token(fib)


# -- values ------------------------------------------------------------------------------


def _v() -> ValueTokens:
    return CodeTokens().values


def test_equal_values_equal_tokens_other_types_other_tokens():
    v = _v()
    assert v.token({"a": 1, "b": [1, 2]}) == v.token({"b": [1, 2], "a": 1})
    assert v.token({1, 2, 3}) == v.token({3, 2, 1})
    distinct = [1, 1.0, True, "1", b"1", (1,), [1], None, 0, -0.0, 0.0]
    assert len({v.token(x) for x in distinct}) == len(distinct)
    assert v.token(([1], 2)) != v.token(([1, 2],))  # lengths keep the encoding unambiguous


@given(st.recursive(st.integers() | st.text() | st.floats(allow_nan=False) | st.none(),
                    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
                    max_leaves=30))  # fmt: skip
def test_token_is_deterministic_and_matches_equality(value):
    assert _v().token(value) == _v().token(json.loads(json.dumps(value)))


def test_numpy_by_content_dtype_and_shape():
    v = _v()
    a = np.arange(200_000, dtype=np.float64)
    assert v.token(a) == _v().token(a.copy())
    assert v.token(a) != v.token(a.astype(np.float32))
    assert v.token(a) != v.token(a.reshape(1000, 200))
    b = a.copy()
    b[-1] += 1
    assert v.token(a) != v.token(b)
    assert v.token(a[::2]) == v.token(np.ascontiguousarray(a[::2]))  # views hash their data


def test_large_buffers_are_memoized_per_object():
    v = _v()
    a = np.zeros(1 << 20)
    first = v.token(a)
    a[0] = 1  # mutating an argument after handing it over is documented as unsupported
    assert v.token(a) == first
    assert _v().token(a) != first


def test_files_by_content(tmp_path):
    path = tmp_path / "data.txt"
    path.write_text("one")
    v = _v()
    t1 = v.token(InputFile(path))
    assert v.token(path) != v.token(tmp_path / "other.txt")
    path.write_text("two")  # new size: the memo (keyed on size, mtime, inode) misses
    assert v.token(InputFile(path)) != t1


def test_unpicklable_values_have_no_token():
    import threading

    with pytest.raises(Untokenizable, match="lock"):
        _v().token(threading.Lock())


def test_refs_stand_for_upstream_tokens():
    v = _v()
    assert v.token([Ref("a")], {"a": b"x"}) == v.token([Ref("b")], {"b": b"x"})
    assert v.token([Ref("a")], {"a": b"x"}) != v.token([Ref("a")], {"a": b"y"})
    with pytest.raises(Untokenizable):
        v.token(Ref("a"), {})


# -- keys --------------------------------------------------------------------------------


def _node(func, args=(), kwargs=None, **options) -> Node:
    kwargs = kwargs or {}
    deps = tuple(a.key for a in args if type(a) is Ref)
    return Node("task.1", func.__name__, TaskKind.FUNCTION, func, tuple(args), kwargs, deps,
                TaskOptions(**options))  # fmt: skip


def simulate(x, verbose=False):
    return x


def test_cache_version_and_cache_ignore():
    keys = KeyMaker()
    base = keys.function(_node(simulate, (1,)), {})
    assert keys.function(_node(simulate, (2,)), {}) != base
    assert keys.function(_node(simulate, (1,), cache_version=2), {}) != base
    quiet = keys.function(_node(simulate, (1,), {"verbose": False}, cache_ignore="verbose"), {})
    loud = keys.function(_node(simulate, (1,), {"verbose": True}, cache_ignore=("verbose",)), {})
    assert quiet == loud
    assert keys.function(_node(simulate, (1,), {"verbose": True}), {}) != base
