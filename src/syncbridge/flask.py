"""Async Flask views on one persistent event loop per process.

Flask's own async support starts a new event loop for every coroutine it runs, so
nothing bound to a loop (an ``httpx.AsyncClient``, a database pool, an
``asyncio.Lock``) survives from one request to the next. :class:`SyncBridge` runs
them all on the process's syncbridge portal loop instead::

    app = Flask(__name__)
    bridge = SyncBridge(app)

Flask is imported lazily: ``import syncbridge`` never imports it.
"""

from __future__ import annotations

__all__ = ("DEFAULT_BLOCKING_THRESHOLD", "SyncBridge", "stream")

import contextvars
import difflib
import functools
import importlib.metadata
import inspect
import logging
import os
import re
import threading
import warnings
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, AnyStr, Final, TypeVar, cast, overload

import anyio
import anyio.to_thread

from syncbridge import (
    BridgeClosed,
    DeadlockError,
    PoolSaturated,
    get_bridge,
    sync_iter,
    to_async,
)
from syncbridge._core._bridge import (
    call_with_timeout,
    name_pool_setting,
    start_soon_call,
)
from syncbridge._core._context import new_thread
from syncbridge._exceptions import callable_name, retry_after
from syncbridge._validate import (
    PoolBounds,
    check_capacity,
    check_iterable,
    check_pools,
    check_seconds,
)

if TYPE_CHECKING:
    import concurrent.futures
    from collections.abc import AsyncIterable, Iterator
    from types import FrameType

    from flask import Flask
    from werkzeug.exceptions import ServiceUnavailable

    from ._typing import P, T

_AsyncFn = TypeVar("_AsyncFn", bound=Callable[..., Coroutine[Any, Any, Any]])

_CONFIG_TIMEOUT: Final = "SYNCBRIDGE_TIMEOUT"
_CONFIG_THREADS: Final = "SYNCBRIDGE_THREADS"
_CONFIG_POOLS: Final = "SYNCBRIDGE_POOLS"
_CONFIG_BLOCKING: Final = "SYNCBRIDGE_BLOCKING_THRESHOLD"
_CONFIG_KEYS: Final = (
    _CONFIG_TIMEOUT,
    _CONFIG_THREADS,
    _CONFIG_POOLS,
    _CONFIG_BLOCKING,
)
DEFAULT_BLOCKING_THRESHOLD: Final = 0.25
"""Seconds the portal loop may be blocked before ``SyncBridge`` warns (the default)."""
_TIMEOUT_ATTR: Final = "__syncbridge_timeout__"
_SATURATED_DETAIL: Final = (
    "The server is too busy for this request now: an operation it needed was "
    "refused before it started. Please try again after the time the Retry-After "
    "header gives."
)
_logger: Final = logging.getLogger("syncbridge")
_MISSING: Final = object()


