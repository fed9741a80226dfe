"""The portal loop: one persistent event loop on a background thread.

Sync code that has no loop of its own runs its coroutines here, so successive
calls share one loop (and the clients, pools and locks bound to it). The thread
starts on first use and stops in :meth:`Portal.close`, which cancels whatever is
still running after a grace period and logs each task it had to cancel.
"""

from __future__ import annotations

__all__ = ("Portal",)

import asyncio
import logging
import threading
from typing import TYPE_CHECKING, Any, Literal

from .._exceptions import BridgeClosed, closed_message
from ._loops import AsyncioLoop, Call, LoopHandle, TrioLoop

if TYPE_CHECKING:
    import trio

logger = logging.getLogger("syncbridge")

Backend = Literal["asyncio", "trio"]


class Portal:
    """A lazily started event loop thread (asyncio, uvloop or trio).

    Args:
        name: Used for the thread name (``syncbridge-portal-<name>``).
        backend: ``"asyncio"`` or ``"trio"``.
        use_uvloop: Run asyncio on uvloop when it is installed.
    """

    def __init__(self, name: str, backend: Backend, use_uvloop: bool) -> None:
        if backend not in ("asyncio", "trio"):
            raise ValueError(f"backend must be 'asyncio' or 'trio', got {backend!r}")
        self.name = name
        self.backend = backend
        self.use_uvloop = use_uvloop
        self._lock = threading.Lock()
        self._handle: LoopHandle | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._trio_calls: set[Call[Any]] = set()
        self._trio_stop: Any = None
        self._startup_error: BaseException | None = None

    @property
    def running(self) -> bool:
        """Whether the loop thread has been started and not yet stopped."""
        return self._handle is not None and not self._closed

    @property
    def thread(self) -> threading.Thread | None:
        """The loop thread, once started."""
        return self._thread

    def handle(self) -> LoopHandle:
        """Return the running loop, starting its thread on first use."""
        handle = self._handle
        if handle is not None and not self._closed:
            return handle
        with self._lock:
            if self._closed:
                raise BridgeClosed(closed_message("sync_call_async()"))
            if self._handle is None:
                self._start()
            assert self._handle is not None
            return self._handle

    def _start(self) -> None:
        ready = threading.Event()
        target = self._run_trio if self.backend == "trio" else self._run_asyncio
        thread = threading.Thread(
            target=target,
            args=(ready,),
            name=f"syncbridge-portal-{self.name}",
            daemon=True,
        )
        thread.start()
        ready.wait()
        if self._startup_error is not None:
            thread.join()
            error, self._startup_error = self._startup_error, None
            raise error
        self._thread = thread

    def _new_asyncio_loop(self) -> asyncio.AbstractEventLoop:
        if self.use_uvloop:
            try:
                import uvloop
            except ImportError:
                logger.info("uvloop is not installed; the portal runs on asyncio")
            else:
                loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
                return loop
        return asyncio.new_event_loop()

    def _run_asyncio(self, ready: threading.Event) -> None:
        try:
            loop = self._new_asyncio_loop()
        except BaseException as exc:
            self._startup_error = exc
            ready.set()
            return
        asyncio.set_event_loop(loop)
        self._handle = AsyncioLoop(loop)
        loop.call_soon(ready.set)
        try:
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            try:
                loop.run_until_complete(loop.shutdown_default_executor())
            except RuntimeError:
                # At interpreter exit Python 3.12 refuses the thread this starts
                # to join the executor; close() below shuts it down unjoined.
                pass
        finally:
            asyncio.set_event_loop(None)
            loop.close()

    def _run_trio(self, ready: threading.Event) -> None:
        try:
            import trio
        except ImportError:
            self._startup_error = ImportError(
                "Bridge(backend='trio') needs trio: pip install 'syncbridge[trio]'"
            )
            ready.set()
            return
        trio.run(self._trio_main, ready)

    async def _trio_main(self, ready: threading.Event) -> None:
        import trio

        self._trio_stop = trio.Event()
        self._handle = TrioLoop(
            trio.lowlevel.current_trio_token(), on_start=self._track_trio_call
        )
        ready.set()
        await self._trio_stop.wait()

    def _track_trio_call(self, call: Call[Any]) -> None:
        if len(self._trio_calls) >= 64:
            self._trio_calls = {c for c in self._trio_calls if not c.done}
        self._trio_calls.add(call)

    def close(self, grace: float) -> None:
        """Stop the loop: cancel what still runs after *grace* seconds, then join.

        Never hangs: after the grace period and the cancellation, the thread gets
        the same time again to finish, and is then left behind (it is a daemon).
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            handle, thread = self._handle, self._thread
        if handle is None or thread is None:
            return
        if thread is threading.current_thread():
            raise RuntimeError(
                "a Bridge cannot be closed from a coroutine running on its own "
                "portal loop; close it from the thread that created it"
            )
        if isinstance(handle, AsyncioLoop):
            try:
                asyncio.run_coroutine_threadsafe(
                    _drain_asyncio(handle.loop, grace), handle.loop
                )
            except RuntimeError:  # loop already closed
                pass
        else:
            try:
                handle.native.run_sync_soon(  # type: ignore[attr-defined]
                    self._start_trio_drain, grace
                )
            except Exception:
                pass
        thread.join(grace + max(grace, 1.0))
        if thread.is_alive():
            logger.warning(
                "syncbridge portal thread %r did not stop within %.1f s; leaving it "
                "behind (a coroutine on it ignores cancellation)",
                thread.name,
                2 * grace,
            )

    def _start_trio_drain(self, grace: float) -> None:
        import trio

        trio.lowlevel.spawn_system_task(self._drain_trio, grace)

    async def _drain_trio(self, grace: float) -> None:
        import trio

        calls = {c for c in self._trio_calls if not c.done}
        if calls:
            with trio.move_on_after(grace):
                # Polled: calls finish on their own tasks, which hold no event
                # of ours; this runs once, at close.
                while any(not c.done for c in calls):  # noqa: ASYNC110
                    await trio.sleep(0.01)
            for call in calls:
                if not call.done and call.cancel_on_loop is not None:
                    _log_cancelled(call.func)
                    call.cancel_on_loop()
        stop: trio.Event = self._trio_stop
        stop.set()

    def reset_after_fork(self) -> None:
        """Forget the parent's loop thread, which does not exist in this child."""
        self._lock = threading.Lock()
        self._handle = None
        self._thread = None
        self._trio_calls = set()


def _log_cancelled(what: object) -> None:
    logger.warning(
        "cancelled task %r: it was still running on the portal loop when its "
        "bridge closed",
        getattr(what, "__qualname__", what),
    )


async def _drain_asyncio(loop: asyncio.AbstractEventLoop, grace: float) -> None:
    me = asyncio.current_task()
    tasks = {t for t in asyncio.all_tasks(loop) if t is not me}
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            _log_cancelled(task.get_name())
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=grace)
    loop.stop()
