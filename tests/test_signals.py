"""SIGTERM/SIGINT on the main thread: every engine shuts down gracefully, then the
signal does what it would have done without us (SIGTERM ends the process with the
conventional status, SIGINT raises KeyboardInterrupt); a second signal ends the
process at once; after a clean shutdown the previous handlers are back. Each case
runs in a child process of its own."""

from __future__ import annotations

import signal
import sys
import textwrap
from pathlib import Path

import pytest
from procs import run_python

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

PRELUDE = textwrap.dedent(
    """
    import asyncio, os, signal, sys, time
    from asyncflow_graph import WorkflowEngine, LocalExecutionBackend

    class Noisy(LocalExecutionBackend):
        async def close(self):
            print("closing", self.name, flush=True)
            await super().close()
            print("closed", self.name, flush=True)

    async def two_engines_running():
        flows = [await WorkflowEngine.create(backend=Noisy(name=f"b{i}")) for i in range(2)]
        started = asyncio.Event()
        handles = []
        for flow in flows:
            @flow.function_task
            async def forever():
                started.set()
                await asyncio.Event().wait()
            h = forever()
            h.add_done_callback(lambda h: print("ended", h.state, flush=True))
            handles.append(h)
        await started.wait()
        return flows, handles
    """
)


def run(body: str, tmp_path: Path) -> tuple[int, str, str]:
    proc = run_python(["-c", PRELUDE + textwrap.dedent(body)], tmp_path, timeout=60)
    return proc.returncode, proc.stdout, proc.stderr


def test_sigterm_shuts_engines_down_then_ends_the_process(tmp_path):
    code, out, err = run(
        """
        async def main():
            flows, handles = await two_engines_running()
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.sleep(30)
            print("still running", flush=True)

        asyncio.run(main())
        """,
        tmp_path,
    )
    assert code == -signal.SIGTERM, (code, out, err)
    assert out.count("ended CANCELLED") == 2
    assert "closed b0" in out and "closed b1" in out  # graceful: every backend closed
    assert "still running" not in out
    assert "received SIGTERM" in err


def test_sigint_shuts_engines_down_then_raises_keyboard_interrupt(tmp_path):
    code, out, err = run(
        """
        async def main():
            flows, handles = await two_engines_running()
            os.kill(os.getpid(), signal.SIGINT)
            await asyncio.sleep(30)
            print("still running", flush=True)

        try:
            asyncio.run(main())
        except KeyboardInterrupt:
            print("KeyboardInterrupt", flush=True)
        """,
        tmp_path,
    )
    assert code == 0, (out, err)
    assert out.count("ended CANCELLED") == 2
    assert "closed b0" in out and "closed b1" in out
    assert out.rstrip().endswith("KeyboardInterrupt")
    assert "still running" not in out


@pytest.mark.parametrize("name", ["TERM", "INT"])
def test_second_signal_exits_at_once(name, tmp_path):
    code, out, err = run(
        f"""
        class Stuck(LocalExecutionBackend):
            async def close(self):
                print("stuck closing", flush=True)
                os.kill(os.getpid(), signal.SIG{name})  # the impatient second signal
                await asyncio.sleep(30)

        async def main():
            flow = await WorkflowEngine.create(backend=Stuck())
            os.kill(os.getpid(), signal.SIG{name})
            await asyncio.sleep(30)

        t0 = time.monotonic()
        try:
            asyncio.run(main())
        finally:
            print("unwound after", time.monotonic() - t0, flush=True)
        """,
        tmp_path,
    )
    assert code == -getattr(signal, f"SIG{name}"), (code, out, err)
    assert "stuck closing" in out
    assert "unwound" not in out  # ended at once: no clean-up ran
    assert f"received SIG{name} again: exiting at once" in err


def test_handlers_are_given_back_after_a_clean_shutdown(tmp_path):
    code, out, err = run(
        """
        async def main():
            before = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
            flow = await WorkflowEngine.create(backend=LocalExecutionBackend())
            assert signal.getsignal(signal.SIGINT) != before[0]
            await flow.shutdown()
            after = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
            print("restored", after == before, flush=True)
            os.kill(os.getpid(), signal.SIGINT)
            await asyncio.sleep(30)
            print("swallowed", flush=True)

        t0 = time.monotonic()
        try:
            asyncio.run(main())
        except KeyboardInterrupt:
            print("KeyboardInterrupt after", round(time.monotonic() - t0), "s", flush=True)
        """,
        tmp_path,
    )
    assert code == 0, (out, err)
    assert "restored True" in out
    assert "swallowed" not in out
    assert "KeyboardInterrupt after 0 s" in out
    assert "received SIGINT" not in err


def test_forked_children_do_not_inherit_the_engine_handlers(tmp_path):
    code, out, err = run(
        """
        import multiprocessing

        def report():
            print("child", signal.getsignal(signal.SIGTERM) == signal.SIG_DFL,
                  signal.set_wakeup_fd(-1), flush=True)

        async def main():
            flow = await WorkflowEngine.create(backend=LocalExecutionBackend())
            p = multiprocessing.get_context("fork").Process(target=report)
            p.start()
            p.join()
            await flow.shutdown()

        asyncio.run(main())
        """,
        tmp_path,
    )
    assert code == 0, (out, err)
    assert "child True -1" in out  # default SIGTERM, no wakeup fd of the parent's loop
    assert "received" not in err


def test_a_child_signalled_does_not_stop_the_parent(tmp_path):
    code, out, err = run(
        """
        import multiprocessing

        async def main():
            flows, handles = await two_engines_running()
            p = multiprocessing.get_context("fork").Process(target=time.sleep, args=(30,))
            p.start()
            p.terminate()  # SIGTERM to the child
            p.join()
            for _ in range(3):  # a signal in the wakeup fd is read on the next loop turn
                await asyncio.sleep(0)
            print("child status", p.exitcode, flush=True)
            print("handles", [h.state for h in handles], flush=True)
            for f in flows:
                await f.shutdown()

        asyncio.run(main())
        """,
        tmp_path,
    )
    assert code == 0, (out, err)
    assert f"child status -{signal.SIGTERM.value}" in out
    assert "handles ['RUNNING', 'RUNNING']" in out
    assert "received SIGTERM" not in err
