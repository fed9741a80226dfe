"""syncbridge: one executor/event-loop core to bridge sync and async code."""

from __future__ import annotations

from ._core._bridge import Bridge as Bridge
from ._core._bridge import get_bridge as get_bridge
from ._core._workers import WorkerPool as WorkerPool
from ._exceptions import BridgeClosed as BridgeClosed
from ._exceptions import DeadlockError as DeadlockError
from ._exceptions import SyncBridgeError as SyncBridgeError
from ._exceptions import WorkerCancelled as WorkerCancelled
from ._run_blocking import check_cancelled as check_cancelled
from ._run_blocking import run_blocking as run_blocking
from ._run_blocking import to_async as to_async
from ._sync_call_async import sync_call_async as sync_call_async
from ._sync_call_async import to_sync as to_sync

try:
    from ._version import __version__ as __version__
except ImportError:  # pragma: no cover - running from a tree that was never built
    __version__ = "0.0.0+unknown"

__all__ = (
    "Bridge",
    "BridgeClosed",
    "DeadlockError",
    "SyncBridgeError",
    "WorkerCancelled",
    "WorkerPool",
    "check_cancelled",
    "get_bridge",
    "run_blocking",
    "sync_call_async",
    "to_async",
    "to_sync",
)

for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("syncbridge."):
        _obj.__module__ = "syncbridge"
del _name, _obj
