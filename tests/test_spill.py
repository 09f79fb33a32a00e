"""Large values to and from a process pool: pickled to a temporary file by the
pool's feeder thread (``os.write`` releases the GIL), never copied in memory while
the event loop's thread waits for the GIL; the worker removes what it read."""

from __future__ import annotations

import os
import pickle
import tempfile
from concurrent.futures import ProcessPoolExecutor

import pytest

from asyncflow_graph import LocalExecutionBackend, WorkflowEngine
from asyncflow_graph.backends import spill
from asyncflow_graph.backends.pools import _Shipping
from asyncflow_graph.spec import Call

pytestmark = pytest.mark.timeout(60)

MB = 2**20


def _spilled(folder: str) -> list[str]:
    return [n for n in os.listdir(folder) if n.startswith("asyncflow-value-")]


def test_a_small_pickle_stays_in_memory_and_a_large_one_goes_to_a_file(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    small = spill.dump({"x": b"a" * 100})
    assert small.path is None and spill.load(small) == {"x": b"a" * 100}
    value = (bytearray(os.urandom(2 * MB)), memoryview(b"m" * 70_000).tobytes(), "tail")
    large = spill.dump(value, limit=MB)
    assert large.path is not None and os.path.getsize(large.path) > 2 * MB
    assert len(pickle.dumps(large)) < 1_000  # what travels through the pool's pipe
    assert spill.load(large) == value
    assert _spilled(str(tmp_path)) == []  # read once, then removed
    large.discard()  # again: harmless


def test_a_value_that_cannot_be_pickled_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(TypeError):
        spill.dump([os.urandom(2 * MB), _Unpicklable()], limit=MB)
    assert _spilled(str(tmp_path)) == []


def test_a_full_temporary_directory_falls_back_to_memory(tmp_path, monkeypatch, caplog):
    """No room to spill (ENOSPC after some bytes): the value is pickled in memory after
    all, with one warning naming the fix; nothing is left on disk."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    real_write, room = os.write, [3 * MB]

    def write(fd: int, data) -> int:
        if room[0] <= 0:
            raise OSError(28, "No space left on device")
        n = real_write(fd, bytes(memoryview(data)[: min(len(data), room[0], MB)]))
        room[0] -= n
        return n

    monkeypatch.setattr(spill.os, "write", write)
    value = [os.urandom(2 * MB), os.urandom(2 * MB), os.urandom(2 * MB)]
    with caplog.at_level("WARNING", logger="asyncflow_graph"):
        spilled = spill.dump(value, limit=MB)
    assert spilled.path is None and spill.load(spilled) == value
    assert "set TMPDIR" in caplog.text and _spilled(str(tmp_path)) == []


class _Unpicklable:
    def __reduce__(self):
        raise TypeError("no pickling for you")


def test_a_call_with_a_large_argument_travels_as_a_few_bytes(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    call = Call("task.000001", _length, (b"x" * (8 * MB),), {}, (), False)
    shipping = _Shipping([call], {}, frozenset())
    message = pickle.dumps(shipping)  # what the pool's feeder thread writes to the pipe
    assert len(message) < 10_000 and shipping.sent and len(_spilled(str(tmp_path))) == 1
    calls, _inputs, _stop = pickle.loads(message)  # the worker's side
    assert calls[0].args[0] == b"x" * (8 * MB) and _spilled(str(tmp_path)) == []


def _length(data: bytes) -> int:
    return len(data)


def _make(n: int) -> bytes:
    return b"r" * n


async def test_large_arguments_and_results_through_a_real_pool(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # forked workers inherit it
    pool = ProcessPoolExecutor(2)
    flow = await WorkflowEngine.create(backend=LocalExecutionBackend(pool), work_dir=tmp_path)
    length, make = flow.function_task(_length), flow.function_task(_make)
    big = os.urandom(20 * MB)
    assert await length(big) == 20 * MB
    assert await make(12 * MB) == b"r" * (12 * MB)
    assert await length(make(9 * MB)) == 9 * MB  # a large value from one worker to another
    await flow.shutdown()
    assert _spilled(str(tmp_path)) == []
