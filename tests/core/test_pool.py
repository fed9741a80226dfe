"""Pool: WorkerPool and ExecutorPool are what the core may use of a pool.

The static check is mypy's (the project's config covers tests): each class is
assigned to a ``Pool[Job]``. The runtime check finds each member of the
protocol on each class, of the same kind.
"""

from __future__ import annotations

import concurrent.futures
import inspect
from typing import TYPE_CHECKING

import pytest

from syncbridge import ExecutorPool, WorkerPool
from syncbridge._core._pool import Pool

if TYPE_CHECKING:
    from collections.abc import Iterator

    from syncbridge._core._jobs import Job


@pytest.fixture
def pools() -> Iterator[list[Pool[Job]]]:
    with concurrent.futures.ThreadPoolExecutor(1) as executor:
        # What mypy checks: each is a Pool of jobs.
        threads: Pool[Job] = WorkerPool("protocol", 1)
        on_executor: Pool[Job] = ExecutorPool("protocol", executor, label="test")
        yield [threads, on_executor]
        for pool in (threads, on_executor):
            pool.close()


def _members() -> dict[str, bool]:
    """The protocol's members: name -> whether it is a method (else a property)."""
    members = {
        name: inspect.isfunction(value)
        for name, value in vars(Pool).items()
        if not name.startswith("__")  # a Protocol's own
        and (isinstance(value, property) or inspect.isfunction(value))
    }
    return members


def test_the_members_found_are_the_protocols() -> None:
    """The members the check below reads: it would pass on none found."""
    assert _members() == {
        "name": False,
        "counts": False,
        "closed": False,
        "_can_end_calls": False,
        "_returns_withdrawn": False,
        "_max_wait": False,
        "_submit": True,
        "_try_submit": True,
        "_withdraw": True,
        "_expire": True,
        "_end": True,
        "stats": True,
        "running_functions": True,
        "close": True,
    }


def test_each_pool_has_every_member_of_the_protocol(pools: list[Pool[Job]]) -> None:
    for pool in pools:
        for name, is_method in _members().items():
            found = getattr(pool, name)  # an attribute or a property: read it
            if is_method:
                assert inspect.ismethod(found), f"{type(pool).__name__}.{name}"
            else:
                assert not callable(found), f"{type(pool).__name__}.{name}"
