"""FastAPI and Starlette integration: ``install(app, ...)``.

One call sizes the app's worker capacity, registers named pools (bulkheads), turns
syncbridge's own timeouts (:class:`~syncbridge.SyncBridgeTimeout`) into
``504 Gateway Timeout`` responses and a saturated pool's refusals
(:class:`~syncbridge.PoolSaturated`) into ``503 Service Unavailable`` ones and, if
asked, watches
the app's event loop for blocking calls. Everything it starts runs inside the app's
lifespan, composed with the app's own.

FastAPI and Starlette are imported only when :func:`install` is called, so
``import syncbridge.fastapi`` costs nothing in a process that never uses them.
"""

from __future__ import annotations

__all__ = ("install",)

import contextlib
import inspect
import logging
import weakref
from typing import TYPE_CHECKING, Any, Final, cast

import anyio
import anyio.to_thread

from syncbridge import (
    Bridge,
    BridgeClosed,
    PoolSaturated,
    SyncBridgeTimeout,
    get_bridge,
    watch_loop,
)
from syncbridge._core._bridge import name_pool_setting
from syncbridge._exceptions import closed_message, retry_after
from syncbridge._validate import (
    PoolBounds,
    PoolConfig,
    check_capacity,
    check_pools,
    check_seconds,
)

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Callable, Mapping
    from contextlib import AbstractAsyncContextManager
    from types import FrameType

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.types import ASGIApp, Receive, Scope, Send

_logger: Final = logging.getLogger("syncbridge")

_STATE_KEY: Final = "syncbridge"
_TIMEOUT_DETAIL: Final = (
    "The server did not finish the request in time: an operation it waited for "
    "exceeded its timeout."
)
_SATURATED_DETAIL: Final = (
    "The server is too busy for this request now: an operation it needed was "
    "refused before it started. Retry after the time the Retry-After header gives."
)


