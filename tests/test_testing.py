"""The pytest plugin (syncbridge.testing), run on small test files with pytester."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest

pytest_plugins = ["pytester"]

# The plugin is registered by its entry point when syncbridge is installed;
# loaded by module name here so these tests do not depend on that.
PLUGIN = ("-p", "no:syncbridge", "-p", "syncbridge.testing", "-p", "no:randomly")


ONE_BACKEND = """
import pytest

@pytest.fixture
def anyio_backend():
    return "asyncio"
"""


def run(pytester: pytest.Pytester, source: str, *args: str) -> pytest.RunResult:
    if "def anyio_backend" not in source:
        pytester.makeconftest(ONE_BACKEND)
    pytester.makepyfile(source)
    return pytester.runpytest_subprocess(*PLUGIN, *args)


def test_the_plugin_is_registered_by_its_entry_point() -> None:
    from importlib.metadata import entry_points

    (point,) = [e for e in entry_points(group="pytest11") if e.name == "syncbridge"]
    assert point.value == "syncbridge.testing"


def test_it_is_inert_unless_used(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import time, pytest

        @pytest.mark.anyio
        async def test_blocks_but_nobody_asked():
            time.sleep(0.2)
        """,
    )
    result.assert_outcomes(passed=1)


def test_the_marker_fails_an_async_test_that_blocks_its_loop(
    pytester: pytest.Pytester,
) -> None:
    result = run(
        pytester,
        """
        import time, pytest

        def cpu_bound_stall():
            time.sleep(0.3)

        @pytest.mark.anyio
        @pytest.mark.syncbridge_blocking_threshold(0.05)
        async def test_blocks():
            cpu_bound_stall()

        @pytest.mark.anyio
        @pytest.mark.syncbridge_blocking_threshold(0.05)
        async def test_does_not_block():
            import anyio
            await anyio.sleep(0.2)
        """,
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*event loop was blocked for more than * s (threshold 0.05 s)*",
            "*cpu_bound_stall*",
        ]
    )


def test_the_option_applies_to_every_async_test_on_both_backends(
    pytester: pytest.Pytester,
) -> None:
    result = run(
        pytester,
        """
        import time, pytest

        @pytest.fixture(params=["asyncio", "trio"])
        def anyio_backend(request):
            return request.param

        @pytest.mark.anyio
        async def test_blocks():
            time.sleep(0.3)
        """,
        "--syncbridge-blocking-threshold=0.05",
    )
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*the asyncio event loop was blocked*"])
    result.stdout.fnmatch_lines(["*the trio event loop was blocked*"])


def test_the_fixture_gives_an_isolated_bridge_and_closes_it(
    pytester: pytest.Pytester,
) -> None:
    result = run(
        pytester,
        """
        import pytest, syncbridge

        SEEN = []

        @pytest.mark.anyio
        async def test_uses_it(syncbridge_bridge):
            assert syncbridge_bridge is not syncbridge.get_bridge()
            assert await syncbridge_bridge.run_blocking(lambda: 41) == 41
            SEEN.append(syncbridge_bridge)

        def test_it_was_closed():
            assert SEEN[0].closed
        """,
    )
    result.assert_outcomes(passed=2)


def test_the_fixture_fails_a_test_that_leaves_portal_tasks_pending(
    pytester: pytest.Pytester,
) -> None:
    result = run(
        pytester,
        """
        import anyio

        def test_forgets_a_task(syncbridge_bridge):
            syncbridge_bridge.start_soon(anyio.sleep_forever)
        """,
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        ["*syncbridge_bridge: 1 coroutine(s) started on its portal were still pending*"]
    )


def test_the_fixture_fails_a_test_whose_worker_never_returns(
    pytester: pytest.Pytester,
) -> None:
    result = run(
        pytester,
        """
        import threading, anyio, pytest

        stuck = threading.Event()

        def wait_forever():
            stuck.wait()

        @pytest.mark.anyio
        async def test_abandons_a_thread(syncbridge_bridge):
            with anyio.move_on_after(0.05):
                await syncbridge_bridge.run_blocking(wait_forever)

        def test_release():
            stuck.set()
        """,
    )
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        ["*still ran after close() (running *wait_forever)*check_cancelled()*"]
    )


def test_the_fixture_watches_its_portal_with_a_threshold(
    pytester: pytest.Pytester,
) -> None:
    result = run(
        pytester,
        """
        import time, pytest

        async def stall_the_portal():
            time.sleep(0.3)

        @pytest.mark.syncbridge_blocking_threshold(0.05)
        def test_sync_code_under_test(syncbridge_bridge):
            syncbridge_bridge.sync_call_async(stall_the_portal)
        """,
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        ["*portal test* event loop was blocked*stall_the_portal*"]
    )


def test_a_bad_threshold_is_an_error_naming_the_marker(
    pytester: pytest.Pytester,
) -> None:
    result = run(
        pytester,
        """
        import pytest

        @pytest.mark.anyio
        @pytest.mark.syncbridge_blocking_threshold("0.1")
        async def test_x():
            pass
        """,
    )
    result.stdout.fnmatch_lines(
        ["*@pytest.mark.syncbridge_blocking_threshold(seconds) must be a finite*"]
    )
    assert result.ret != 0
