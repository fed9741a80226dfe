"""syncbridge: one executor/event-loop core to bridge sync and async code."""

from __future__ import annotations

from ._contextmanagers import to_async_cm as to_async_cm
from ._contextmanagers import to_sync_cm as to_sync_cm
from ._core._bridge import Bridge as Bridge
from ._core._bridge import get_bridge as get_bridge
from ._core._executor_pool import ExecutorPool as ExecutorPool
from ._core._process_executor import ProcessExecutor as ProcessExecutor
from ._core._workers import WorkerPool as WorkerPool
from ._exceptions import BridgeClosed as BridgeClosed
from ._exceptions import DeadlockError as DeadlockError
from ._exceptions import PoolSaturated as PoolSaturated
from ._exceptions import SerializationError as SerializationError
from ._exceptions import SyncBridgeError as SyncBridgeError
from ._exceptions import SyncBridgeTimeout as SyncBridgeTimeout
from ._exceptions import WorkerCancelled as WorkerCancelled
from ._exceptions import WorkerProcessDied as WorkerProcessDied
from ._gather import PENDING as PENDING
from ._gather import GatherTimeout as GatherTimeout
from ._gather import PendingType as PendingType
from ._gather import gather_with_timeout as gather_with_timeout
from ._gather import sync_gather_with_timeout as sync_gather_with_timeout
from ._iterators import SyncIterator as SyncIterator
from ._iterators import ThreadIterator as ThreadIterator
from ._iterators import iterate_in_thread as iterate_in_thread
from ._iterators import sync_iter as sync_iter
from ._run_blocking import check_cancelled as check_cancelled
from ._run_blocking import run_blocking as run_blocking
from ._run_blocking import to_async as to_async
from ._stats import BridgeStats as BridgeStats
from ._stats import PoolStats as PoolStats
from ._stats import PortalStats as PortalStats
from ._sync_call_async import sync_call_async as sync_call_async
from ._sync_call_async import to_sync as to_sync
from ._validate import PoolConfig as PoolConfig
from ._validate import SupportsGetExecutor as SupportsGetExecutor
from ._watch import BlockReport as BlockReport
from ._watch import LoopWatch as LoopWatch
from ._watch import watch_loop as watch_loop

try:
    from ._version import __version__ as __version__
except ImportError:  # pragma: no cover - running from a tree that was never built
    __version__ = "0.0.0+unknown"

__all__ = (
    "PENDING",
    "BlockReport",
    "Bridge",
    "BridgeClosed",
    "BridgeStats",
    "DeadlockError",
    "ExecutorPool",
    "GatherTimeout",
    "LoopWatch",
    "PendingType",
    "PoolConfig",
    "PoolSaturated",
    "PoolStats",
    "PortalStats",
    "ProcessExecutor",
    "SerializationError",
    "SupportsGetExecutor",
    "SyncBridgeError",
    "SyncBridgeTimeout",
    "SyncIterator",
    "ThreadIterator",
    "WorkerCancelled",
    "WorkerPool",
    "WorkerProcessDied",
    "check_cancelled",
    "gather_with_timeout",
    "get_bridge",
    "iterate_in_thread",
    "run_blocking",
    "sync_call_async",
    "sync_gather_with_timeout",
    "sync_iter",
    "to_async",
    "to_async_cm",
    "to_sync",
    "to_sync_cm",
    "watch_loop",
)


def _present_as_public() -> None:
    # Reprs, tracebacks and the docs name `syncbridge.X`, not the private module.
    for name in __all__:
        obj = globals()[name]
        if callable(obj) and getattr(obj, "__module__", "").startswith("syncbridge."):
            obj.__module__ = "syncbridge"


_present_as_public()
del _present_as_public
