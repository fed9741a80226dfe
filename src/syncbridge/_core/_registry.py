"""A bridge's pools: the default, the thread-sensitive lane, named, ad hoc per executor."""

from __future__ import annotations

__all__ = ("PoolRegistry",)

import concurrent.futures
import threading
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

from .._stats import (
    DEFAULT_POOL,
    THREAD_SENSITIVE_POOL,
    WORKER_THREADS_POOL,
    BridgeStats,
)
from .._validate import (
    check_capacity,
    check_max_wait,
    check_max_waiting,
    check_name,
)
from ._counts import CountsSnapshot
from ._executor_pool import ExecutorPool
from ._workers import WorkerPool

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._exceptions import BridgeClosed
    from .._stats import PortalStats

_NO_CALLS: Final = CountsSnapshot(0, 0, 0, 0, 0)


class PoolRegistry:
    """Every pool of one bridge, the lookups of them, and their stats.

    The worker threads (the default pool, unless an executor replaces it), the
    one-thread lane for thread-sensitive calls, the named pools, and one
    :class:`ExecutorPool` per executor of ``to_async(executor=...)`` calls.
    After :meth:`close` it creates no pool: what it returned is all there is.
    A refusal (*refuse*) is the bridge's: it names the user's call.
    """

    def __init__(
        self,
        bridge_name: str,
        max_workers: int,
        executor: concurrent.futures.Executor | None,
    ) -> None:
        self.bridge_name = bridge_name
        self.worker_threads = WorkerPool(
            bridge_name, max_workers, label="bridge.max_workers"
        )
        self.default: WorkerPool | ExecutorPool = (
            self.worker_threads
            if executor is None
            else ExecutorPool(DEFAULT_POOL, executor, label="Bridge(executor=...)")
        )
        self.thread_sensitive = WorkerPool(
            f"{bridge_name}-sensitive", 1, idle_timeout=None
        )
        self.named: dict[str, WorkerPool | ExecutorPool] = {}
        # The pools of to_async(executor=...) calls (see _executor_pool), all
        # under _lock: by id() of their executor while it lives (a dict read
        # outside the lock is atomic, and its result checked); then, while an
        # awaiter still has to count its call, in _gone; then their totals
        # are folded into _retired, so the bridge's totals never go down.
        self._adhoc: dict[int, ExecutorPool] = {}
        self._gone: list[ExecutorPool] = []
        self._adhoc_made = 0
        self._closed = False
        # How the app's integration creates named pools, if one does: where
        # an unknown pool's error tells the user to add it.
        self.configured_by: str | None = None
        self._fresh_state()

    def _fresh_state(self) -> None:
        """The registry's own state in this process: set anew in a forked child."""
        self._lock = threading.Lock()
        # The child counts anew, as its pools do.
        self._retired: CountsSnapshot = _NO_CALLS

    def _reset_after_fork(self) -> None:
        """Forget the parent's calls; each pool forgets its own."""
        self._fresh_state()
        for pool in self.all():
            pool._reset_after_fork()  # pyright: ignore[reportPrivateUsage]

    def put(
        self,
        what: str,
        name: str,
        capacity: int | concurrent.futures.Executor,
        *,
        resize: bool,
        refuse: Callable[[str, object], BridgeClosed],
        max_waiting: int | None = None,
        max_wait: float | None = None,
    ) -> None:
        """Create the pool *name* (``add_pool``), or resize it if *resize*.

        *what* names the user's call in the errors; a closed registry raises
        ``refuse(what, name)``. Resizing applies the bounds too (``None``:
        unbounded). An executor's pool takes no bounds: the executor queues
        its calls, where no bound of ours can reach them.
        """
        check_name(name, f"{what}(name=...)")
        max_waiting = check_max_waiting(
            max_waiting, f"{what}({name!r}, max_waiting=...)"
        )
        max_wait = check_max_wait(max_wait, f"{what}({name!r}, max_wait=...)")
        bounded = max_waiting is not None or max_wait is not None
        if isinstance(capacity, concurrent.futures.Executor):
            if bounded:
                raise self._unbounded_executor(what, name)
            pool: WorkerPool | ExecutorPool = ExecutorPool(
                name, capacity, label=f"bridge.pool({name!r})"
            )
        else:
            capacity = check_capacity(capacity, f"{what}({name!r}, capacity=...)")
            pool = WorkerPool(
                f"{self.bridge_name}-{name}",
                capacity,
                label=f"bridge.pool({name!r}).capacity",
                max_waiting=max_waiting,
                max_wait=max_wait,
                title=name,
            )
        with self._lock:
            if self._closed:
                raise refuse(what, name)
            if name in (DEFAULT_POOL, THREAD_SENSITIVE_POOL, WORKER_THREADS_POOL):
                raise ValueError(
                    f"{name!r} names a built-in pool in Bridge.stats(); give the "
                    "named pool another name"
                )
            existing = self.named.get(name)
            if existing is None:
                self.named[name] = pool
                return
            if not resize:
                raise ValueError(
                    f"the bridge already has a pool named {name!r}; set "
                    f"bridge.pool({name!r}).capacity to resize it, or use "
                    "bridge.set_pool()"
                )
        assert isinstance(capacity, int)  # set_pool takes capacities only
        if isinstance(existing, WorkerPool):
            existing._configure(capacity, max_waiting, max_wait)  # pyright: ignore[reportPrivateUsage]
        elif bounded:
            raise self._unbounded_executor(what, name)
        else:
            existing.capacity = capacity  # an ExecutorPool says why it cannot

    @staticmethod
    def _unbounded_executor(what: str, name: str) -> ValueError:
        return ValueError(
            f"{what}({name!r}) runs on an executor, which queues the pool's calls "
            "itself: max_waiting and max_wait cannot bound that queue. Give the "
            "pool a capacity instead of an executor to bound it, or bound the "
            "executor's own queue"
        )

    def lookup(self, name: str, owner: object) -> WorkerPool | ExecutorPool:
        """The named pool of *owner* (a bridge, named in the error).

        Raises:
            KeyError: If there is no pool of that name; the message lists them.
        """
        check_name(name, "Bridge.pool(name=...)")
        try:
            return self.named[name]
        except KeyError:
            fix = (
                f"Bridge(pools={{{name!r}: n}}) or bridge.add_pool({name!r}, n)"
                if self.configured_by is None
                else self.configured_by.format(name=name)
            )
            raise KeyError(
                f"no pool named {name!r} on {owner!r}; known pools: "
                f"{sorted(self.named) or 'none'} (create it with {fix})"
            ) from None

    def for_executor(
        self,
        executor: concurrent.futures.Executor,
        func: object,
        refuse: Callable[[str, object], BridgeClosed],
    ) -> ExecutorPool:
        """The pool for ``to_async(executor=...)`` calls to *executor*.

        The default or named pool, if it runs on *executor*; else one per
        executor and bridge, counted in :meth:`stats` as ``"<ExecutorClass>-<n>"``
        for as long as the executor lives. The bridge holds the executor only
        while calls of its own are in it: once its user dropped it, its pool
        leaves :meth:`stats` (its calls stay in the totals). The caller must
        hold *executor* until it has submitted its call of *func*; a closed
        registry raises ``refuse("to_async", func)`` for a new executor.
        """
        pool = self._adhoc.get(id(executor))
        # An id is reused once its object is gone: check it is this executor.
        if pool is not None and pool._holds(executor):  # pyright: ignore[reportPrivateUsage]
            return pool
        with self._lock:
            for known in (self.default, *self.named.values()):
                # The same executor is one pool: a nested call must find its
                # blocked ancestor's slot there (_delegate), not wait behind it.
                if isinstance(known, ExecutorPool) and known._holds(executor):  # pyright: ignore[reportPrivateUsage]
                    return known
            pool = self._adhoc.get(id(executor))
            if pool is not None and pool._holds(executor):  # pyright: ignore[reportPrivateUsage]
                return pool
            if self._closed:
                raise refuse("to_async", func)
            self._forget_gone_executors()  # the one a reused id names too
            self._adhoc_made += 1
            name = f"{type(executor).__name__}-{self._adhoc_made}"
            pool = ExecutorPool._for_calls(  # pyright: ignore[reportPrivateUsage]
                name, executor, label="to_async(executor=...)"
            )
            self._adhoc[id(executor)] = pool
        return pool

    def _forget_gone_executors(self) -> None:
        """Drop the pools whose executor is gone once their calls are counted.

        Called with :attr:`_lock` held. Nothing can reach such a pool any more
        but the awaiters of its last calls, and their count only goes down: a
        pool whose calls all ended stays ended, and its totals move to
        :attr:`_retired`.
        """
        for key, pool in list(self._adhoc.items()):
            if pool._gone():  # pyright: ignore[reportPrivateUsage]
                del self._adhoc[key]
                self._gone.append(pool)
        if not self._gone:
            return
        retired, still = self._retired, list[ExecutorPool]()
        for pool in self._gone:
            counts = pool.counts.snapshot()
            ended = (
                counts.completed
                + counts.errors
                + counts.cancellations
                + counts.timeouts
                + counts.rejected
            )
            if ended < counts.calls:
                still.append(pool)
                continue
            retired = CountsSnapshot(
                *(a + b for a, b in zip(retired, counts, strict=True))
            )
        self._retired, self._gone = retired, still

    def all(self) -> list[WorkerPool | ExecutorPool]:
        """Every pool, each once: the ad hoc ones whose calls are not all counted too."""
        pools: list[WorkerPool | ExecutorPool] = [
            self.worker_threads,
            self.thread_sensitive,
        ]
        if self.default is not self.worker_threads:
            pools.append(self.default)
        with self._lock:
            adhoc = [*self._adhoc.values(), *self._gone]
        return [*pools, *self.named.values(), *adhoc]

    def close(self) -> list[WorkerPool | ExecutorPool]:
        """Create no pool from now on; return every pool, for the bridge to close."""
        with self._lock:
            self._closed = True
        return self.all()

    def stats_name(self, pool: WorkerPool | ExecutorPool) -> str:
        """*pool*'s name in :meth:`stats` (its key in ``BridgeStats.pools``)."""
        if pool is self.default:
            return DEFAULT_POOL
        if pool is self.thread_sensitive:
            return THREAD_SENSITIVE_POOL
        if pool is self.worker_threads:
            return WORKER_THREADS_POOL
        for name, named in list(self.named.items()):
            if named is pool:
                return name
        return pool.name  # a to_async(executor=...) pool: stats() names it so

    def stats(self, portal: PortalStats) -> BridgeStats:
        """The bridge's stats: each pool's, *portal*'s, and the totals of all."""
        pools = {
            DEFAULT_POOL: self.default.stats(),
            THREAD_SENSITIVE_POOL: self.thread_sensitive.stats(),
        }
        if self.default is not self.worker_threads:
            pools[WORKER_THREADS_POOL] = self.worker_threads.stats()
        for name, pool in list(self.named.items()):
            pools[name] = pool.stats()
        with self._lock:
            self._forget_gone_executors()
            adhoc = [*self._adhoc.values(), *self._gone]
            retired = self._retired
        for pool in adhoc:
            pools[pool.name] = pool.stats()
        calls = portal.calls + retired.calls
        completed = portal.completed + retired.completed
        errors = portal.errors + retired.errors
        cancellations = portal.cancellations + retired.cancellations
        timeouts = portal.timeouts + retired.timeouts
        rejected = retired.rejected
        abandoned = 0
        for p in pools.values():  # one pass: stats() may be called per request
            calls += p.calls
            completed += p.completed
            errors += p.errors
            cancellations += p.cancellations
            timeouts += p.timeouts
            rejected += p.rejected
            abandoned += p.abandoned
        return BridgeStats(
            pools=MappingProxyType(pools),
            portal=portal,
            calls=calls,
            completed=completed,
            errors=errors,
            cancellations=cancellations,
            timeouts=timeouts,
            abandoned=abandoned,
            portal_tasks=portal.tasks,
            portal_lag=portal.lag,
            rejected=rejected,
        )
