"""WakePolicy: whether a call waits for a running worker, and when the lookout wakes one.

A pool that has seen short calls queues a new call for a worker that was handed
its call less than ``HANDOFF`` ago instead of waking another thread; the
lookout wakes one for a queued call that waited ``HANDOFF`` with a slot free.
These tests drive the policy on a clock of their own: none asserts a duration.
How a WorkerPool acts on its decisions (queues, its lookout thread) is tested in
test_workers.py.
"""

from __future__ import annotations

from collections import deque

import pytest

from syncbridge._core import _wake_policy
from syncbridge._core._wake_policy import Runner, WakePolicy

HANDOFF = 0.05  # the policies below: their own, whatever the module's


def _arranged_policy(
    pace: float, blocked: int = 0, now: float = 1000.0
) -> tuple[WakePolicy, Runner]:
    """A policy in short mode whose one cycling worker was handed its call long ago.

    The state a pool reaches when the loop thread holds the GIL for longer
    than HANDOFF, so a worker cycling through short calls looks stuck;
    *blocked* more workers are in calls that never return. Returns the policy
    and the cycling worker. Calls returned just before *now*, the lookout's
    last look was at *now*.
    """
    policy = WakePolicy(HANDOFF)
    for _ in range(blocked):
        policy.handed(Runner(), now - 1000 * HANDOFF)
    worker = Runner()
    policy.handed(worker, now - 100 * HANDOFF)
    policy.long, policy.pace = 0.0, pace
    policy.last_return = now  # calls keep returning
    policy.episode(now)  # the lookout's last look
    return policy, worker


def _queue(n: int, at: float) -> deque[tuple[float, object]]:
    return deque((at, object()) for _ in range(n))