def install(
    app: Starlette,
    *,
    threads: int | None = None,
    pools: Mapping[str, int | PoolConfig] | None = None,
    blocking_threshold: float | None = None,
    bridge: Bridge | None = None,
) -> None:
    """Run the app's blocking work on syncbridge: capacity, bulkheads, timeouts.

    Call it once, right after creating the app and before it starts. It wraps the
    app's lifespan (the one you passed, which keeps running, inside this one).
    The settings take effect at once, and again each time the server starts the
    app (a forked worker applies them to its own bridge):

    - *threads* becomes the capacity of the bridge's default pool **and** of
      anyio's default thread limiter on the app's loop, which Starlette and FastAPI
      use for ``def`` routes, sync dependencies and ``run_in_threadpool``;
    - each of *pools* is created on the bridge (or resized, if it exists), so
      ``@syncbridge.to_async(pool="name")`` functions run in their own capacity and
      a saturated pool delays only its own callers;
    - a :class:`~syncbridge.SyncBridgeTimeout` that escapes a route (a
      ``to_async(timeout=...)`` or ``to_sync(timeout=...)`` deadline, a
      :class:`~syncbridge.GatherTimeout`) becomes a ``504`` response with a JSON
      ``{"detail": ...}`` body, unless the app has its own handler for it (for
      :class:`~syncbridge.SyncBridgeTimeout` or a subclass, or for a base class:
      :class:`~syncbridge.SyncBridgeError`, :class:`TimeoutError`,
      :class:`OSError`, registered before or after this call), which then
      answers instead. Each such 504 is logged (``request-timed-out``, naming
      the request and the deadline). Any other exception, a
      :class:`TimeoutError` your code or a library raises included, is left to
      the app exactly as without syncbridge;
    - a :class:`~syncbridge.PoolSaturated` that escapes a route (a pool's
      ``max_waiting`` or ``max_wait`` refused a call, which never ran) becomes a
      ``503`` response with a JSON ``{"detail": ...}`` body and a
      ``Retry-After`` header: the refusing ``max_wait`` rounded up to whole
      seconds, or 1 for a ``max_waiting`` refusal. The app's own handler for
      it, or for :class:`~syncbridge.SyncBridgeError`, answers instead, as for
      the 504;
    - with *blocking_threshold*, each time the app's event loop is blocked for
      longer than that, one warning is logged on the ``syncbridge`` logger, naming
      the request (method and path) and showing the stack of the code that blocks.

    The bridge is *bridge* or, by default, the process-wide one from
    :func:`~syncbridge.get_bridge`, looked up at each startup (a forked worker
    process gets its own). The app closes a bridge passed as *bridge* when it
    shuts down; it never closes the default bridge, which other code in the
    process may share and which is closed at interpreter exit.

    Runs on:
        This call checks the arguments, records them on
        ``app.state.syncbridge``, and sizes the bridge and creates its pools at
        once (so ``to_async(pool=...)`` works even where the lifespan never runs,
        such as a ``TestClient`` used without ``with``); it does so again at each
        startup, for forked workers. At startup and shutdown, the lifespan work runs
        on the app's event loop (asyncio or trio) and never blocks it: closing
        a *bridge* you passed, and waiting for the monitor thread to end, run
        in a worker thread. With *blocking_threshold*, the app's loop is
        watched by :func:`syncbridge.watch_loop` (a heartbeat on the loop and a
        thread named ``syncbridge-watch-<loop>``) from startup to shutdown.
        Without it, nothing is added to the request path.

    Cancellation:
        A request whose blocking call times out is answered at once;
        the worker thread runs on until the function returns (its pool slot stays
        taken until then; :func:`~syncbridge.check_cancelled` lets it stop
        early). Shutting the app down does not wait for such threads, except
        those of a *bridge* you passed, which get its ``shutdown_grace``.

    Args:
        app: The FastAPI or Starlette application.
        threads: Worker capacity for the default pool and Starlette's threadpool
            (both default to 40). Size it for the blocking I/O the app waits on.
        pools: Named pools to register, as ``{name: capacity}``, or with
            bounds on their queue, as ``{name: {"capacity": 10,
            "max_waiting": 32, "max_wait": 0.5}}``
            (a :class:`~syncbridge.PoolConfig`).
        blocking_threshold: Seconds the event loop may be blocked before a
            warning is logged; ``None`` (the default) turns detection off.
        bridge: Use this bridge instead of the default one; the app closes it at
            shutdown. ``to_async`` functions must then be given the same bridge
            (``to_async(bridge=...)``).

    Raises:
        TypeError: If *app* is not a Starlette application, a capacity is not
            an int, *pools* is not a mapping of names, *blocking_threshold* is
            not a number or ``None``, or *bridge* is not a
            :class:`~syncbridge.Bridge`.
        ValueError: If a capacity is below 1, a pool name is empty, or
            *blocking_threshold* is not a finite number of seconds above 0.
        RuntimeError: If syncbridge is already installed on *app*, or *app* has
            already started.
        BridgeClosed: If *bridge* is closed: here, or at a later startup once
            an earlier shutdown of the app closed it (pass a new bridge to
            restart the app).

    .. versionadded:: 0.1
    """
    try:
        from starlette.applications import Starlette
        from starlette.middleware import Middleware
    except ImportError as exc:  # pragma: no cover - starlette comes with fastapi
        raise ImportError(
            "syncbridge.fastapi needs FastAPI or Starlette; install it with: "
            "pip install 'syncbridge[fastapi]'"
        ) from exc

    if not isinstance(app, Starlette):  # pyright: ignore[reportUnnecessaryIsInstance] - untyped callers
        raise TypeError(
            "syncbridge.fastapi.install() takes a FastAPI or Starlette application, "
            f"got {type(app).__name__!r}"
        )
    settings = _Settings(
        threads=None
        if threads is None
        else check_capacity(threads, "syncbridge.fastapi.install(threads=...)"),
        pools=_pools(pools),
        blocking_threshold=check_seconds(
            blocking_threshold,
            "syncbridge.fastapi.install(blocking_threshold=...)",
            none="no loop-block detection",
        ),
        bridge=_bridge(bridge),
    )
    if getattr(app.state, _STATE_KEY, None) is not None:
        raise RuntimeError(
            "syncbridge.fastapi.install() was already called on this app; call it "
            "once, with every option (threads=..., pools=..., blocking_threshold=...)"
        )
    if app.middleware_stack is not None:
        raise RuntimeError(
            "syncbridge.fastapi.install() must be called before the app starts "
            "(before the server or TestClient first runs it); call it right after "
            "creating the app"
        )

    # Now, so that to_async(pool=...) works even if the lifespan never runs (a
    # TestClient used without `with`); again at each startup, for forked workers.
    _configure(settings)
    setattr(app.state, _STATE_KEY, settings)
    app.router.lifespan_context = _compose(app.router.lifespan_context, settings)
    # Only syncbridge's own timeouts: a handler for TimeoutError would also
    # catch a socket's or a driver's, and change how a response that already
    # started reports any of them (#16).
    handlers = app.exception_handlers
    if SyncBridgeTimeout not in handlers:
        handler = _FallbackHandler(app, SyncBridgeTimeout, _gateway_timeout)
        app.add_exception_handler(SyncBridgeTimeout, handler)
    if PoolSaturated not in handlers:
        handler = _FallbackHandler(app, PoolSaturated, _service_unavailable)
        app.add_exception_handler(PoolSaturated, handler)
    if settings.blocking_threshold is not None:
        # Innermost of the user middleware: a middleware that runs the rest of the
        # request in a new task (BaseHTTPMiddleware) breaks the chain of frames the
        # monitor walks, so the marker must sit between any such one and the route.
        app.user_middleware.append(Middleware(_RequestMarker))


