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

:class:`WakePolicy` holds what this takes (the recent pace and share of long
calls, which worker runs since when, the lookout's last look) and makes each
decision from the pool's queue and a time it is given: it reads no clock, so a
test drives it on a clock of its own. The pool consults it under the pool's
lock, so the policy has no lock of its own; the lookout thread is the pool's
(it waits on the pool's lock), the policy only says when it looks and how many
workers it wakes.
"""

from __future__ import annotations

__all__ = ("HANDOFF", "Runner", "WakePolicy")

import os
import sys
from itertools import islice
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Sequence

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
"""Running workers :meth:`WakePolicy._cores_busy` looks at, at most."""


class Runner:
    """A worker as the policy sees it: when it was handed its current call."""

    __slots__ = ("since",)

    def __init__(self) -> None:
        self.since = 0.0


class WakePolicy:
    """Whether a call waits for a running worker, and when the lookout wakes one.

    Every method is called with the consulting pool's lock held; *queue* is
    the pool's FIFO queue of ``(when queued, call)``, oldest first, which the
    policy only reads.

    Args:
        handoff: Seconds; :data:`HANDOFF` unless given (read when the policy is
            made, so a test that patches it stretches the pools it makes next).
    """

    def __init__(self, handoff: float | None = None) -> None:
        self.handoff: float = HANDOFF if handoff is None else handoff
        self._fresh_state()

    def _fresh_state(self) -> None:
        """The state of this process's calls: set here, and anew in a forked child."""
        self.long = 1.0  # moving share of calls that took HANDOFF or longer
        self.pace = self.handoff  # moving mean of how long calls take (capped)
        self.last_return = 0.0  # when a call last returned
        self.returns = 0  # calls that returned: the lookout's sign of progress
        self.running: set[Runner] = set()  # workers running a call of the pool
        self.last_handed: Runner | None = None  # the worker handed a call last
        self.looked = 0.0  # when the lookout last looked and woke workers
        self.seen = 0  # returns as the lookout last saw them
        self.ramp = 1  # workers to wake at the next look that finds no progress
        self.lingered = 0  # looks in a row that found nothing queued

    def _reset_after_fork(self) -> None:
        """Forget the parent's workers and pace (the child's calls are its own)."""
        self._fresh_state()

    # -- a call and its worker -------------------------------------------------

    def defers(self, now: float, queued: int) -> bool:
        """Whether a call made at *now*, with a slot free, waits for a running worker.

        *queued* calls wait already. When it does, the pool queues it and has
        the lookout watch the queue.
        """
        if self.long >= _LONG_SHARE:
            return False
        handoff = self.handoff
        if (
            _FREE_THREADED
            and len(self.running) >= _WORKER_CORES
            and now - self.last_return < _PACE_CAP * handoff
            and self._cores_busy(now)
        ):
            # Without a GIL, a worker per core (but the loop's) runs short
            # calls as fast as they come; one more only contends for the cores. Calls returned
            # lately (a loaded machine may pause the workers for a few
            # HANDOFFs); if they stop, the lookout wakes another (look_at).
            return True
        # The worker handed a call last, not a scan of every busy worker: with
        # thousands blocked, a scan under the lock would cost every call.
        last = self.last_handed
        if last is None or last not in self.running:
            return False
        if now - last.since < handoff:
            return True
        # Handed its call a while ago. In a burst (calls queued already) while
        # calls keep returning, that is mostly a worker waiting for the GIL,
        # which a new thread would wait for too: queue this call as well while
        # one worker, at the recent pace, empties the queue within HANDOFF (the
        # lookout wakes another if it waits longer). Blocked workers return
        # nothing, so they never count; a lone call may be behind one: start it.
        return (
            queued > 0
            and now - self.last_return < handoff
            and (queued + 1) * self.pace < handoff
        )

    def handed(self, worker: Runner, now: float) -> None:
        """*worker* was handed a call at *now* (it took a slot for it)."""
        worker.since = now
        self.last_handed = worker
        self.running.add(worker)

    def returned(self, worker: Runner, took: float, now: float, again: bool) -> None:
        """*worker*'s call returned at *now* after *took* seconds.

        *again*: it was handed the next queued call at once, in the same slot.
        """
        self.returns += 1
        self.last_return = now
        handoff = self.handoff
        self.long += ((took >= handoff) - self.long) * _LONG_WEIGHT
        # A long call counts as a few HANDOFFs: enough to never look short.
        took = min(took, _PACE_CAP * handoff)
        self.pace += (took - self.pace) * _LONG_WEIGHT
        if again:
            worker.since = now
            self.last_handed = worker
        else:
            self.running.discard(worker)

    def dropped(self, worker: Runner) -> None:
        """*worker* never ran the call it was handed (its thread did not start)."""
        self.running.discard(worker)

    def _cores_busy(self, now: float) -> bool:
        """Whether a worker per core (but one) was handed its call lately.

        Workers handed theirs longer ago may be blocked in it: they leave
        their core free. It runs on every call, so it looks at a few workers
        only: if those are blocked, the answer is no, and workers are woken
        as on a GIL build.
        """
        recent, running = now - _PACE_CAP * self.handoff, 0
        for worker in islice(self.running, _SCAN):
            if worker.since > recent:
                running += 1
                if running >= _WORKER_CORES:
                    return True
        return False

    # -- the lookout -----------------------------------------------------------

    def episode(self, now: float) -> None:
        """A new episode of the lookout's watch begins at *now*.

        No worker is woken for a whole HANDOFF, and the next look measures the
        rate calls return from now on.
        """
        self.seen, self.looked, self.ramp = self.returns, now, 1

    def lingers(self, queued: bool) -> bool:
        """Whether the lookout, finding no call waiting with a slot free, looks again.

        True: in a HANDOFF; False: it sleeps until the pool notifies it.

        While workers run it keeps looking for a while: a call queued meanwhile
        needs no notify (a wake-up per call would cost more than the call).
        """
        if queued or not self.running or self.lingered >= _LINGER:
            self.lingered = 0
            return False
        self.lingered += 1
        return True

    def next_look(self, queue: Sequence[tuple[float, object]]) -> float:
        """When the lookout looks next at *queue* (not empty, a slot free).

        A HANDOFF after the oldest call was queued or after the last look,
        whichever is later.
        """
        self.lingered = 0
        return max(queue[0][0], self.looked) + self.handoff

    def look_at(self, now: float, queue: Sequence[tuple[float, object]]) -> int:
        """How many of the oldest queued calls the lookout starts at *now*.

        Each gets a worker of its own (a call queued, a slot free). 0 while the running workers, at the rate they returned calls since the
        last look, empty the queue soon. Only calls queued a HANDOFF ago or
        more are due a worker.
        """
        handoff = self.handoff
        returned = self.returns - self.seen
        if returned:  # workers still return
            if len(queue) * (now - self.looked) < returned * handoff:
                # At the rate they returned since the last look, they empty
                # the queue within HANDOFF: another thread would only fight
                # them for the GIL. Look again in a HANDOFF.
                self.seen, self.looked, self.ramp = self.returns, now, 1
                return 0
            if _FREE_THREADED and self._cores_busy(now):
                # A worker per core (but the loop's) still runs short calls:
                # on a free-threaded build another thread only contends with
                # them for the cores.
                self.seen, self.looked, self.ramp = self.returns, now, 1
                return 0
            wanted, self.ramp = 1, 1  # one more
        else:  # none returned for HANDOFF: they may all be blocked
            wanted, self.ramp = self.ramp, self.ramp * 2
        self.seen, self.looked = self.returns, now
        due = 0
        for queued_at, _ in islice(queue, wanted):
            if queued_at > now - handoff:
                break
            due += 1
        return due
