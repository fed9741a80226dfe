from __future__ import annotations

import faulthandler
import importlib.util
import logging
import os
import sys
import sysconfig
import threading
from typing import TYPE_CHECKING

import pytest

from syncbridge import Bridge

if TYPE_CHECKING:
    from collections.abc import Generator, Iterator

# The cluster and loky tests belong to ``nox -s distributed``, which installs
# syncbridge[dask,loky]. Where those are missing (the ``tests`` session) the
# modules are not collected: they run in that session, they are never skipped.
collect_ignore = [
    module
    for module, dist in (("test_dask.py", "distributed"), ("test_loky.py", "loky"))
    if importlib.util.find_spec(dist) is None
]

# -- watchdog: a hung test dumps the stack of every thread ---------------------
#
# pytest-timeout (``timeout = 60`` in pyproject.toml) fails or kills a hung test
# and lists thread stacks from Python code, which needs the GIL and, in its
# default (signal) mode, a main thread that gets back to the interpreter. A
# bridge hang is nearly always about the *other* threads (workers, the portal
# loop, callers blocked in sync_call_async), so every test also arms
# faulthandler a little before pytest-timeout fires: it dumps every thread from
# C, GIL or not, to a copy of the real stderr (not into the capture), and lets
# the test go on. faulthandler has one such timer per process: this takes the
# place of pytest's ``faulthandler_timeout`` option, which the project leaves unset.

_WATCHDOG_FD = pytest.StashKey[int]()


def pytest_configure(config: pytest.Config) -> None:
    # Capturing is suspended while plugins configure, so this is the terminal.
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, ValueError):  # xdist and friends replace sys.stderr
        assert sys.__stderr__ is not None
        fd = sys.__stderr__.fileno()
    config.stash[_WATCHDOG_FD] = os.dup(fd)


def pytest_unconfigure(config: pytest.Config) -> None:
    faulthandler.cancel_dump_traceback_later()
    fd = config.stash.get(_WATCHDOG_FD, None)
    if fd is not None:
        os.close(fd)
        del config.stash[_WATCHDOG_FD]


def _timeout(item: pytest.Item) -> float:
    """The timeout pytest-timeout applies to *item* (marker, CLI, env, ini)."""
    marker = item.get_closest_marker("timeout")
    if marker is not None:
        value = marker.args[0] if marker.args else marker.kwargs.get("timeout")
        if value is not None:
            return float(value)
    value = item.config.getoption("timeout", None)
    if value is None:
        value = os.environ.get("PYTEST_TIMEOUT") or None
    if value is None:
        try:
            value = item.config.getini("timeout") or None
        except ValueError:  # pytest-timeout is not installed
            value = None
    return float(value) if value is not None else 0.0


def watchdog_seconds(timeout: float) -> float:
    """When the watchdog fires for a test timeout: 5 s (at most 10 %) before it."""
    return timeout - min(5.0, timeout / 10)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, object, object]:
    """Bound every test (setup, call, teardown) by a dump of all thread stacks."""
    timeout = _timeout(item)
    fd = item.config.stash.get(_WATCHDOG_FD, None)
    if timeout <= 0 or fd is None:
        return (yield)
    faulthandler.dump_traceback_later(watchdog_seconds(timeout), exit=False, file=fd)
    try:
        return (yield)
    finally:
        faulthandler.cancel_dump_traceback_later()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """On a free-threaded build, fail the run if anything turned the GIL back on.

    CPython re-enables the GIL when it imports an extension module that does
    not declare free-threading support; everything the suite imports has by
    now been imported, so the tests must have run without it.
    """
    is_gil_enabled = getattr(sys, "_is_gil_enabled", None)
    if (
        sysconfig.get_config_var("Py_GIL_DISABLED")
        and is_gil_enabled is not None
        and is_gil_enabled()
    ):
        assert sys.__stderr__ is not None
        sys.__stderr__.write(
            "\nThe GIL is enabled on this free-threaded build: an imported extension "
            "module does not declare free-threading support (CPython's RuntimeWarning "
            "names it).\n"
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_enter_pdb() -> None:
    faulthandler.cancel_dump_traceback_later()  # no dump while someone debugs


# -- fixtures ---------------------------------------------------------------


@pytest.fixture(
    params=[
        pytest.param("asyncio", id="asyncio"),
        pytest.param("trio", id="trio"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run every ``@pytest.mark.anyio`` test on asyncio and on trio."""
    return request.param  # type: ignore[no-any-return]


def _bridge_threads(name: str) -> list[threading.Thread]:
    return [
        t
        for t in threading.enumerate()
        if t.name.startswith((f"syncbridge-{name}-", f"syncbridge-portal-{name}"))
    ]


@pytest.fixture
def bridge() -> Iterator[Bridge]:
    """An isolated bridge (4 workers) that is closed after the test.

    Closing it must leave none of its threads behind.
    """
    b = Bridge(max_workers=4, shutdown_grace=2.0)
    try:
        yield b
    finally:
        b.close()
        leaked = [t for t in _bridge_threads(b.name) if t.is_alive()]
        assert not leaked, f"threads left running after Bridge.close(): {leaked}"


class StallLog(logging.Handler):
    """Collects syncbridge's loop-stall warnings; ``seen`` is set at the first one."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen = threading.Event()
        self.records: list[logging.LogRecord] = []

    @property
    def messages(self) -> list[str]:
        return [record.getMessage() for record in self.records]

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "syncbridge_event", None) == "loop-blocked":
            self.records.append(record)
            self.seen.set()


@pytest.fixture
def reported() -> Iterator[StallLog]:
    """The stall warnings logged during the test."""
    handler = StallLog()
    logger = logging.getLogger("syncbridge")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


@pytest.fixture(autouse=True)
def _default_bridge_watch_left_as_found() -> Iterator[None]:
    """A portal watch a test put on the default bridge ends with the test.

    ``syncbridge.flask.SyncBridge(app)`` configures the process-wide default
    bridge (its portal watch is on by default), as it should in an app; in a
    test run it would outlive the test and show up as a monitor thread left
    running in a later module's checks.
    """
    from syncbridge._core import _bridge

    before = _bridge._default  # pyright: ignore[reportPrivateUsage]
    watched = before is not None and before.portal_watch is not None
    yield
    after = _bridge._default  # pyright: ignore[reportPrivateUsage]
    if after is None or after.closed or after.portal_watch is None:
        return
    if after is not before or not watched:
        after.watch_portal(None)
