"""Snapshots of what a bridge is doing: Bridge.stats() and its parts."""

from __future__ import annotations

__all__ = ("WAIT_BOUNDS", "BridgeStats", "PoolStats", "PortalStats", "cumulative")

import math
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Final, final

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

DEFAULT_POOL: Final = "default"
"""The name of a bridge's default pool in :attr:`BridgeStats.pools`."""
THREAD_SENSITIVE_POOL: Final = "thread_sensitive"
"""The name of the one-thread lane (``to_async(thread_sensitive=True)``)."""
WORKER_THREADS_POOL: Final = "threads"
"""The name of the worker threads when ``Bridge(executor=...)`` took the default."""

WAIT_BOUNDS: Final = (
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, math.inf,
)  # fmt: skip
"""Upper bounds, in seconds, of :attr:`PoolStats.wait_buckets` (Prometheus's
default buckets, and 1 ms for calls that start at once)."""


def cumulative(counts: Sequence[int]) -> tuple[tuple[float, int], ...]:
    """``(bound, calls that waited <= bound)`` per bound of :data:`WAIT_BOUNDS`.

    *counts*: the calls per bucket, each counted in the first bound its wait
    does not exceed.
    """
    total = 0
    out: list[tuple[float, int]] = []
    for bound, count in zip(WAIT_BOUNDS, counts, strict=True):
        total += count
        out.append((bound, total))
    return tuple(out)


def _le(bound: float) -> str:
    """A bucket bound as Prometheus writes its ``le`` label."""
    return "+Inf" if bound == math.inf else repr(bound)


def _plain(stats: PoolStats | PortalStats) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field in fields(stats):
        value = getattr(stats, field.name)
        if field.name == "wait_buckets":
            value = {_le(bound): count for bound, count in value}
        out[field.name] = value
    return out


@final
@dataclass(frozen=True)
class PoolStats:
    """One worker pool at one moment: ``BridgeStats.pools`` holds one per pool.

    The totals count calls since the bridge was made; each call ends in exactly
    one of *completed*, *errors*, *cancellations*, *timeouts* or *rejected*, or
    is still in flight (running or waiting): ``calls = completed + errors +
    cancellations + timeouts + rejected + in flight``.

    .. versionadded:: 0.1
    """

    capacity: int
    """How many calls may run at once."""
    busy: int
    """Slots taken: calls running, awaited or abandoned."""
    waiting: int
    """Calls queued for a slot."""
    threads: int
    """Worker threads alive, busy or idle."""
    calls: int
    """Calls made to this pool."""
    completed: int
    """Calls that returned a value to their awaiter."""
    errors: int
    """Calls that raised an exception in their awaiter (the function's own, or
    :class:`~syncbridge.BridgeClosed`)."""
    cancellations: int
    """Calls whose awaiter was cancelled (not by a syncbridge timeout)."""
    timeouts: int
    """Calls ended by their ``to_async(timeout=...)``."""
    abandoned: int
    """Calls whose awaiter is gone while the function still runs (each holds a
    slot until it returns)."""
    rejected: int = 0
    """Calls refused by the pool's ``max_waiting``/``max_wait``
    (:class:`~syncbridge.PoolSaturated`); they never ran.

    .. versionadded:: 0.1
    """
    wait_seconds: float = 0.0
    """Seconds calls spent queued for a slot, in total: each call's wait is
    added as it leaves the queue (it starts, or is withdrawn, cancelled or
    refused), so a call still queued is not in it yet. ``rate()`` of it is the
    average number of calls waiting. On an :class:`~syncbridge.ExecutorPool`,
    only calls that run in this process (a thread pool) are timed; 0.0 for the
    others, whose start is not seen.

    .. versionadded:: 0.1
    """
    busy_seconds: float = 0.0
    """Slot-seconds used, in total: each slot's time from taken to given back,
    plus, for the slots taken now, their time so far (so it never decreases
    and a long call shows while it runs). ``rate()`` of it divided by
    :attr:`capacity` is the utilisation, which sampling :attr:`busy` misses
    when calls are short. On an :class:`~syncbridge.ExecutorPool`, as
    :attr:`wait_seconds`, from the calls that end.

    .. versionadded:: 0.1
    """
    wait_buckets: tuple[tuple[float, int], ...] = ()
    """The calls counted in :attr:`wait_seconds` by how long they waited:
    ``(bound, calls that waited at most bound seconds)`` for each bound of
    ``0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, inf``
    (cumulative, as a Prometheus histogram's buckets; the last count is every
    call that left the queue, including those that started at once).

    .. versionadded:: 0.1
    """

    def as_dict(self) -> dict[str, Any]:
        """Every field, ready for :func:`json.dumps`.

        ``wait_buckets`` becomes a dict keyed by bound as Prometheus writes it
        (``"0.001"`` ... ``"+Inf"``), so that no infinity reaches the JSON.
        """
        return _plain(self)