class SyncBridge:
    """Run a Flask app's coroutines on the process's persistent portal loop.

    After ``SyncBridge(app)`` (or ``SyncBridge()`` then :meth:`init_app`), every
    coroutine function Flask calls — async views and class-based views, async
    ``before_request``/``after_request``/``teardown_request`` functions, async
    error handlers — runs on the default bridge's portal loop, one loop per
    process shared by every request and every server thread. Sync views are
    returned to Flask untouched and cost nothing extra.

    Runs on:
        The request's thread blocks while the coroutine runs on the portal loop
        in a copy of that thread's :mod:`contextvars` context, so ``request``,
        ``g``, ``session``, ``current_app`` and ``url_for`` work as in a sync view;
        variables the coroutine sets are copied back to the request's thread
        afterwards (set one in an async ``before_request``, read it in the view).
        Exceptions (``abort()``, any ``HTTPException``) reach Flask unchanged.
        (The loop is chosen by :func:`~syncbridge.sync_call_async`'s rules: when
        the WSGI app itself runs in a worker thread serving a loop, that loop.)

    Cancellation:
        ``SYNCBRIDGE_TIMEOUT`` in the app config (seconds, default ``None``) bounds
        each coroutine; :meth:`timeout` sets it per function. On overrun the
        coroutine is cancelled once on the loop (its cleanup may await) and,
        once it has stopped (or the bridge's ``shutdown_grace`` later), Flask
        gets a ``werkzeug.exceptions.GatewayTimeout`` (a 504, which
        ``@app.errorhandler(504)`` can replace), and it is logged
        (``request-timed-out``).

    A :class:`~syncbridge.PoolSaturated` that escapes a coroutine in a request
    (a pool's ``max_waiting`` or ``max_wait`` refused a call, which never ran)
    reaches Flask as a ``werkzeug.exceptions.ServiceUnavailable`` (a 503 with
    ``Retry-After``: the refusing ``max_wait`` rounded up to whole seconds, or
    1) that is also the ``PoolSaturated``, with its fields: the app's
    ``errorhandler(503)``, ``errorhandler(PoolSaturated)`` or one for a base
    class answers it instead.

    Configuration is read from ``app.config`` by :meth:`init_app`, so set it
    first; a bad value fails there, naming the key:

    - ``SYNCBRIDGE_TIMEOUT``: seconds (a number > 0) or ``None`` (the default).
    - ``SYNCBRIDGE_THREADS``: worker capacity of the bridge's default pool (an
      int >= 1), or ``None`` (the default) to keep the bridge's own.
    - ``SYNCBRIDGE_POOLS``: named pools to create or resize on the bridge, as
      ``{name: capacity}``, for ``@syncbridge.to_async(pool="name")`` functions;
      a pool's value may also bound its queue:
      ``{"capacity": 10, "max_waiting": 32, "max_wait": 0.5}``.

    Like ``syncbridge.fastapi.install(threads=..., pools=...)``, the capacities
    are applied to the default bridge at once and again in each forked worker
    process (gunicorn's pre-fork model), at its first async request.

    The extension keeps only a weak reference to *app* (so an app with no other
    references is freed at once, as Flask promises); keep the app referenced.

    Args:
        app: The app to set up now; omit it and call :meth:`init_app` later.

    .. versionadded:: 0.1
    """

    def __init__(self, app: Flask | None = None) -> None:
        # Weak: app.extensions refers to this object, and a strong reference
        # back would make a cycle that keeps the app alive until the cyclic GC
        # runs; Flask frees an app as soon as its refcount drops to zero (#16).
        if app is not None:
            _check_app(app, "SyncBridge(app=...)")
        self._app_ref = None if app is None else weakref.ref(app)
        if app is not None:
            self.init_app(app)

    @property
    def app(self) -> Flask | None:
        """The app given to ``SyncBridge(app)``, while it is alive; else ``None``."""
        return None if self._app_ref is None else self._app_ref()

    def init_app(self, app: Flask) -> None:
        """Read and check *app*'s ``SYNCBRIDGE_*`` config; route its coroutines.

        Raises:
            RuntimeError: If *app* already has a ``SyncBridge``, or Flask is
                older than 3.1.2.
            TypeError: If *app* is not a Flask app, or a ``SYNCBRIDGE_*``
                config value has the wrong type.
            ValueError: If a ``SYNCBRIDGE_*`` config value is out of range.

        A ``SYNCBRIDGE_*`` key that is not one of these settings (a misspelt
        one) is named in a :class:`UserWarning`, with the settings it may mean.
        """
        _check_app(app, "SyncBridge.init_app(app=...)")
        _require_flask_version()
        if "syncbridge" in app.extensions:
            raise RuntimeError(
                f"SyncBridge is already set up on the app {app.name!r}; create one "
                "SyncBridge per app (SyncBridge(app) or bridge.init_app(app) once)"
            )
        for key in (_CONFIG_TIMEOUT, _CONFIG_THREADS, _CONFIG_POOLS):
            if key not in app.config:
                app.config[key] = None
        if _CONFIG_BLOCKING not in app.config:
            app.config[_CONFIG_BLOCKING] = DEFAULT_BLOCKING_THRESHOLD
        settings = _Settings.from_config(app.config)
        _warn_unknown_keys(app.config)
        settings.apply()
        app.extensions["syncbridge"] = self
        # Flask's documented hook for running coroutines: an instance attribute
        # shadows the method, so only this app is affected. It holds the
        # settings, not the app (no reference cycle, #16).
        setattr(app, "ensure_sync", _EnsureSync(settings))  # noqa: B010 - shadows the method

    def timeout(self, seconds: float | None) -> Callable[[_AsyncFn], _AsyncFn]:
        """Bound an async view (or hook) to *seconds*, overriding the app default.

        Apply it above or below the route decorator. ``None`` lifts the app-wide
        ``SYNCBRIDGE_TIMEOUT`` for this function.

        Cancellation:
            On overrun the coroutine is cancelled once on the loop (its
            ``finally`` blocks run there and may await) and, once it has
            stopped, a 504 ``GatewayTimeout`` is raised in the request.

        Raises:
            TypeError: If *seconds* is not a number or ``None``, or the decorated
                function is not ``async def``.
            ValueError: If *seconds* is not finite and above 0.
        """
        check_seconds(seconds, "SyncBridge.timeout(seconds)", none="no timeout")

        def decorate(func: _AsyncFn) -> _AsyncFn:
            if not inspect.iscoroutinefunction(func):
                raise TypeError(
                    f"SyncBridge.timeout() bounds async functions, but "
                    f"{getattr(func, '__qualname__', func)!r} is not 'async def'; a "
                    "sync view runs in the server's thread, where nothing can "
                    "cancel it"
                )
            setattr(func, _TIMEOUT_ATTR, seconds)
            return func

        return decorate

    @overload
    def background(
        self, func: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> concurrent.futures.Future[T]: ...

    @overload
    def background(self, func: Awaitable[T], /) -> concurrent.futures.Future[T]: ...

    def background(
        self,
        func: Callable[..., Awaitable[T]] | Awaitable[T],
        /,
        *args: Any,
        **kwargs: Any,
    ) -> concurrent.futures.Future[T]:
        """Start fire-and-forget work on the portal loop; return at once.

        Pass a coroutine function and its arguments, or a coroutine object.

        Runs on:
            The portal loop, inside a fresh app context of the current app (the
            request context is not carried: the request may be over before the
            work is). The app context is torn down exactly once, off the loop
            (in a worker thread, or a thread of its own for work cancelled
            before it started), so ``teardown_appcontext`` functions, sync or
            async, never block the loop. Call it from a request, a CLI command
            or anywhere an app context is active, or anywhere when
            ``SyncBridge(app)`` was given its app.

        Cancellation:
            An exception is logged on ``app.logger`` with its traceback and
            stored in the returned future. ``future.cancel()`` cancels the work.
            At interpreter exit (the default bridge closing), work still running
            after a short grace period is cancelled and logged, not waited for;
            its app context is still torn down, but async teardown functions
            can no longer run then (the bridge is closed: logged as a failure).

        Returns:
            A :class:`concurrent.futures.Future` for the result.

        Raises:
            RuntimeError: If there is no app to run it with.
            TypeError: If *func* is neither a coroutine function nor an awaitable,
                or arguments come with an awaitable.
        """
        try:
            app = self._app()
            hook = app.__dict__.get("ensure_sync")
            if isinstance(hook, _EnsureSync):
                hook.settings.apply_if_forked()
            if inspect.isawaitable(func):
                if args or kwargs:
                    raise TypeError(
                        "background() takes arguments only with a coroutine "
                        "function; pass background(fn, *args), or the coroutine "
                        "object fn(*args) alone"
                    )
            elif not callable(func):
                raise TypeError(
                    f"background() needs a coroutine function or a coroutine, "
                    f"got {type(func).__name__!r}"
                )
            work = _BackgroundWork(app, func, args, kwargs)
            # The work runs in a copy of work.context: the original is entered
            # only to push and pop the app context (a Context cannot be entered
            # by two threads at once, and the pop must run where the push did).
            try:
                future = work.context.copy().run(
                    start_soon_call,
                    get_bridge(),
                    _run_in_background,
                    (work,),
                    {},
                    "SyncBridge.background",
                    func,
                )
            except BaseException as exc:
                work.pop(exc)  # nothing was scheduled: tear down here
                raise
        except BaseException:
            if inspect.iscoroutine(func):
                func.close()  # never started: do not leave it "never awaited"
            raise
        future.add_done_callback(work.clean_up_if_never_started)
        return future

    def _app(self) -> Flask:
        import flask

        if flask.has_app_context():
            return flask.current_app._get_current_object()  # type: ignore[attr-defined,no-any-return]
        app = self.app
        if app is not None:
            return app
        if self._app_ref is not None:
            raise RuntimeError(
                "SyncBridge.background() has no app: the app given to "
                "SyncBridge(app) was freed (the extension keeps only a weak "
                "reference to it); keep a reference to the app while it serves"
            )
        raise RuntimeError(
            "SyncBridge.background() needs an app: call it inside a request or "
            "'with app.app_context():', or create the extension as SyncBridge(app)"
        )


def stream(aiterable: AsyncIterable[AnyStr], /) -> Iterator[AnyStr]:
    """Serve an async iterable (an async generator, say) as a streamed response.

    Return it from a view, sync or async, as is or in a ``Response``::

        @app.get("/events")
        async def events():
            return stream(watch_events())

    Runs on:
        The server thread sending the response blocks for each item while
        ``__anext__()`` runs on the portal loop, with the request context active
        (``flask.request`` works inside the generator), as
        ``flask.stream_with_context()`` does for sync generators.

    Cancellation:
        When the response is closed early (the client went away, or the server
        stops sending), the generator's ``aclose()`` runs on the loop, so its
        ``finally`` blocks run.

    Raises:
        RuntimeError: If called outside a request.

    .. versionadded:: 0.1
    """
    import flask

    check_iterable(aiterable, "syncbridge.flask.stream()", is_async=True)
    # Flask >= 3.1.2 records the request and app contexts here and pushes them
    # only when the server starts sending, in its own thread: so this works when
    # called on the loop (in an async view) as well as in the request's thread.
    return flask.stream_with_context(sync_iter(aiterable))


_MIN_FLASK: Final = (3, 1, 2)


def _require_flask_version() -> None:
    # stream() relies on stream_with_context() pushing the contexts only when
    # the response is sent (Flask 3.1.2); other features on 3.x behaviour.
    installed = importlib.metadata.version("flask")
    numbers = re.findall(r"\d+", installed)[:3]
    if tuple(int(n) for n in numbers) < _MIN_FLASK:
        raise RuntimeError(
            f"syncbridge.flask needs Flask >= 3.1.2, but Flask {installed} is "
            "installed: upgrade it with pip install 'flask>=3.1.2' (or install "
            "syncbridge[flask])"
        )


def _check_app(app: object, what: str) -> None:
    import flask

    if not isinstance(app, flask.Flask):
        raise TypeError(f"{what} must be a flask.Flask application, got {app!r}")


def _warn_unknown_keys(config: Mapping[str, Any]) -> None:
    """Warn about each ``SYNCBRIDGE_*`` key that is no setting: it would be ignored."""
    keys: list[object] = list(config)  # a dict: any key can be set
    for key in keys:
        if not isinstance(key, str) or key in _CONFIG_KEYS:
            continue
        if not key.upper().replace("_", "").startswith("SYNCBRIDGE"):
            continue
        close = difflib.get_close_matches(key.upper(), _CONFIG_KEYS, n=1)
        guess = f"did you mean {close[0]!r}? " if close else ""
        warnings.warn(
            f"app.config[{key!r}] is not a syncbridge setting and is ignored: "
            f"{guess}The settings are {', '.join(_CONFIG_KEYS)}",
            UserWarning,
            stacklevel=4,  # the app's SyncBridge(app) or init_app(app)
        )


def _config_error(exc: Exception, key: str, convert: str) -> Exception:
    """Say where the bad value came from, when to fix it and how to convert it."""
    return type(exc)(
        f"{exc}. Fix the app config before SyncBridge(app) or init_app(app) reads "
        "it (a value from the environment must be converted first, e.g. "
        f"{convert}(os.environ[{key!r}]))"
    )


class _Settings:
    """An app's ``SYNCBRIDGE_*`` config, checked once by ``init_app``."""

    __slots__ = (
        "__weakref__",
        "_pid",
        "blocking_threshold",
        "pools",
        "threads",
        "timeout",
    )

    def __init__(
        self,
        timeout: float | None,
        threads: int | None,
        pools: dict[str, PoolBounds],
        blocking_threshold: float | None,
    ) -> None:
        self.timeout = timeout
        self.threads = threads
        self.pools = pools
        self.blocking_threshold = blocking_threshold
        self._pid = 0

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> _Settings:
        key, convert = _CONFIG_TIMEOUT, "float"
        try:
            timeout = check_seconds(
                config[key], f"app.config[{key!r}]", none="no timeout"
            )
            key, convert = _CONFIG_THREADS, "int"
            threads = config[key]
            if threads is not None:
                threads = check_capacity(threads, f"app.config[{key!r}]")
            key, convert = _CONFIG_POOLS, "json.loads"
            checked = check_pools(config[key], f"app.config[{key!r}]")
            key, convert = _CONFIG_BLOCKING, "float"
            blocking = config[key]
            if blocking is not False:  # False, like None, switches the watch off
                blocking = check_seconds(
                    blocking, f"app.config[{key!r}]", none="no watch"
                )
        except (TypeError, ValueError) as exc:
            raise _config_error(exc, key, convert) from None
        return cls(timeout, threads, checked, blocking or None)

    def apply(self) -> None:
        """Size the default bridge and create or resize its pools."""
        self._pid = os.getpid()
        # Kept in the order apps were set up: in a forked child they apply
        # again in that order, so the last one wins there as it did here.
        _applied[:] = [r for r in _applied if r() not in (None, self)]
        _applied.append(weakref.ref(self))
        bridge = get_bridge()
        # The portal loop, and so its watch, is the process's: the last app set
        # up decides, and None switches the watch off for all of them.
        describe = None if self.blocking_threshold is None else _describe_view
        bridge.watch_portal(self.blocking_threshold, describe=describe)
        if self.threads is not None:
            bridge.max_workers = self.threads
        for name, pool in self.pools.items():
            bridge.set_pool(name, pool.capacity, **pool.bounds())
        # An unknown pool's error then names the app's setting, not Bridge(...).
        name_pool_setting(
            bridge, f"app.config[{_CONFIG_POOLS!r}] = {{{{{{name!r}}: n}}}}"
        )

    @staticmethod
    def apply_in_forked_child() -> None:
        # A forked worker (gunicorn --preload) gets a new default bridge: size
        # it, create its pools and watch it at once, not at the first request.
        for ref in _applied.copy():  # apply() re-appends each one
            settings = ref()
            if settings is not None:
                settings.apply()

    def apply_if_forked(self) -> None:
        # A forked worker (gunicorn) gets a new default bridge: size it too.
        if self._pid != os.getpid():
            self.apply()


_applied: list[weakref.ref[_Settings]] = []
# Must run after syncbridge's own fork hook (_core/_process.py), which drops the
# parent's default bridge: run before it, it would configure that bridge and the
# child's new one would start unconfigured. Fork hooks run in the order they
# were registered, and this module imports syncbridge, which registers its hook,
# before this line runs.
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_Settings.apply_in_forked_child)


