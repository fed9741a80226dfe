"""Benchmark: calling a coroutine function from a plain (non-loop) thread.

Run: ``python benchmarks/bench_sync_call_async.py [--quick] [--pin|--no-pin]``.

The main thread (no event loop) calls, back to back:

1. Trivial: ``async def f(): return 1`` via ``syncbridge.sync_call_async``,
   ``asyncio.run(f())`` per call, asgiref ``async_to_sync``, an anyio blocking
   portal kept open (``portal.call(f)``), and the floor:
   ``asyncio.run_coroutine_threadsafe(f(), loop).result()`` to a loop already
   running in a background thread. For information, ``sync_call_async`` on an
   isolated ``Bridge(use_uvloop=True)`` too.
2. Realistic: a call that uses a loop-bound resource opened once, a fake
   connection pool (see :class:`FakePool`). Contenders that keep one loop alive
   create the pool on their first call and reuse it; ``asyncio.run`` per call
   (and asgiref, which also runs a new loop per call from a plain thread) must
   create it again on every call, because an ``asyncio.Queue`` is bound to the
   loop that first used it.
3. Realistic, loopback TCP: one query (write a line, read the echo) through a
   pool of TCP_POOL_SIZE real connections (``asyncio.open_connection``) to an
   echo server on 127.0.0.1 that the script starts in a background thread with
   its own loop (see :func:`echo_server`, :class:`TcpPool`). Contenders that
   keep one loop alive open the pool on their first call and reuse it (closed
   at the end); ``asyncio.run`` per call and asgiref open the pool, query, and
   close every connection (``writer.close(); await writer.wait_closed()``) on
   every call.
4. trio: ``sync_call_async`` on a ``Bridge(backend="trio")`` portal beside
   ``trio.from_thread.run(f, trio_token=...)`` to a thread running ``trio.run``
   (the floor) and an anyio blocking portal on trio.
5. From an anyio worker on trio: inside ``trio.run``, one
   ``anyio.to_thread.run_sync`` worker calls back into its loop with
   ``sync_call_async`` (rule 1: the worker's own loop), ``trio.from_thread.run``
   and ``anyio.from_thread.run``.
6. Throughput, THREADS threads at once calling into one loop: ``sync_call_async``
   on the default bridge's portal, ``run_coroutine_threadsafe`` to one loop
   thread, and an anyio blocking portal (calls/s).

Sections 1-5 run pinned to one CPU (by default where the OS allows it), so they
measure the hand-off cost, not cross-core wake-up luck; section 6 runs on every
CPU. The default syncbridge bridge is used, and closed at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from queue import SimpleQueue
from typing import TYPE_CHECKING

import anyio.from_thread
import anyio.to_thread
import trio
import trio.from_thread
from _harness import (
    Contender,
    Sample,
    Settings,
    Target,
    parse_args,
    pin_one_cpu,
    print_header,
    print_latency,
    print_targets,
    print_throughput,
    run_sync,
    unpin,
)
from asgiref.sync import async_to_sync

import syncbridge

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Iterator
    from typing import Any

    AsyncFn = Callable[[], Coroutine[Any, Any, int]]

FLOOR = "run_coroutine_threadsafe floor"
SYNC_CALL_ASYNC = "syncbridge.sync_call_async"
ASYNCIO_RUN = "asyncio.run per call"
ASGIREF = "asgiref async_to_sync"
TRIO_FLOOR = "trio.from_thread.run to a trio thread"
TRIO_PORTAL = "Bridge(backend='trio').sync_call_async"
IN_WORKER = "sync_call_async in the worker"
WORKER_FLOOR = "trio.from_thread.run in the worker"
RCT = "run_coroutine_threadsafe to one loop thread"

THREADS = 50
"""Threads calling at once in the throughput section."""

POOL_SIZE = 10
"""Connections in the fake pool."""

CONNECT_STEPS = 2
"""Loop iterations (``await asyncio.sleep(0)``) to open one fake connection."""

TCP_HOST = "127.0.0.1"
"""Loopback only: the echo server listens here, on an ephemeral port."""

TCP_POOL_SIZE = 4
"""Connections in the loopback TCP pool."""

TCP_QUERY = b"ping\n"
"""The line one query writes; the echo server sends it back."""


async def trivial() -> int:
    """The trivial coroutine function of the first table."""
    return 1


class FakeConnection:
    """Stands in for a network connection: opening and querying need the loop."""

    @classmethod
    async def open(cls) -> FakeConnection:
        """Connect: CONNECT_STEPS loop iterations (connect, handshake)."""
        for _ in range(CONNECT_STEPS):
            await asyncio.sleep(0)
        return cls()

    async def query(self) -> int:
        """One round trip: one loop iteration."""
        await asyncio.sleep(0)
        return 1


class FakePool:
    """A connection pool on an ``asyncio.Queue`` (bound to one loop once used).

    :meth:`create` opens POOL_SIZE connections one after the other, so a new
    pool costs POOL_SIZE x CONNECT_STEPS loop iterations plus the allocations.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.idle: asyncio.Queue[FakeConnection] = asyncio.Queue()

    @classmethod
    async def create(cls) -> FakePool:
        """Open a pool of POOL_SIZE connections on the running loop."""
        pool = cls(asyncio.get_running_loop())
        for _ in range(POOL_SIZE):
            pool.idle.put_nowait(await FakeConnection.open())
        return pool

    async def query(self) -> int:
        """Borrow a connection, run one query, give the connection back."""
        conn = await self.idle.get()
        try:
            return await conn.query()
        finally:
            self.idle.put_nowait(conn)