@final
@dataclass(frozen=True)
class PortalStats:
    """The bridge's portal loop at one moment: calls from sync code into async code.

    .. versionadded:: 0.1
    """

    running: bool
    """Whether the portal loop's thread runs (it starts on first need)."""
    tasks: int
    """Coroutines sent to the portal (``sync_call_async``, ``start_soon``) and not
    finished yet."""
    blocks: int
    """Stalls of the portal loop reported by its watch (``blocking_threshold``)
    since the bridge was made; 0 when it is not watched."""
    lag: float
    """Seconds a callback posted to the portal loop waits before it runs: the
    last one measured, or, while one is still waiting, how long it has waited.
    ``0.0`` before the loop starts. :meth:`~syncbridge.Bridge.stats` posts the
    next probe, at most one every 10 ms."""
    calls: int
    """Coroutines sent to the portal loop."""
    completed: int
    """Of those, how many returned a value."""
    errors: int
    """How many raised an exception of their own, or were ended by code on the
    portal loop stopping it (their callers got :class:`~syncbridge.SyncBridgeError`)."""
    cancellations: int
    """How many were cancelled (``future.cancel()``, Ctrl-C, a closing bridge; a
    ``start_soon`` future ended by the portal loop stopping)."""
    timeouts: int
    """How many were ended by their ``to_sync(timeout=...)``."""
    busy_seconds: float = 0.0
    """Task-seconds of the calls sent to the portal, in total: each call's time
    from sent to finished, plus, for the calls not finished, their time so far
    (so it never decreases). A portal call has no queue of its own to wait in,
    so there is no ``wait_seconds`` here: :attr:`lag` is its wait.

    .. versionadded:: 0.1
    """

    def as_dict(self) -> dict[str, Any]:
        """Every field, ready for :func:`json.dumps`."""
        return _plain(self)


@final
@dataclass(frozen=True)
class BridgeStats:
    """What :meth:`Bridge.stats() <syncbridge.Bridge.stats>` returns: an immutable snapshot.

    Cheap enough to take on every request (see the benchmarks). Assigning to a
    field raises :class:`dataclasses.FrozenInstanceError`.

    .. versionadded:: 0.1
    """

    pools: Mapping[str, PoolStats]
    """One :class:`PoolStats` per pool: ``"default"``, ``"thread_sensitive"``
    (the one-thread lane) and each named pool, by name. Read-only."""
    portal: PortalStats
    """The portal loop."""
    calls: int
    """Calls since the bridge was made, both directions (every pool, and the
    portal)."""
    completed: int
    """Of those, how many returned a value."""
    errors: int
    """How many raised an exception."""
    cancellations: int
    """How many were cancelled (not by a syncbridge timeout)."""
    timeouts: int
    """How many were ended by a syncbridge timeout."""
    abandoned: int
    """Worker calls abandoned by their awaiter that still run now."""
    portal_tasks: int
    """``portal.tasks``: coroutines pending on the portal loop."""
    portal_lag: float
    """``portal.lag``: the portal loop's current lag, in seconds."""
    rejected: int = 0
    """How many a saturated pool refused (:class:`~syncbridge.PoolSaturated`)."""
    wait_seconds: float = 0.0
    """Every pool's :attr:`PoolStats.wait_seconds`, summed.

    .. versionadded:: 0.1
    """
    busy_seconds: float = 0.0
    """Every pool's :attr:`PoolStats.busy_seconds` and the portal's
    :attr:`PortalStats.busy_seconds`, summed.

    .. versionadded:: 0.1
    """

    def as_dict(self) -> dict[str, Any]:
        """This snapshot as plain data for a health endpoint: :func:`json.dumps` takes it.

        The fields as they are, ``pools`` as a dict of each pool's
        :meth:`PoolStats.as_dict` and ``portal`` as :meth:`PortalStats.as_dict`.

        .. versionadded:: 0.1
        """
        out: dict[str, Any] = {}
        for field in fields(self):
            out[field.name] = getattr(self, field.name)
        out["pools"] = {name: pool.as_dict() for name, pool in self.pools.items()}
        out["portal"] = self.portal.as_dict()
        return out
