"""dask.distributed behind a call (#13): a real local cluster of worker processes."""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

import anyio
import pytest

import _jobs
from syncbridge import (
    Bridge,
    GatherTimeout,
    SerializationError,
    SyncBridgeTimeout,
    gather_with_timeout,
    to_async,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from distributed import Client

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    """A client of a local cluster: 2 worker processes of 1 thread, on loopback."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,  # type: ignore[no-untyped-call]
    ):
        yield client


def _wait_until_workers_queue_nothing(client: Client) -> None:
    def held(dask_worker: Any) -> int:  # tasks queued on the worker, not running
        return sum(
            1 for ts in dask_worker.state.tasks.values() if ts.state != "cancelled"
        ) - len(dask_worker.state.executing)

    for _ in range(500):
        if not any(client.run(held).values()):
            return
        threading.Event().wait(0.01)
    raise AssertionError(f"the workers still hold tasks: {client.run(held)}")


async def test_calls_run_on_the_cluster_given_its_executor_or_the_client(
    client: Client, bridge: Bridge
) -> None:
    executor = client.get_executor(pure=False)  # type: ignore[no-untyped-call]
    via_executor = to_async(_jobs.pid, executor=executor)
    via_client = to_async(_jobs.pid, executor=client, bridge=bridge)
    workers = set(client.run(os.getpid).values())
    assert len(workers) == 2
    assert await via_executor() in workers
    assert await via_client() in workers
    assert os.getpid() not in workers


async def test_every_call_runs_though_the_arguments_are_the_same(
    client: Client, bridge: Bridge, tmp_path: Path
) -> None:
    # dask's default, pure=True, would run identical calls once.
    run = to_async(_jobs.append_line, executor=client, bridge=bridge)
    for _ in range(3):
        await run(str(tmp_path / "log"), "x")
    assert (tmp_path / "log").read_text() == "x\nx\nx\n"


async def test_an_error_on_the_cluster_keeps_its_type_and_message(
    client: Client, bridge: Bridge
) -> None:
    with pytest.raises(ValueError, match=r"^bad value 42$"):
        await to_async(_jobs.fail, executor=client, bridge=bridge)("bad value 42")


async def test_what_cannot_be_sent_to_the_cluster_is_named(
    client: Client, bridge: Bridge
) -> None:
    with pytest.raises(SerializationError, match=r"argument 1 .* cannot be pickled"):
        await to_async(_jobs.echo, executor=client, bridge=bridge)(threading.Lock())
    assert await to_async(_jobs.echo, executor=client, bridge=bridge)(3) == "3"


async def test_gather_with_timeout_on_the_cluster_cancels_the_queued_calls(
    client: Client, bridge: Bridge, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    run = to_async(_jobs.started_then_wait, executor=client, bridge=bridge)
    with pytest.raises(GatherTimeout) as caught:
        await gather_with_timeout(
            *(run(str(tmp_path / f"job{i}"), str(release)) for i in range(8)),
            timeout=2.0,
        )
    assert len(caught.value.pending) == 8
    # dask's cancel is a message: wait until the workers have dropped the tasks
    # they had queued (a running one cannot be interrupted), then release.
    await anyio.to_thread.run_sync(_wait_until_workers_queue_nothing, client)
    release.touch()
    # Two worker threads: at most two calls had started; the rest never will.
    await to_async(_jobs.pid, executor=client, bridge=bridge)()
    await anyio.sleep(0.5)  # a cancelled queued task, if it still ran, would show
    started = {p.name for p in tmp_path.iterdir()} - {"release"}
    assert 1 <= len(started) <= 2
    assert bridge.stats().cancellations == 8


async def test_a_timeout_on_the_cluster_is_a_syncbridge_timeout(
    client: Client, bridge: Bridge, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    run = to_async(_jobs.started_then_wait, executor=client, bridge=bridge, timeout=0.5)
    with pytest.raises(SyncBridgeTimeout, match=r"started_then_wait\(\) did not"):
        await run(str(tmp_path / "a"), str(release))
    release.touch()
    assert bridge.stats().timeouts == 1


async def test_a_bridge_whose_default_is_the_cluster(client: Client) -> None:
    with Bridge(executor=client) as bridge:
        workers = set(client.run(os.getpid).values())
        assert await bridge.run_blocking(_jobs.pid) in workers
        assert bridge.stats().pools["default"].completed == 1


async def test_keyword_arguments_are_the_functions_not_dasks(
    client: Client, bridge: Bridge
) -> None:
    run = to_async(_jobs.kw_echo, executor=client, bridge=bridge)
    got = await run(key="abc", pure=True, retries=2, priority=5, fn=1)
    assert got == {"key": "abc", "pure": True, "retries": 2, "priority": 5, "fn": 1}
