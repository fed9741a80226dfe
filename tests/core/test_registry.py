"""PoolRegistry: a bridge's pools, found by name, added, resized, and closed."""

from __future__ import annotations

import concurrent.futures
from typing import TYPE_CHECKING

import pytest

from syncbridge import BridgeClosed, ExecutorPool, PortalStats, WorkerPool
from syncbridge._core._registry import PoolRegistry

if TYPE_CHECKING:
    from collections.abc import Iterator


_NO_PORTAL = PortalStats(
    running=False,
    tasks=0,
    blocks=0,
    lag=0.0,
    calls=0,
    completed=0,
    errors=0,
    cancellations=0,
    timeouts=0,
)


def _refuse(what: str, name: object) -> BridgeClosed:
    return BridgeClosed(f"refused {what}({name!r})")


@pytest.fixture
def registry() -> Iterator[PoolRegistry]:
    made = PoolRegistry("reg", 4, None)
    try:
        yield made
    finally:
        for pool in made.close():
            pool.close()


def test_an_unknown_pool_error_lists_the_known_pools_and_how_to_add_it(
    registry: PoolRegistry,
) -> None:
    with pytest.raises(KeyError, match=r"known pools: none \(create it with Bridge"):
        registry.lookup("db", "<the bridge>")
    registry.put("add_pool", "io", 2, resize=False, refuse=_refuse)
    registry.put("add_pool", "cpu", 1, resize=False, refuse=_refuse)
    with pytest.raises(KeyError) as raised:
        registry.lookup("db", "<the bridge>")
    message = raised.value.args[0]
    assert "no pool named 'db' on '<the bridge>'" in message
    assert "known pools: ['cpu', 'io']" in message
    assert "bridge.add_pool('db', n)" in message


def test_an_integration_says_where_pools_are_added(registry: PoolRegistry) -> None:
    registry.configured_by = "SYNCBRIDGE_POOLS={{'{name}': n}} in the app's config"
    with pytest.raises(KeyError, match=r"SYNCBRIDGE_POOLS=\{'db': n\} in the app"):
        registry.lookup("db", "<the bridge>")


def test_add_then_resize_a_named_pool(registry: PoolRegistry) -> None:
    registry.put("add_pool", "io", 2, resize=False, refuse=_refuse)
    pool = registry.lookup("io", None)
    assert isinstance(pool, WorkerPool)
    assert (pool.name, pool.capacity) == ("reg-io", 2)
    with pytest.raises(ValueError, match=r"already has a pool named 'io'.*set_pool"):
        registry.put("add_pool", "io", 3, resize=False, refuse=_refuse)
    assert pool.capacity == 2
    registry.put("set_pool", "io", 5, resize=True, refuse=_refuse)
    assert registry.lookup("io", None) is pool
    assert pool.capacity == 5


def test_built_in_pool_names_are_refused(registry: PoolRegistry) -> None:
    for name in ("default", "thread_sensitive", "threads"):
        with pytest.raises(ValueError, match="names a built-in pool"):
            registry.put("add_pool", name, 1, resize=False, refuse=_refuse)
    assert registry.named == {}


def test_a_pool_on_an_executor_and_every_pool_once() -> None:
    with concurrent.futures.ThreadPoolExecutor(2) as executor:
        registry = PoolRegistry("reg", 4, executor)
        registry.put("add_pool", "ex", executor, resize=False, refuse=_refuse)
        named = registry.lookup("ex", None)
        assert isinstance(named, ExecutorPool)
        assert isinstance(registry.default, ExecutorPool)
        pools = registry.all()
        assert pools == [
            registry.worker_threads,
            registry.thread_sensitive,
            registry.default,
            named,
        ]
        for pool in registry.close():
            pool.close()


def test_a_closed_registry_makes_no_pool(registry: PoolRegistry) -> None:
    registry.put("add_pool", "io", 1, resize=False, refuse=_refuse)
    pools = registry.close()
    assert registry.lookup("io", None) in pools
    with pytest.raises(BridgeClosed, match=r"refused add_pool\('late'\)"):
        registry.put("add_pool", "late", 1, resize=False, refuse=_refuse)
    with (
        concurrent.futures.ThreadPoolExecutor(1) as executor,
        pytest.raises(BridgeClosed, match="refused to_async"),
    ):
        registry.for_executor(executor, print, _refuse)
    assert registry.all() == pools


def test_each_pool_is_named_as_stats_names_it(registry: PoolRegistry) -> None:
    """What a span of a call in a pool names the pool: its key in stats()."""
    registry.put("add_pool", "io", 2, resize=False, refuse=_refuse)
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        adhoc = registry.for_executor(ex, None, _refuse)
        keys = set(registry.stats(_NO_PORTAL).pools)
        assert keys == {"default", "thread_sensitive", "io", adhoc.name}
        named = {
            registry.stats_name(pool)
            for pool in (
                registry.default,
                registry.thread_sensitive,
                registry.lookup("io", "<the bridge>"),
                adhoc,
            )
        }
    assert named == keys
