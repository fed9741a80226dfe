"""When a pool wakes a worker: the wake-by-need policy.

Workers are woken by need. A call that finds a slot free starts at once, on an
idle worker or a new thread, unless the pool's recent calls were short and a
worker handed its call less than :data:`HANDOFF` ago is still running it: then
the call is queued for that worker, which takes it when it returns, so a burst
of short calls is served by a few threads instead of waking one per call (on a
GIL build, more runnable threads than cores only fight over the GIL). In a
burst, while calls keep returning, a call also queues while one worker would
empty the queue within :data:`HANDOFF` at the recent pace of calls (a worker
"running" for longer is then mostly waiting for the GIL). A *lookout* thread
keeps that promise honest: a queued call that has waited :data:`HANDOFF` with a
slot free gets a worker of its own, one more each :data:`HANDOFF` while running
workers still return calls but, at the rate they do, would not empty the queue
within :data:`HANDOFF`, twice as many each time while none returns (they may
all be blocked), so every queued call starts in bounded time and a slot never
stays free while a call waits for it for long.

On a free-threaded build a worker running long is not waiting for a GIL, but
threads beyond the number of cores only contend for them, and the event loop
that awaits short calls needs a core of its own (it does as much per call as a
worker): while recent calls were short, still return, and a worker per core but
one was handed its call within a few HANDOFFs, a call queues for them and the
lookout wakes no other while calls return (it still ramps up when none does).
"""

from __future__ import annotations

__all__ = ("HANDOFF",)

import os
import sys
from typing import Final

HANDOFF: Final = 0.0005
"""Seconds: a call shorter than this is *short*; a worker handed its call less
than this long ago is about to return; and a call queued for such a worker waits
about this long at most before the lookout wakes another worker for it."""

_LONG_SHARE: Final = 0.5
"""Queue calls for running workers only while fewer recent calls were long."""

_LONG_WEIGHT: Final = 0.125
"""Weight of the latest call in the moving share of long calls."""

_PACE_CAP: Final = 4
"""HANDOFFs: the longest a call counts for in the moving mean of call times."""

_LINGER: Final = 8
"""HANDOFFs the lookout keeps looking, with workers running, before it sleeps."""

_FREE_THREADED: Final = not getattr(sys, "_is_gil_enabled", lambda: True)()
"""No GIL: threads run at once, so a worker running long is not waiting for it."""

_CORES: Final = max(1, getattr(os, "process_cpu_count", os.cpu_count)() or 1)
"""Threads that can run Python at once on a free-threaded build."""

_WORKER_CORES: Final = max(1, _CORES - 1)
"""Workers that run short calls at once on a free-threaded build: a core is left
to the awaiting event loop. One more worker made them slower, not faster: with
the loop, three threads on two cores spend their time taking the pool's lock
from each other (#22)."""

_SCAN: Final = 4 * _CORES
"""Running workers :meth:`WorkerPool._cores_busy` looks at, at most."""
