"""new_thread starts a thread in an empty context; a ThreadRole is per thread."""

from __future__ import annotations

import contextvars
import os
import threading

from syncbridge._core._context import ThreadRole, new_thread, role

_request: contextvars.ContextVar[str] = contextvars.ContextVar("request")


def test_a_new_thread_starts_in_an_empty_context() -> None:
    """Whatever the caller had set (and ``sys.flags.thread_inherit_context``)."""
    seen: list[str] = []
    token = _request.set("the starter's")
    try:
        thread = new_thread(
            target=lambda: seen.append(_request.get("nothing")),
            name="syncbridge-test-context",
            daemon=True,
        )
    finally:
        _request.reset(token)
    token = _request.set("set again before start()")
    try:
        thread.start()
    finally:
        _request.reset(token)
    thread.join(10)
    assert seen == ["nothing"]


def test_a_new_thread_is_made_as_asked_and_not_started() -> None:
    got: list[tuple[int, ...]] = []
    thread = new_thread(
        target=lambda *a: got.append(a), name="syncbridge-x", daemon=True, args=(1, 2)
    )
    assert (thread.name, thread.daemon, thread.ident) == ("syncbridge-x", True, None)
    thread.start()
    thread.join(10)
    assert got == [(1, 2)]


def test_each_thread_has_a_role_of_its_own() -> None:
    seen: list[object] = []
    loop = object()
    role.served_loop, role.served_pid = loop, os.getpid()
    try:
        thread = threading.Thread(
            target=lambda: seen.extend([role.served_loop, role.loop_served(), role.job])
        )
        thread.start()
        thread.join(10)
        assert role.loop_served() is loop
    finally:
        role.served_loop, role.served_pid = None, 0
    assert seen == [None, None, None]


def test_a_loop_served_in_another_process_is_not_served_here() -> None:
    """A role set before a fork names the parent's loop: the child serves none."""
    here = ThreadRole()
    here.served_loop = object()
    here.served_pid = os.getpid() + 1  # as seen in a forked child
    assert here.loop_served() is None
    here.served_pid = os.getpid()
    assert here.loop_served() is here.served_loop