# -- arguments -------------------------------------------------------------------


class _Settings:
    """What install() was asked for, kept on ``app.state.syncbridge``."""

    __slots__ = ("blocking_threshold", "bridge", "pools", "threads")

    def __init__(
        self,
        *,
        threads: int | None,
        pools: dict[str, PoolBounds],
        blocking_threshold: float | None,
        bridge: Bridge | None,
    ) -> None:
        self.threads = threads
        self.pools = pools
        self.blocking_threshold = blocking_threshold
        self.bridge = bridge

    def __repr__(self) -> str:
        return (
            f"<syncbridge.fastapi settings threads={self.threads} pools={self.pools} "
            f"blocking_threshold={self.blocking_threshold} bridge={self.bridge!r}>"
        )


def _pools(pools: object) -> dict[str, PoolBounds]:
    return check_pools(pools, "syncbridge.fastapi.install(pools=...)")


def _bridge(value: object) -> Bridge | None:
    if value is None or isinstance(value, Bridge):
        return value
    raise TypeError(
        "syncbridge.fastapi.install(bridge=...) must be a syncbridge.Bridge or None "
        f"(the default bridge), got {type(value).__name__!r}"
    )


# -- lifespan --------------------------------------------------------------------


def _compose(user_lifespan: Any, settings: _Settings) -> Any:
    """Wrap the app's lifespan context: ours outside, the user's inside."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncGenerator[Any]:
        async with contextlib.AsyncExitStack() as stack:
            bridge = _start(settings)
            if settings.bridge is not None:
                await stack.enter_async_context(bridge)
            user: AbstractAsyncContextManager[Any] = user_lifespan(app)
            state = await stack.enter_async_context(user)
            if settings.blocking_threshold is not None:
                await stack.enter_async_context(
                    watch_loop(settings.blocking_threshold, describe=_request_of)
                )
            # Starlette's lifespan state protocol: pass the user's state through.
            yield state

    return lifespan


def _start(settings: _Settings) -> Bridge:
    """Apply the settings on the app's loop; return the bridge in use."""
    bridge = _configure(settings)
    if settings.threads is not None:
        limiter = anyio.to_thread.current_default_thread_limiter()  # per loop
        limiter.total_tokens = settings.threads
    return bridge


def _configure(settings: _Settings) -> Bridge:
    """Size the bridge and create or resize its pools; return the bridge."""
    bridge = settings.bridge if settings.bridge is not None else get_bridge()
    if bridge.closed:
        if settings.bridge is None:
            raise BridgeClosed(
                closed_message("syncbridge.fastapi.install(app)", default=True)
            )
        raise BridgeClosed(
            f"the app cannot start: {bridge!r}, passed to "
            "syncbridge.fastapi.install(bridge=...), is closed (the app closes it "
            "when it shuts down). Pass a new Bridge to restart the app, or omit "
            "bridge= to use the default bridge"
        )
    if settings.threads is not None:
        bridge.max_workers = settings.threads
    for name, pool in settings.pools.items():
        bridge.set_pool(name, pool.capacity, **pool.bounds())
    # An unknown pool's error then names the app's setting, not Bridge(...).
    name_pool_setting(bridge, "syncbridge.fastapi.install(app, pools={{{name!r}: n}})")
    return bridge


