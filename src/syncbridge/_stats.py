"""Snapshots of what a bridge is doing: Bridge.stats() and its parts."""

from __future__ import annotations

__all__ = ("BridgeStats", "PoolStats", "PortalStats")

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, final

if TYPE_CHECKING:
    from collections.abc import Mapping

DEFAULT_POOL: Final = "default"
"""The name of a bridge's default pool in :attr:`BridgeStats.pools`."""
THREAD_SENSITIVE_POOL: Final = "thread_sensitive"
"""The name of the one-thread lane (``to_async(thread_sensitive=True)``)."""
WORKER_THREADS_POOL: Final = "threads"
"""The name of the worker threads when ``Bridge(executor=...)`` took the default."""


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