@pytest.fixture
def gil_build_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The wake-up policy of a GIL build, whatever this build is.

    The tests below drive that policy; a free-threaded build adds a rule of
    its own (a worker per core but the loop's), tested on its own below.
    """
    monkeypatch.setattr(_wake_policy, "_FREE_THREADED", False)


@pytest.mark.usefixtures("gil_build_policy")
def test_a_policy_learns_short_calls_and_defers_to_a_worker_handed_one_now() -> None:
    """Through its seam alone: returns teach it the calls are short; then a
    call waits for a worker handed its call less than HANDOFF ago, and no
    longer once that worker went idle."""
    policy, now = WakePolicy(HANDOFF), 1000.0
    worker = Runner()
    policy.handed(worker, now)
    assert not policy.defers(now, 0), "a new policy deferred before any call was short"
    for _ in range(30):  # handed the next call as each returns
        now += HANDOFF / 100
        policy.returned(worker, HANDOFF / 100, now, again=True)
    assert policy.defers(now, 0)
    assert policy.defers(now + HANDOFF / 2, 0)
    assert not policy.defers(now + 1.5 * HANDOFF, 0), (
        "a worker handed long ago was waited for"
    )
    policy.returned(worker, HANDOFF / 100, now, again=False)  # idle now
    assert not policy.defers(now, 0), "a call waited for an idle worker"


@pytest.mark.usefixtures("gil_build_policy")
def test_in_a_burst_a_call_queues_while_a_worker_empties_the_queue_soon() -> None:
    now = 1000.0
    policy, _ = _arranged_policy(pace=HANDOFF / 100, now=now)  # a hundredth of HANDOFF
    assert not policy.defers(now, 0), "a lone call waited for a worker handed long ago"
    assert policy.defers(now, 1), "a call in a burst woke another thread"
    policy.pace = HANDOFF  # the queue would not empty within HANDOFF
    assert not policy.defers(now, 1)


@pytest.mark.usefixtures("gil_build_policy")
def test_blocked_workers_are_not_counted_as_emptying_the_queue() -> None:
    """100 workers blocked, no call returned lately: a burst starts new threads."""
    now = 1000.0
    policy, _ = _arranged_policy(pace=HANDOFF / 20, blocked=100, now=now)
    assert policy.defers(now, 4)  # calls still return: a few may queue
    policy.last_return = now - 10 * HANDOFF  # none has for a while
    assert not policy.defers(now, 4), "calls queued behind blocked workers"
    policy.last_return = now
    # 50 queued: one worker needs 2.5 HANDOFFs for them; 101 "running" would not.
    assert not policy.defers(now, 50), "blocked workers counted as emptying it"


def _look_while_calls_return(
    policy: WakePolicy,
    worker: Runner,
    queue: deque[tuple[float, object]],
    now: float,
    returns_per_handoff: int,
    handoffs: int,
) -> list[tuple[float, int]]:
    """Drive the lookout's policy on a clock of our own, never real time.

    From *now*, *worker* returns a call every ``1 / returns_per_handoff``
    HANDOFF for *handoffs* HANDOFFs, then none does. The lookout looks when it
    would (at ``next_look()``), seeing the calls returned by then, and the
    pool starts the calls it says, oldest first, until it wakes a worker while
    none returns any more. Returns each look: when, and how many it started
    (0: it waited for the running workers). Stops early if every queued call
    started.
    """
    returns = deque(
        now + (k + 1) * HANDOFF / returns_per_handoff
        for k in range(handoffs * returns_per_handoff)
    )
    last_return = returns[-1]
    looks: list[tuple[float, int]] = []
    while len(looks) < 1000:
        if not queue:  # every call started: no look due
            return looks
        at = policy.next_look(queue)
        while returns and returns[0] <= at:
            policy.returned(worker, HANDOFF / 100, returns.popleft(), again=True)
        started = policy.look_at(at, queue)
        for _ in range(started):
            queue.popleft()
        looks.append((at, started))
        if started and at > last_return:
            return looks
    raise AssertionError("the lookout never woke a worker once calls stopped")


@pytest.mark.usefixtures("gil_build_policy")
@pytest.mark.parametrize(
    ("queued", "returns_per_handoff", "wakes_while_returning"),
    [(1, 5, False), (50, 1, True)],
    ids=["queue-emptied-soon", "queue-too-long-for-the-rate"],
)
def test_the_lookout_wakes_a_worker_only_if_the_queue_is_not_emptied_soon(
    queued: int, returns_per_handoff: int, wakes_while_returning: bool
) -> None:
    """Calls keep returning: a worker is woken only if, at that rate, the queue
    would not empty within HANDOFF; once none returns, one is woken anyway.

    The policy is driven on a clock of the test's own: a loaded machine that
    delays a thread cannot pass for "no call returned" (it once did, #24).
    """
    now = 1000.0
    policy, worker = _arranged_policy(pace=HANDOFF / 100, blocked=100, now=now)
    queue = _queue(queued, now - 1.0)  # waited long enough to be due a worker
    looks = _look_while_calls_return(
        policy, worker, queue, now, returns_per_handoff, 20
    )
    last_return = now + 20 * HANDOFF
    while_returning = [(at, n) for at, n in looks if at <= last_return]
    woken = sum(n for _, n in while_returning)
    if wakes_while_returning:
        # The first look wakes one worker for the oldest call, no more.
        assert while_returning[0] == (now + HANDOFF, 1)
    else:
        assert len(while_returning) >= 20, "the lookout did not look each HANDOFF"
        assert woken == 0, "a worker was woken while the queue emptied soon"
    # None returns any more: the workers may all be blocked; one is woken,
    # by the second look after the last return at most.
    at, started = looks[-1]
    assert at <= last_return + 2 * HANDOFF
    assert started == 1
    assert len(queue) == queued - woken - 1


@pytest.mark.usefixtures("gil_build_policy")
def test_while_none_returns_the_lookout_wakes_twice_as_many_each_look() -> None:
    """No call returns: the workers may all be blocked; 1, 2, 4, 8 are woken."""
    now = 1000.0
    policy, worker = _arranged_policy(pace=HANDOFF / 100, blocked=100, now=now)
    queue = _queue(50, now - 1.0)
    assert [policy.look_at(policy.next_look(queue), queue) for _ in range(4)] == [
        1,
        2,
        4,
        8,
    ]
    # A call returned: the next look wakes one, and the ramp starts anew.
    policy.returned(worker, HANDOFF / 100, policy.looked, again=True)
    assert policy.look_at(policy.next_look(queue), queue) == 1
    assert policy.look_at(policy.next_look(queue), queue) == 1
    assert policy.look_at(policy.next_look(queue), queue) == 2


def test_the_lookout_wakes_a_worker_only_for_calls_queued_a_handoff_ago() -> None:
    """None returns, so it would wake 1, then 2: only for calls that waited a
    HANDOFF; a call queued just now waits for a later look."""
    now = 1000.0
    policy, _ = _arranged_policy(pace=HANDOFF / 100, now=now)
    queue = _queue(1, now - 1.0) + _queue(3, now + HANDOFF)
    at = policy.next_look(queue)
    assert at == now + HANDOFF
    assert policy.look_at(at, queue) == 1  # the old one only
    queue.popleft()
    at = policy.next_look(queue)
    assert at == pytest.approx(now + 2 * HANDOFF)
    assert policy.look_at(at, queue) == 2


def test_the_lookout_lingers_while_workers_run_then_sleeps() -> None:
    """Nothing queued with a slot free: while workers run, it looks each HANDOFF
    a few times (a call queued meanwhile needs no notify); then it sleeps
    until notified. With no worker running, or a call queued (no slot free),
    it sleeps at once."""
    policy = WakePolicy(HANDOFF)
    assert not policy.lingers(False), "it lingered with no worker running"
    policy.handed(Runner(), 1000.0)
    lingered = 0
    while policy.lingers(False):
        lingered += 1
        assert lingered <= 100, "it never slept"
    assert lingered == _wake_policy._LINGER
    assert policy.lingers(False), "it did not linger anew after a sleep"
    assert not policy.lingers(True), "it lingered with a call queued, no slot free"


def test_free_threaded_short_calls_queue_for_a_worker_per_core(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No GIL: with a worker per core (but the loop's) running short calls, a
    call queues for them and the lookout wakes no other while calls return
    (#22); a GIL build would wake one. Workers handed their call long ago
    (blocked) never count."""
    monkeypatch.setattr(_wake_policy, "_WORKER_CORES", 2)
    now = 1000.0
    policy, first = _arranged_policy(pace=HANDOFF, blocked=0, now=now)
    second = Runner()
    for worker in (first, second):  # handed theirs 2 HANDOFFs ago
        policy.handed(worker, now - 2 * HANDOFF)
    for free_threaded, defers in ((False, False), (True, True)):
        monkeypatch.setattr(_wake_policy, "_FREE_THREADED", free_threaded)
        assert policy.defers(now, 0) is defers
    # The lookout, a queue too long for the rate calls return at.
    queue = _queue(50, now - 1.0)
    policy.returned(first, HANDOFF, now, again=True)
    policy.handed(first, now - 2 * HANDOFF)  # as it was, for the rule below
    at = now + HANDOFF
    assert policy.look_at(at, queue) == 0, "a thread beyond the cores was woken"
    monkeypatch.setattr(_wake_policy, "_FREE_THREADED", False)
    policy.returned(first, HANDOFF, at, again=True)
    assert policy.look_at(at + HANDOFF, queue) == 1
    # Free-threaded, but the workers are blocked: the lookout wakes one.
    monkeypatch.setattr(_wake_policy, "_FREE_THREADED", True)
    for worker in (first, second):
        worker.since = now - 1000 * HANDOFF
    policy.returned(first, HANDOFF, at + HANDOFF, again=False)
    policy.handed(first, now - 1000 * HANDOFF)
    assert not policy.defers(at + 2 * HANDOFF, 0)
    assert policy.look_at(at + 2 * HANDOFF, queue) == 1


def test_free_threaded_short_calls_leave_a_core_to_the_awaiting_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No GIL, two cores: one worker running short calls is enough; a call
    queues for it instead of waking a second worker, which would fight the
    awaiting loop's thread for the cores (#22). One core: still one worker."""
    assert max(1, _wake_policy._CORES - 1) == _wake_policy._WORKER_CORES
    now = 1000.0
    policy, worker = _arranged_policy(pace=HANDOFF, now=now)
    # Handed its call 2 HANDOFFs ago: the GIL build's rule wakes another.
    policy.handed(worker, now - 2 * HANDOFF)
    monkeypatch.setattr(_wake_policy, "_FREE_THREADED", False)
    assert not policy.defers(now, 0)
    monkeypatch.setattr(_wake_policy, "_FREE_THREADED", True)
    for cores, defers in ((2, True), (1, True), (3, False)):
        monkeypatch.setattr(_wake_policy, "_WORKER_CORES", max(1, cores - 1))
        assert policy.defers(now, 0) is defers, cores
