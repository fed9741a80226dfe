"""Issue 11: interpreter exit with pending work is quick and quiet.

A process that leaves a portal task running and a worker in a long blocking call
(its await abandoned) exits promptly with code 0, with no traceback and no
"Task was destroyed but it is pending" on stderr.
"""

from __future__ import annotations

import subprocess
import textwrap

import pytest

from _scripts import run_script

pytestmark = pytest.mark.faults

SCRIPT = textwrap.dedent(
    """
    import asyncio, threading, time
    import anyio
    import syncbridge

    started = threading.Event()

    async def forever():
        started.set()
        await asyncio.sleep(3600)

    syncbridge.get_bridge().start_soon(forever)
    assert started.wait(10)

    async def abandon_a_worker():
        with anyio.move_on_after(0.1):
            await syncbridge.run_blocking(time.sleep, 3600)

    asyncio.run(abandon_a_worker())
    print("main: done", flush=True)
    """
)


def test_interpreter_exit_with_pending_work_is_quick_and_quiet() -> None:
    """Exit with a portal task and an abandoned worker: < 10 s, code 0, no noise."""
    try:
        proc = run_script(SCRIPT, timeout=10)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the process did not exit within 10 s (stderr: {exc.stderr!r})")
    assert "main: done" in proc.stdout, proc.stderr
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "Task was destroyed but it is pending" not in proc.stderr, proc.stderr
