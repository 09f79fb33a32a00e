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


COMPUTE = textwrap.dedent(
    """
    import os, signal, subprocess, sys, threading, time
    import asyncflow_graph as ag

    stop = threading.Event()

    @ag.function_task
    def busy(marker):
        open(marker, "w").close()
        while not stop.is_set():  # a thread cannot be cancelled: it checks a flag
            time.sleep(0.01)

    @ag.executable_task
    def sleeper(pidfile):
        return f"echo $$ > {pidfile}; exec sleep 30"

    def interrupt(times):
        while not (os.path.exists("pid") and os.path.exists("marker")):
            time.sleep(0.01)
        for _ in range(times):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)

    threading.Thread(target=interrupt, args=(int(sys.argv[1]),), daemon=True).start()
    t0 = time.monotonic()
    try:
        ag.compute(busy("marker"), sleeper("pid"))
    except KeyboardInterrupt:
        print(f"KeyboardInterrupt after {time.monotonic() - t0:.1f} s", flush=True)
        pid = int(open("pid").read())
        alive = subprocess.run(["kill", "-0", str(pid)], capture_output=True).returncode == 0
        print("command still running:", alive, flush=True)
    except BaseException as exc:
        print("raised", type(exc).__name__, flush=True)
    finally:
        stop.set()
    """
)


def test_ctrl_c_during_compute_raises_keyboard_interrupt_promptly(tmp_path):
    proc = run_python(["-c", COMPUTE, "1"], tmp_path, timeout=60)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert "KeyboardInterrupt after" in proc.stdout, proc.stdout
    seconds = float(proc.stdout.split("KeyboardInterrupt after ")[1].split()[0])
    assert seconds < 5  # the busy thread is abandoned after ~1 s, not waited for
    assert "command still running: False" in proc.stdout  # running work was stopped
    assert "abandoned" in proc.stderr and "'busy'" in proc.stderr


def test_a_second_ctrl_c_during_compute_exits_at_once(tmp_path):
    proc = run_python(["-c", COMPUTE, "2"], tmp_path, timeout=60)
    assert proc.returncode == -signal.SIGINT, (proc.stdout, proc.stderr)
    assert "KeyboardInterrupt" not in proc.stdout and "raised" not in proc.stdout
    assert "received SIGINT again: exiting at once" in proc.stderr


def test_a_signal_number_in_the_wakeup_fd_alone_stops_nothing(tmp_path):
    """What a child does between its fork and its exec when it is signalled (a Dask
    nanny spawning a worker): it writes the signal number to the parent's wakeup fd,
    but no signal reached the parent."""
    code, out, err = run(
        """
        async def main():
            flows, handles = await two_engines_running()
            fd = signal.set_wakeup_fd(-1)
            signal.set_wakeup_fd(fd)
            os.write(fd, bytes([signal.SIGTERM]))  # as the child's C signal handler does
            for _ in range(3):
                await asyncio.sleep(0)
            print("handles", [h.state for h in handles], flush=True)
            os.kill(os.getpid(), signal.SIGTERM)  # a real one still works
            await asyncio.sleep(30)

        asyncio.run(main())
        """,
        tmp_path,
    )
    assert "handles ['RUNNING', 'RUNNING']" in out, (out, err)
    assert code == -signal.SIGTERM and err.count("received SIGTERM") == 1
