"""How-to: a command-line tool that drives an async SDK from synchronous code."""

from __future__ import annotations

import argparse
import asyncio
from typing import Self

import syncbridge


class AsyncWeatherClient:
    """Stands in for an async SDK client (an httpx.AsyncClient, an aiobotocore client)."""

    def __init__(self) -> None:
        self.open = False
        self.connections = asyncio.Semaphore(2)  # bound to the loop that uses it

    async def __aenter__(self) -> Self:
        await asyncio.sleep(0.01)
        self.open = True
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.open = False

    async def temperature(self, city: str) -> float:
        assert self.open, "use the client inside `async with`"
        async with self.connections:
            await asyncio.sleep(0.05)
            return 20.0 + len(city) / 10


async def fetch_all(cities: list[str]) -> dict[str, float]:
    """One coroutine owns the client and runs the requests concurrently."""
    async with AsyncWeatherClient() as client:
        temps = await asyncio.gather(*(client.temperature(c) for c in cities))
    return dict(zip(cities, temps, strict=True))


@syncbridge.to_sync(timeout=10.0)
async def fetch_one(city: str) -> float:
    """A sync entry point with a deadline, for code that wants one value."""
    async with AsyncWeatherClient() as client:
        return await client.temperature(city)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print temperatures.")
    parser.add_argument("cities", nargs="*", default=["Oslo", "Lima", "Pune"])
    args = parser.parse_args(argv)

    temps = syncbridge.sync_call_async(fetch_all, args.cities)
    for city, temp in temps.items():
        print(f"{city:>8}: {temp:.1f} °C")
    print(f"{'Quito':>8}: {fetch_one('Quito'):.1f} °C")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
