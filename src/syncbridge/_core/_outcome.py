"""Outcomes that cross threads: ``(ok, value)`` pairs, unwrapped in one place."""

from __future__ import annotations

__all__ = ("unwrap",)

from typing import Any


def unwrap(outcome: tuple[bool, Any]) -> Any:
    """Return the value of an ``(ok, value)`` outcome, or raise its exception.

    The exception is raised as the same object, with its traceback. Callers clear
    their own reference in a ``finally`` so no frame keeps the exception alive.
    """
    ok, value = outcome
    del outcome
    if ok:
        return value
    try:
        raise value
    finally:
        del value
