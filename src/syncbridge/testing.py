"""A pytest plugin for code that uses syncbridge: isolated bridges, blocked-loop checks.

Installed with syncbridge and registered through pytest's ``pytest11`` entry
point, it does nothing until a test asks:

- the :func:`syncbridge_bridge` fixture gives the test a bridge of its own and
  closes it afterwards, failing the test if it left portal tasks pending or
  threads running;
- ``@pytest.mark.syncbridge_blocking_threshold(seconds)`` on a test (or
  ``--syncbridge-blocking-threshold=seconds`` for every test) fails an async
  test whose event loop was blocked for longer than *seconds*, and a test whose
  :func:`syncbridge_bridge` portal loop was, showing the stack that blocked it.
  It watches the loop (:func:`syncbridge.watch_loop`), so it catches any
  blocking call — ``time.sleep``, a sync driver, a CPU-bound loop, a C
  extension — not only the functions a patching tool knows about.

Disable it with ``-p no:syncbridge``.
"""

from __future__ import annotations

__all__ = (
    "pytest_addoption",
    "pytest_configure",
    "pytest_runtest_call",
    "syncbridge_bridge",
)

import functools
import inspect
import itertools
import threading
from typing import TYPE_CHECKING, Any

import pytest

from ._core._bridge import Bridge
from ._validate import check_seconds
from ._watch import watch_loop

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterator

    from ._watch import BlockReport

_MARKER = "syncbridge_blocking_threshold"
_OPTION = "--syncbridge-blocking-threshold"
_REPORTS = pytest.StashKey[list["BlockReport"]]()
_ids = itertools.count(1)


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--syncbridge-blocking-threshold``."""
    parser.getgroup("syncbridge").addoption(
        _OPTION,
        type=float,
        default=None,
        metavar="SECONDS",
        help=(
            "fail every async test whose event loop is blocked for longer than "
            "SECONDS (and every syncbridge_bridge portal loop); off by default"
        ),
    )


def pytest_configure(config: pytest.Config) -> None:
    """Declare the marker."""
    config.addinivalue_line(
        "markers",
        f"{_MARKER}(seconds): fail the test if its event loop (or its "
        "syncbridge_bridge's portal loop) is blocked for longer than seconds",
    )


def _threshold(item: pytest.Item) -> float | None:
    marker = item.get_closest_marker(_MARKER)
    if marker is not None:
        value = marker.args[0] if marker.args else marker.kwargs.get("seconds")
        return check_seconds(value, f"@pytest.mark.{_MARKER}(seconds)")
    option = item.config.getoption(_OPTION)
    if option is None:
        return None
    return check_seconds(option, _OPTION)


def _reports(item: pytest.Item) -> list[BlockReport]:
    return item.stash.setdefault(_REPORTS, [])


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    """Watch an async test's loop while it runs; fail it if the loop was blocked."""
    threshold = _threshold(item)
    original: Any = getattr(item, "obj", None)
    if threshold is None or not inspect.iscoroutinefunction(original):
        return (yield)
    reports = _reports(item)
    setattr(item, "obj", _watched(original, threshold, reports.extend))  # noqa: B010
    try:
        result = yield
    finally:
        setattr(item, "obj", original)  # noqa: B010
    _fail_if_blocked(item)
    return result


def _watched(
    test: Callable[..., Any],
    threshold: float,
    keep: Callable[[list[BlockReport]], object],
) -> Callable[..., Any]:
    @functools.wraps(test)
    async def watched(*args: Any, **kwargs: Any) -> Any:
        async with watch_loop(threshold) as watch:
            try:
                return await test(*args, **kwargs)
            finally:
                keep(watch.reports)

    return watched


def _fail_if_blocked(item: pytest.Item) -> None:
    _fail_for(_reports(item))


def _fail_for(reports: list[BlockReport]) -> None:
    if not reports:
        return
    first = reports[0]
    more = f" ({len(reports) - 1} more stalls)" if len(reports) > 1 else ""
    where = f" {first.where}" if first.where else ""
    pytest.fail(
        f"the {first.loop} event loop was blocked for more than "
        f"{first.blocked:.2f} s (threshold {first.threshold:g} s){where}{more}. "
        "Run the blocking call in a worker thread (await "
        "syncbridge.run_blocking(func, ...)). Stack of the loop thread, innermost "
        f"call last:\n{first.stack}",
        pytrace=False,
    )


@pytest.fixture
def syncbridge_bridge(request: pytest.FixtureRequest) -> Iterator[Bridge]:
    """A :class:`~syncbridge.Bridge` of the test's own, closed after the test.

    The test fails (in its teardown) if, when it ends, coroutines it started on
    the bridge's portal are still pending, or the bridge's threads still run
    after :meth:`~syncbridge.Bridge.close` (a worker stuck in a blocking call).
    With a blocking threshold (the marker or the option), its portal loop is
    watched too, and a stall fails the test with the blocking stack.

    Pass it where the code under test takes ``bridge=``
    (``to_async(bridge=...)``, ``to_sync(bridge=...)``), or call its methods.
    """
    item = request.node
    threshold = _threshold(item) if isinstance(item, pytest.Item) else None
    name = f"test{next(_ids)}"
    bridge = Bridge(name=name, blocking_threshold=threshold, shutdown_grace=0.5)
    try:
        yield bridge
    finally:
        pending = bridge.stats().portal_tasks
        running = [
            *bridge.pool().running_functions(),
            *bridge.thread_sensitive_pool.running_functions(),
        ]
        watch = bridge.portal_watch
        bridge.close()
    ours = (f"syncbridge-{name}-", f"syncbridge-portal-{name}")
    leaked = sorted(t.name for t in threading.enumerate() if t.name.startswith(ours))
    problems: list[str] = []
    if pending:
        problems.append(
            f"{pending} coroutine(s) started on its portal were still pending when "
            "the test ended (await or cancel what start_soon() returned)"
        )
    if leaked:
        doing = f" (running {', '.join(sorted(running))})" if running else ""
        problems.append(
            f"its threads {', '.join(leaked)} still ran after close(){doing}: a "
            "blocking call that never returns? stop it with check_cancelled()"
        )
    if problems:
        pytest.fail("syncbridge_bridge: " + "; ".join(problems), pytrace=False)
    if watch is not None:
        _fail_for(watch.reports)