def make_realistic() -> AsyncFn:
    """A coroutine function with its own lazily created, per-loop cached pool.

    Like a module-level client: the pool is made on the first call on a loop and
    reused by later calls on the same loop; a call on another loop (a new
    ``asyncio.run``) has to make a new one.
    """
    cache: list[FakePool] = []

    async def realistic() -> int:
        loop = asyncio.get_running_loop()
        if not cache or cache[0].loop is not loop:
            cache[:] = [await FakePool.create()]
        return await cache[0].query()

    return realistic


@contextlib.contextmanager
def echo_server() -> Iterator[int]:
    """A line echo server on TCP_HOST, ephemeral port; yields the port.

    Runs on its own asyncio loop in a daemon thread. On exit it stops listening,
    closes every connection still open and stops the loop.
    """
    loop = asyncio.new_event_loop()
    handlers: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}

    async def handle(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers[task] = writer
        try:
            while line := await reader.readline():
                writer.write(line)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            del handlers[task]
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def start() -> asyncio.Server:
        return await asyncio.start_server(handle, TCP_HOST, 0)

    async def stop(server: asyncio.Server) -> None:
        server.close()
        # Not task.cancel(): on 3.11 the streams callback then logs an error.
        # Closing the transport makes the pending readline() return b"" instead.
        # Only connections whose client closure the server has not read yet
        # remain here: every client pool is closed before the server stops.
        for writer in handlers.values():
            writer.close()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()

    thread = threading.Thread(target=loop.run_forever, name="bench-echo", daemon=True)
    thread.start()
    try:
        server = asyncio.run_coroutine_threadsafe(start(), loop).result()
        try:
            port: int = server.sockets[0].getsockname()[1]
            yield port
        finally:
            asyncio.run_coroutine_threadsafe(stop(server), loop).result()
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


class TcpPool:
    """TCP_POOL_SIZE connections to the echo server, lent out by an ``asyncio.Queue``.

    Bound to the loop that opened it (streams and queue alike).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]],
    ) -> None:
        self.loop = loop
        self.conns = conns
        self.idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )
        for conn in conns:
            self.idle.put_nowait(conn)

    @classmethod
    async def open(cls, port: int) -> TcpPool:
        """Open TCP_POOL_SIZE connections concurrently (as asyncpg's pool does)."""
        conns = await asyncio.gather(
            *(asyncio.open_connection(TCP_HOST, port) for _ in range(TCP_POOL_SIZE))
        )
        return cls(asyncio.get_running_loop(), list(conns))

    async def query(self) -> int:
        """Borrow a connection, write a line, read the echo, give it back."""
        reader, writer = await self.idle.get()
        try:
            writer.write(TCP_QUERY)
            await writer.drain()
            reply = await reader.readline()
        finally:
            self.idle.put_nowait((reader, writer))
        if reply != TCP_QUERY:
            raise RuntimeError(f"echo server replied {reply!r}")
        return 1

    async def aclose(self) -> None:
        """Close every connection and wait until each is closed."""
        for _, writer in self.conns:
            writer.close()
        await asyncio.gather(*(writer.wait_closed() for _, writer in self.conns))


class TcpClient:
    """Like a module-level client: a TcpPool opened on the first call, then reused.

    For contenders that keep one loop alive; :meth:`aclose` must run on that loop.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.pool: TcpPool | None = None

    async def query(self) -> int:
        """One query through the pool, opening it on the first call."""
        if self.pool is None:
            self.pool = await TcpPool.open(self.port)
        elif self.pool.loop is not asyncio.get_running_loop():
            # Opening a new pool would leak the old one's connections.
            raise RuntimeError("TcpClient used on a second event loop")
        return await self.pool.query()

    async def aclose(self) -> None:
        """Close the pool's connections, if a pool was opened."""
        pool, self.pool = self.pool, None
        if pool is not None:
            await pool.aclose()


def make_tcp_per_call(port: int) -> AsyncFn:
    """For a new loop per call: open the pool, query once, close every connection."""

    async def per_call() -> int:
        pool = await TcpPool.open(port)
        try:
            return await pool.query()
        finally:
            await pool.aclose()

    return per_call


def repeat(op: Callable[[], object]) -> Callable[[int], int]:
    """A batch: call *op* ``n`` times, one after the other."""

    def batch(n: int) -> int:
        for _ in range(n):
            op()
        return n

    return batch


@contextlib.contextmanager
def background_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An asyncio loop running forever in a daemon thread, for the floor."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="bench-floor", daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


@contextlib.contextmanager
def trio_thread() -> Iterator[trio.lowlevel.TrioToken]:
    """A ``trio.run`` in a daemon thread, idle until the block exits; its token."""
    tokens: SimpleQueue[tuple[trio.lowlevel.TrioToken, trio.Event]] = SimpleQueue()

    async def main() -> None:
        stop = trio.Event()
        tokens.put((trio.lowlevel.current_trio_token(), stop))
        await stop.wait()

    thread = threading.Thread(target=trio.run, args=(main,), name="bench-trio")
    thread.start()
    token, stop = tokens.get()
    try:
        yield token
    finally:
        trio.from_thread.run_sync(stop.set, trio_token=token)
        thread.join()


class TrioWorker:
    """One ``anyio.to_thread.run_sync`` worker of a ``trio.run`` in a thread.

    :meth:`batch` runs a batch inside that worker, where ``from_thread.run``
    and ``sync_call_async`` call back into the worker's own loop.
    """

    def __init__(self) -> None:
        self._jobs: SimpleQueue[tuple[Callable[[], object], int] | None] = SimpleQueue()
        self._done: SimpleQueue[BaseException | None] = SimpleQueue()
        self._thread = threading.Thread(
            target=trio.run, args=(self._main,), name="bench-trio-worker"
        )
        self._thread.start()

    def close(self) -> None:
        """Let the worker return, and the run end; wait for both."""
        self._jobs.put(None)
        self._thread.join()

    async def _main(self) -> None:
        await anyio.to_thread.run_sync(self._serve)

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            op, n = job
            try:
                for _ in range(n):
                    op()
            except BaseException as exc:
                self._done.put(exc)
            else:
                self._done.put(None)

    def batch(self, op: Callable[[], object]) -> Callable[[int], int]:
        """A batch: the worker calls *op* ``n`` times, one after the other."""

        def run(n: int) -> int:
            self._jobs.put((op, n))
            error = self._done.get()
            if error is not None:
                raise error
            return n

        return run


class Crowd:
    """THREADS threads, started once, that each make a share of every batch."""

    def __init__(self, size: int = THREADS) -> None:
        self.size = size
        self._jobs: list[SimpleQueue[tuple[Callable[[], object], int] | None]] = [
            SimpleQueue() for _ in range(size)
        ]
        self._done: SimpleQueue[BaseException | None] = SimpleQueue()
        self._threads = [
            threading.Thread(target=self._serve, args=(q,), name=f"bench-crowd-{i}")
            for i, q in enumerate(self._jobs)
        ]
        for thread in self._threads:
            thread.start()

    def close(self) -> None:
        """Stop every thread and wait for it."""
        for jobs in self._jobs:
            jobs.put(None)
        for thread in self._threads:
            thread.join()

    def _serve(
        self, jobs: SimpleQueue[tuple[Callable[[], object], int] | None]
    ) -> None:
        while (job := jobs.get()) is not None:
            op, n = job
            try:
                for _ in range(n):
                    op()
            except BaseException as exc:
                self._done.put(exc)
            else:
                self._done.put(None)

    def batch(self, op: Callable[[], object]) -> Callable[[int], int]:
        """A batch: every thread calls *op* ``n // size`` times, all at once."""

        def run(n: int) -> int:
            share = max(1, n // self.size)
            for jobs in self._jobs:
                jobs.put((op, share))
            errors = [self._done.get() for _ in self._jobs]
            for error in errors:
                if error is not None:
                    raise error
            return share * self.size

        return run


def trio_contenders(
    token: trio.lowlevel.TrioToken,
    trio_bridge: syncbridge.Bridge,
    trio_portal: anyio.from_thread.BlockingPortal,
) -> list[Contender[int]]:
    """Calling into trio from a plain thread."""
    return [
        Contender(
            TRIO_FLOOR,
            repeat(lambda: trio.from_thread.run(trivial, trio_token=token)),
        ),
        Contender(TRIO_PORTAL, repeat(lambda: trio_bridge.sync_call_async(trivial))),
        Contender(
            "anyio portal.call (backend='trio')",
            repeat(lambda: trio_portal.call(trivial)),
        ),
    ]


def worker_contenders(worker: TrioWorker) -> list[Contender[int]]:
    """Calling back into trio from an anyio worker thread of that run."""
    return [
        Contender(WORKER_FLOOR, worker.batch(lambda: trio.from_thread.run(trivial))),
        Contender(IN_WORKER, worker.batch(lambda: syncbridge.sync_call_async(trivial))),
        Contender(
            "anyio.from_thread.run in the worker",
            worker.batch(lambda: anyio.from_thread.run(trivial)),
        ),
    ]


def crowd_contenders(
    crowd: Crowd,
    loop: asyncio.AbstractEventLoop,
    portal: anyio.from_thread.BlockingPortal,
    uv_bridge: syncbridge.Bridge,
) -> list[Contender[int]]:
    """THREADS threads at once into one loop; 5x the usual batch."""
    return [
        Contender(
            RCT,
            crowd.batch(
                lambda: asyncio.run_coroutine_threadsafe(trivial(), loop).result()
            ),
            scale=5,
        ),
        Contender(
            SYNC_CALL_ASYNC,
            crowd.batch(lambda: syncbridge.sync_call_async(trivial)),
            scale=5,
        ),
        Contender(
            "Bridge(use_uvloop=True).sync_call_async",
            crowd.batch(lambda: uv_bridge.sync_call_async(trivial)),
            scale=5,
        ),
        Contender(
            "anyio portal.call", crowd.batch(lambda: portal.call(trivial)), scale=5
        ),
    ]


def measure_trio(settings: Settings) -> tuple[dict[str, Sample], dict[str, Sample]]:
    """Sections 4 and 5, each with its own loops, closed before returning."""
    with contextlib.ExitStack() as stack:
        token = stack.enter_context(trio_thread())
        trio_bridge = stack.enter_context(
            syncbridge.Bridge(backend="trio", name="bench-trio")
        )
        trio_portal = stack.enter_context(
            anyio.from_thread.start_blocking_portal(backend="trio")
        )
        portal_samples = run_sync(
            trio_contenders(token, trio_bridge, trio_portal), settings
        )
    with contextlib.closing(TrioWorker()) as worker:
        worker_samples = run_sync(worker_contenders(worker), settings)
    return portal_samples, worker_samples


def contenders(
    make: Callable[[], AsyncFn],
    loop: asyncio.AbstractEventLoop,
    portal: anyio.from_thread.BlockingPortal,
    uv_bridge: syncbridge.Bridge,
) -> list[Contender[int]]:
    """One contender per way of calling; each gets its own ``make()`` function."""
    floor_fn = make()
    sb_fn = make()
    uv_fn = make()
    portal_fn = make()
    run_fn = make()
    a2s = async_to_sync(make())
    return [
        Contender(
            FLOOR,
            repeat(lambda: asyncio.run_coroutine_threadsafe(floor_fn(), loop).result()),
        ),
        Contender(SYNC_CALL_ASYNC, repeat(lambda: syncbridge.sync_call_async(sb_fn))),
        Contender(
            "Bridge(use_uvloop=True).sync_call_async",
            repeat(lambda: uv_bridge.sync_call_async(uv_fn)),
        ),
        Contender("anyio portal.call", repeat(lambda: portal.call(portal_fn))),
        Contender(ASYNCIO_RUN, repeat(lambda: asyncio.run(run_fn())), scale=0.25),
        Contender(ASGIREF, repeat(a2s), scale=0.1),
    ]


@contextlib.contextmanager
def tcp_contenders(
    port: int,
    loop: asyncio.AbstractEventLoop,
    portal: anyio.from_thread.BlockingPortal,
    uv_bridge: syncbridge.Bridge,
) -> Iterator[list[Contender[int]]]:
    """The loopback TCP contenders; on exit, close the pools of the kept loops.

    Each pool is closed on its own loop, through the same way of calling, so
    this must exit before the loops, portal and bridges are closed.
    """
    floor_client, sb_client, uv_client, portal_client = (
        TcpClient(port) for _ in range(4)
    )
    per_call = make_tcp_per_call(port)
    a2s = async_to_sync(per_call)
    with contextlib.ExitStack() as closers:
        closers.callback(
            lambda: asyncio.run_coroutine_threadsafe(
                floor_client.aclose(), loop
            ).result()
        )
        closers.callback(syncbridge.sync_call_async, sb_client.aclose)
        closers.callback(uv_bridge.sync_call_async, uv_client.aclose)
        closers.callback(portal.call, portal_client.aclose)
        yield [
            Contender(
                FLOOR,
                repeat(
                    lambda: asyncio.run_coroutine_threadsafe(
                        floor_client.query(), loop
                    ).result()
                ),
            ),
            Contender(
                SYNC_CALL_ASYNC,
                repeat(lambda: syncbridge.sync_call_async(sb_client.query)),
            ),
            Contender(
                "Bridge(use_uvloop=True).sync_call_async",
                repeat(lambda: uv_bridge.sync_call_async(uv_client.query)),
            ),
            Contender(
                "anyio portal.call", repeat(lambda: portal.call(portal_client.query))
            ),
            Contender(ASYNCIO_RUN, repeat(lambda: asyncio.run(per_call())), scale=0.1),
            Contender(ASGIREF, repeat(a2s), scale=0.05),
        ]


def main() -> None:
    settings = parse_args(__doc__.splitlines()[0] if __doc__ else "")
    print_header(
        "bench_sync_call_async: call a coroutine from a plain thread", settings
    )
    where = pin_one_cpu(settings)
    with contextlib.ExitStack() as stack:
        loop = stack.enter_context(background_loop())
        portal = stack.enter_context(anyio.from_thread.start_blocking_portal())
        uv_bridge = stack.enter_context(
            syncbridge.Bridge(use_uvloop=True, name="bench-uvloop")
        )
        stack.callback(syncbridge.get_bridge().close)
        trivial_samples = run_sync(
            contenders(lambda: trivial, loop, portal, uv_bridge), settings
        )
        realistic_samples = run_sync(
            contenders(make_realistic, loop, portal, uv_bridge), settings
        )
        port = stack.enter_context(echo_server())
        with tcp_contenders(port, loop, portal, uv_bridge) as tcp:
            tcp_samples = run_sync(tcp, settings)
        trio_samples, worker_samples = measure_trio(settings)
        everywhere = unpin()
        with contextlib.closing(Crowd()) as crowd:
            crowd_samples = run_sync(
                crowd_contenders(crowd, loop, portal, uv_bridge), settings
            )

    notes = [
        f"CPU: {where}",
        (
            f"{FLOOR} = asyncio.run_coroutine_threadsafe(f(), loop).result(), "
            "loop running in a background thread"
        ),
        (
            "asgiref async_to_sync from a plain thread runs asyncio.run in a new "
            "one-thread executor per call"
        ),
    ]
    print_latency(
        "latency, trivial coroutine (async def f(): return 1)",
        trivial_samples,
        FLOOR,
        notes,
    )
    print_latency(
        f"latency, realistic: one query through a {POOL_SIZE}-connection pool",
        realistic_samples,
        FLOOR,
        [
            *notes,
            (
                f"pool = asyncio.Queue of {POOL_SIZE} fake connections opened one "
                f"after another, each {CONNECT_STEPS} x await asyncio.sleep(0); a "
                "query takes a connection, awaits asyncio.sleep(0) once, puts it back"
            ),
            (
                "made on the first call on a loop, then reused; asyncio.run and "
                "asgiref start a new loop per call, so they make a new pool every call"
            ),
        ],
    )
    print_latency(
        (
            f"latency, realistic: one query through a {TCP_POOL_SIZE}-connection "
            "loopback TCP pool"
        ),
        tcp_samples,
        FLOOR,
        [
            *notes,
            (
                f"pool = asyncio.Queue of {TCP_POOL_SIZE} asyncio.open_connection"
                f"({TCP_HOST!r}, port) streams, opened concurrently; a query takes "
                f"a connection, writes {TCP_QUERY!r}, awaits reader.readline(), "
                "puts it back"
            ),
            (
                "echo server: asyncio.start_server in this process, own loop in a "
                "background thread (same pinned CPU, shares the GIL)"
            ),
            (
                "opened on the first call on a kept loop, then reused (closed at "
                "the end); asyncio.run and asgiref open the pool, query, then "
                "writer.close() + await writer.wait_closed() on all of them, per call"
            ),
        ],
    )
    print_latency(
        "latency, trio: a plain thread calls a trivial coroutine on a trio loop",
        trio_samples,
        TRIO_FLOOR,
        [
            f"CPU: {where}",
            (
                f"{TRIO_FLOOR} = trio.from_thread.run(f, trio_token=token), "
                "trio.run idle in a background thread"
            ),
        ],
    )
    print_latency(
        "latency, trio: an anyio worker calls back into its own trio loop",
        worker_samples,
        WORKER_FLOOR,
        [
            f"CPU: {where}",
            (
                "one anyio.to_thread.run_sync worker of a trio.run in a background "
                "thread makes every call; sync_call_async there runs on that loop "
                "(rule 1), with the default bridge"
            ),
        ],
    )
    print_throughput(
        f"throughput: {THREADS} threads at once call a trivial coroutine on one loop",
        crowd_samples,
        RCT,
        [
            f"CPU: {everywhere}",
            (
                f"each of {THREADS} threads (started once) makes 1/{THREADS} of a "
                "batch; the loop: the default bridge's portal (asyncio), one "
                "asyncio loop thread, an anyio blocking portal (asyncio), a "
                "uvloop portal"
            ),
        ],
    )
    print_targets(
        targets(
            trivial_samples,
            realistic_samples,
            tcp_samples,
            trio_samples,
            worker_samples,
            crowd_samples,
        )
    )


def targets(
    trivial: dict[str, Sample],
    realistic: dict[str, Sample],
    tcp: dict[str, Sample],
    trio_portal: dict[str, Sample],
    worker: dict[str, Sample],
    crowd: dict[str, Sample],
) -> list[Target]:
    """The goals of the issue, from the measured medians."""
    sb = trivial[SYNC_CALL_ASYNC].median
    return [
        Target(
            "sync_call_async / run_coroutine_threadsafe floor",
            sb / trivial[FLOOR].median,
            1.3,
        ),
        Target(
            "sync_call_async / asyncio.run per call",
            sb / trivial[ASYNCIO_RUN].median,
            1.0,
        ),
        Target(
            "asgiref async_to_sync / sync_call_async (several x = 3x)",
            trivial[ASGIREF].median / sb,
            3.0,
            at_most=False,
        ),
        Target(
            "realistic, fake pool: asyncio.run per call / sync_call_async",
            realistic[ASYNCIO_RUN].median / realistic[SYNC_CALL_ASYNC].median,
            10.0,
            at_most=False,
        ),
        Target(
            "realistic, loopback TCP pool: asyncio.run per call / sync_call_async",
            tcp[ASYNCIO_RUN].median / tcp[SYNC_CALL_ASYNC].median,
            10.0,
            at_most=False,
        ),
        Target(
            "trio portal: sync_call_async / trio.from_thread.run (latency)",
            trio_portal[TRIO_PORTAL].median / trio_portal[TRIO_FLOOR].median,
            1.0,
        ),
        Target(
            "anyio worker on trio: sync_call_async / trio.from_thread.run",
            worker[IN_WORKER].median / worker[WORKER_FLOOR].median,
            1.0,
        ),
        Target(
            f"{THREADS} threads: sync_call_async / run_coroutine_threadsafe (calls/s)",
            crowd[RCT].median / crowd[SYNC_CALL_ASYNC].median,
            1.0,
            at_most=False,
        ),
    ]


if __name__ == "__main__":
    main()