class _FallbackHandler:
    """The app's handler for one of syncbridge's errors, unless the app has its own.

    Registered for *cls*, it comes first in Starlette's lookup (by the
    exception's MRO), so a handler the app has for a base class of *cls*
    (``TimeoutError``, ``OSError``, ``SyncBridgeError``) is looked up here and
    answers instead; else *answer* makes the response.
    """

    __slots__ = ("_answer", "_app", "_cls")

    def __init__(
        self,
        app: Starlette,
        cls: type[Exception],
        answer: Callable[[Request, Any], Response],
    ) -> None:
        self._app = weakref.ref(app)  # the app holds this handler
        self._cls = cls
        self._answer = answer

    async def __call__(self, conn: Request, exc: Exception) -> Response:
        from starlette.concurrency import run_in_threadpool

        app = self._app()
        handlers = app.exception_handlers if app is not None else {}
        mro = type(exc).__mro__
        for cls in mro[mro.index(self._cls) + 1 :]:
            if cls is Exception:
                break
            handler: Any = handlers.get(cls)
            if handler is not None:
                if inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
                    getattr(handler, "__call__", None)  # noqa: B004
                ):
                    response: Response = await handler(conn, exc)
                else:
                    response = await run_in_threadpool(handler, conn, exc)
                return response
        if conn.scope["type"] != "http":
            raise exc  # a WebSocket gets no response: as without a handler
        return self._answer(conn, exc)


def _gateway_timeout(conn: Request, exc: SyncBridgeTimeout) -> Response:
    """A 504 for a deadline of syncbridge's; logged, as the client learns little."""
    from starlette.responses import JSONResponse

    where = f"{conn.method} {conn.url.path}"
    # A worker call's timeout says whether it was queued or running (#25): its
    # message does, and these fields (None where that does not apply).
    _logger.warning(
        "%s was answered 504 Gateway Timeout: %s",
        where,
        exc,
        extra={
            "syncbridge_event": "request-timed-out",
            "syncbridge_request": where,
            "syncbridge_pool": getattr(exc, "pool", None),
            "syncbridge_queued": getattr(exc, "queued", None),
            "syncbridge_waited": getattr(exc, "waited", None),
            "syncbridge_ran": getattr(exc, "ran", None),
        },
    )
    return JSONResponse({"detail": _TIMEOUT_DETAIL}, status_code=504)


def _service_unavailable(conn: Request, exc: PoolSaturated) -> Response:
    """A 503 for a call a saturated pool refused, with ``Retry-After``."""
    from starlette.responses import JSONResponse

    seconds = retry_after(exc)
    return JSONResponse(
        {"detail": _SATURATED_DETAIL},
        status_code=503,
        headers={"Retry-After": str(seconds)},
    )


# -- loop-block detection ----------------------------------------------------------


class _RequestMarker:
    """Pure ASGI middleware whose frame marks the stack of a request in progress.

    The monitor finds this ``__call__`` frame (by its code object) on the blocked
    loop thread's stack and reads the request's ``scope`` from its locals.
    """

    __slots__ = ("app",)

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


_MARKER_CODE: Final = _RequestMarker.__call__.__code__


def _request_of(frame: FrameType) -> str | None:
    """Describe the request whose marker frame is on this stack, if any."""
    f: FrameType | None = frame
    while f is not None:
        if f.f_code is _MARKER_CODE:
            scope: object = f.f_locals.get("scope")
            # The lifespan scope passes the middleware too; it is no request.
            if isinstance(scope, dict):
                fields = cast("dict[str, object]", scope)
                kind, path = fields.get("type"), fields.get("path")
                if kind == "http":
                    return f"while serving {fields.get('method')} {path}"
                if kind == "websocket":
                    return f"while serving WebSocket {path}"
        f = f.f_back
    return None
