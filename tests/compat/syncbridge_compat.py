"""pytest plugin for ``nox -s compat``: apply syncbridge to every app a suite creates.

Loaded into the released test suites of Flask, Starlette and FastAPI with
``-p syncbridge_compat``. ``SYNCBRIDGE_COMPAT_MODE`` says what to apply:

- ``stock``: nothing (the reference run);
- ``flask``: ``SyncBridge(app)`` on every :class:`flask.Flask`;
- ``fastapi``: ``syncbridge.fastapi.install(app)`` on every Starlette/FastAPI app;
- ``fastapi-options``: the same with ``threads=8, blocking_threshold=0.5``.

The ids of the tests that failed or errored (in any phase, collection included)
and the number of apps wrapped are written as JSON to ``SYNCBRIDGE_COMPAT_REPORT``.
"""

from __future__ import annotations

__all__ = ("pytest_collectreport", "pytest_configure", "pytest_runtest_logreport")

import functools
import json
import os
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    import pytest

_failed: set[str] = set()
_wrapped = [0]
_depth = threading.local()


def _after_init(cls: type[Any], apply: Callable[[Any], None]) -> None:
    """Patch ``cls.__init__`` to call *apply* once the outermost ``__init__`` ends.

    FastAPI's ``__init__`` may call Starlette's, and subclasses call their base's:
    the app is complete (and wrapped, once) only when the outermost one returns.
    """
    original = cls.__init__

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        depth = getattr(_depth, "n", 0)
        _depth.n = depth + 1
        try:
            original(self, *args, **kwargs)
        finally:
            _depth.n = depth
        if depth == 0:
            apply(self)
            _wrapped[0] += 1

    cls.__init__ = __init__


def _apply_flask() -> None:
    import flask

    from syncbridge.flask import SyncBridge

    def apply(app: Any) -> None:
        SyncBridge(app)

    _after_init(flask.Flask, apply)


def _apply_fastapi(**options: Any) -> None:
    from starlette.applications import Starlette

    import syncbridge.fastapi

    def apply(app: Any) -> None:
        syncbridge.fastapi.install(app, **options)

    _after_init(Starlette, apply)
    try:
        from fastapi import FastAPI
    except ImportError:  # the Starlette suite may run without FastAPI
        return
    if FastAPI.__init__ is not Starlette.__init__:
        _after_init(FastAPI, apply)


def pytest_configure(config: pytest.Config) -> None:
    mode = os.environ.get("SYNCBRIDGE_COMPAT_MODE", "stock")
    if mode == "flask":
        _apply_flask()
    elif mode == "fastapi":
        _apply_fastapi()
    elif mode == "fastapi-options":
        _apply_fastapi(threads=8, blocking_threshold=0.5)
    elif mode != "stock":
        raise ValueError(f"unknown SYNCBRIDGE_COMPAT_MODE {mode!r}")
    config.add_cleanup(_write_report)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.failed:
        _failed.add(report.nodeid)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.failed:
        _failed.add(report.nodeid or "<collection>")


def _write_report() -> None:
    path = os.environ.get("SYNCBRIDGE_COMPAT_REPORT")
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"failed": sorted(_failed), "wrapped": _wrapped[0]}, f)