class _EnsureSync:
    """``app.ensure_sync``: coroutine functions run on the portal loop."""

    __slots__ = ("settings",)

    def __init__(self, settings: _Settings) -> None:
        self.settings = settings

    def __call__(self, func: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(func):
            return functools.partial(_run_coroutine, self.settings, func)
        return func


def _run_coroutine(
    settings: _Settings,
    func: Callable[..., Awaitable[Any]],
    /,
    *args: Any,
    **kwargs: Any,
) -> Any:
    settings.apply_if_forked()
    timeout = getattr(func, _TIMEOUT_ATTR, settings.timeout)
    changed: list[list[tuple[contextvars.ContextVar[Any], Any]]] = []
    request = _current_request()
    # The 504 made on timeout, to tell it from one the view raised itself.
    # Appended (maybe on the loop) before the call ends; read here after.
    made: list[Exception] = []
    try:
        # With a timeout, a deadline like to_sync's: the view is cancelled
        # once, and the 504 comes once its cleanup has ended (or the bridge's
        # grace has passed).
        return call_with_timeout(
            get_bridge(),
            timeout,
            _run_view,
            (func, args, kwargs, changed, request),
            {},
            None
            if timeout is None
            else functools.partial(_gateway_timeout, func, timeout, made),
            entry="flask",
            subject=func,
        )
    except DeadlockError:
        name = getattr(func, "__qualname__", repr(func))
        raise DeadlockError(
            f"Flask called the coroutine function {name}() from a thread that is "
            "running an event loop, where waiting for it would block that loop "
            "forever (the test client inside an async test?). Make the request from "
            "a worker thread: await syncbridge.run_blocking(client.get, '/')."
        ) from None
    except PoolSaturated as exc:
        if request is None:  # no request to answer: a hook outside one
            raise
        raise _service_unavailable(exc) from exc
    except Exception as exc:
        if made and exc is made[0] and request is not None:
            _log_gateway_timeout(request, exc)
        raise
    finally:
        if changed:  # the coroutine ran to its end
            for var, value in changed.pop():
                var.set(value)


async def _run_view(
    func: Callable[..., Awaitable[T]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    changed: list[list[tuple[contextvars.ContextVar[Any], Any]]],
    request: object,  # only read by _describe_view, if this blocks the loop
) -> T:
    started = contextvars.copy_context()
    try:
        return await func(*args, **kwargs)
    finally:
        # Worked out here, so the contexts (which hold the request and the
        # app) are dropped by this thread, which made them: on a free-threaded
        # build an object dropped last by another thread may be freed only
        # when its maker next runs, for the portal loop its next wake-up (#22).
        changed.append(_changed_since(started))


def _gateway_timeout(
    func: Callable[..., Awaitable[Any]], seconds: float, made: list[Exception]
) -> Exception:
    """The 504 a view (or hook) gets when its timeout ended it; kept in *made*."""
    from werkzeug.exceptions import GatewayTimeout

    name = getattr(func, "__qualname__", repr(func))
    error = GatewayTimeout(f"{name}() did not finish within {seconds:g} s.")
    made.append(error)
    return error


def _log_gateway_timeout(request: object, error: Exception) -> None:
    where = f"{getattr(request, 'method', '?')} {getattr(request, 'path', '?')}"
    _logger.warning(
        "%s was answered 504 Gateway Timeout: %s",
        where,
        getattr(error, "description", error),
        extra={"syncbridge_event": "request-timed-out", "syncbridge_request": where},
    )


def _service_unavailable(exc: PoolSaturated) -> Exception:
    """The 503 a request gets when a saturated pool refused its call.

    A ``werkzeug`` ``ServiceUnavailable`` with ``Retry-After`` that is also a
    :class:`~syncbridge.PoolSaturated` with *exc*'s fields, so the app's
    ``errorhandler(503)``, ``errorhandler(PoolSaturated)`` (or a base class's)
    answers it, in Flask's order: by code first, then by class.
    """
    error = _saturated_class()(
        description=_SATURATED_DETAIL, retry_after=retry_after(exc)
    )
    for field in ("pool", "capacity", "busy", "waiting", "option", "limit"):
        setattr(error, field, getattr(exc, field))
    return error


@functools.cache
def _saturated_class() -> type[ServiceUnavailable]:
    from werkzeug.exceptions import ServiceUnavailable

    # PoolSaturated first: errorhandler(PoolSaturated) and (SyncBridgeError)
    # come before errorhandler(HTTPException) in Flask's lookup by class.
    # Pickled, it becomes a plain PoolSaturated (PoolSaturated.__reduce__).
    class SaturatedServiceUnavailable(PoolSaturated, ServiceUnavailable):
        def __init__(self, description: str, retry_after: int) -> None:
            ServiceUnavailable.__init__(self, description, retry_after=retry_after)

    SaturatedServiceUnavailable.__module__ = __name__
    SaturatedServiceUnavailable.__qualname__ = "SaturatedServiceUnavailable"
    return SaturatedServiceUnavailable


_RUN_VIEW_CODE: Final = _run_view.__code__


def _current_request() -> object:
    from flask import has_request_context, request

    if not has_request_context():
        return None
    return cast("object", request._get_current_object())  # type: ignore[attr-defined]


def _describe_view(frame: FrameType) -> str | None:
    """Name the view whose coroutine is on this (blocked loop's) stack, if any."""
    f: FrameType | None = frame
    while f is not None:
        if f.f_code is _RUN_VIEW_CODE:
            local = f.f_locals
            name = callable_name(local.get("func"))
            request = local.get("request")
            if request is None:  # a hook or background work outside a request
                return f"while running the Flask coroutine {name}()"
            method = getattr(request, "method", "?")
            path = getattr(request, "path", "?")
            endpoint = getattr(request, "endpoint", None)
            return f"while serving {method} {path} (endpoint {endpoint!r}, view {name})"
        f = f.f_back
    return None


def _changed_since(
    started: contextvars.Context,
) -> list[tuple[contextvars.ContextVar[Any], Any]]:
    """The context variables the running coroutine set since *started*.

    The caller sets them in its own thread: as in a sync view (and with Flask's
    own async support), a variable set in an async ``before_request`` is then
    seen by the view and the later hooks. Only what the coroutine itself set
    is copied: not what the bridge set around it.
    """
    return [
        (var, value)
        for var, value in contextvars.copy_context().items()
        if started.get(var, _MISSING) is not value
    ]


class _BackgroundWork:
    """One ``background()`` call: its target, and the app context it runs in.

    The app context is pushed at once in a fresh :mod:`contextvars` context (the
    request's variables must not outlive the request) and popped exactly once
    when the work ends, in a thread that is not the loop's: popping runs the
    app's ``teardown_appcontext`` functions, which may block or be async. Work
    cancelled before it ever started is cleaned up by the future's callback
    instead; :meth:`claim` decides which of the two does it.
    """

    __slots__ = ("_claim", "app", "app_ctx", "args", "context", "kwargs", "target")

    def __init__(
        self,
        app: Flask,
        target: Callable[..., Awaitable[Any]] | Awaitable[Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        self.app = app
        self.target = target
        self.args = args
        self.kwargs = kwargs
        self._claim = threading.Lock()
        self.context = contextvars.Context()
        self.app_ctx = app.app_context()
        self.context.run(self.app_ctx.push)

    @property
    def name(self) -> str:
        return getattr(self.target, "__qualname__", None) or repr(self.target)

    def claim(self) -> bool:
        """Return True for the first caller only: the one that runs the work."""
        return self._claim.acquire(blocking=False)

    def pop(self, error: BaseException | None) -> None:
        """Tear the app context down; call it from a thread without a loop."""
        try:
            self.context.run(self.app_ctx.pop, error)
        except Exception:
            self.app.logger.exception(
                "tearing down the app context of background task %s failed",
                self.name,
                extra={
                    "syncbridge_event": "background-teardown-failed",
                    "syncbridge_task": self.name,
                },
            )

    async def pop_off_the_loop(self, error: BaseException | None) -> None:
        # Shielded from anyio cancellation, and abandon_on_cancel=False waits
        # for the teardown through asyncio's own cancellation too (#11).
        with anyio.CancelScope(shield=True):
            try:
                await to_async(self.pop, abandon_on_cancel=False)(error)
            except BridgeClosed:
                # The bridge is closing (interpreter exit): its workers are
                # gone, yet the app's teardown functions must still run.
                try:
                    await anyio.to_thread.run_sync(self.pop, error)
                except RuntimeError:
                    # Python 3.12 starts no thread at interpreter exit: tear
                    # down here, on the loop, which is stopping anyway.
                    self.pop(error)

    def clean_up_if_never_started(self, future: concurrent.futures.Future[Any]) -> None:
        if not future.cancelled() or not self.claim():
            return
        self.app.logger.warning(
            "background task %s was cancelled before it started",
            self.name,
            extra={
                "syncbridge_event": "background-never-started",
                "syncbridge_task": self.name,
            },
        )
        if inspect.iscoroutine(self.target):
            self.target.close()  # never started: do not leave it "never awaited"
        # This callback may run on the loop (or inside the caller's cancel()),
        # where the app's teardown functions must not run: give them a thread,
        # a daemon one, like every thread of ours, so it never holds up exit.
        try:
            new_thread(
                target=self.pop,
                args=(None,),
                name="syncbridge-flask-teardown",
                daemon=True,
            ).start()
        except RuntimeError:  # interpreter exit (Python 3.12+): no new thread
            self.pop(None)


async def _run_in_background(work: _BackgroundWork) -> Any:
    if not work.claim():
        return None  # cancelled before it started, and already cleaned up
    error: BaseException | None = None
    try:
        if inspect.isawaitable(work.target):
            return await work.target
        return await work.target(*work.args, **work.kwargs)
    except anyio.get_cancelled_exc_class() as exc:
        error = exc
        work.app.logger.warning(
            "background task %s was cancelled",
            work.name,
            extra={
                "syncbridge_event": "background-cancelled",
                "syncbridge_task": work.name,
            },
        )
        raise
    except Exception as exc:
        error = exc
        work.app.logger.exception(
            "background task %s failed",
            work.name,
            extra={
                "syncbridge_event": "background-failed",
                "syncbridge_task": work.name,
            },
        )
        raise
    finally:
        await work.pop_off_the_loop(error)
