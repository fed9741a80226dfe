"""Outcomes: a Value unwraps to its value, an Error re-raises its very exception."""

from __future__ import annotations

import traceback

import pytest

from syncbridge._core._outcome import Cancelled, Error, Value


def _fails_here() -> None:
    raise ValueError("from the worker")


def test_a_value_unwraps_to_its_value() -> None:
    result = [1, 2]
    assert Value(result).unwrap() is result
    assert Value(None).unwrap() is None


def test_an_error_unwraps_to_the_same_exception_with_its_traceback() -> None:
    with pytest.raises(ValueError, match="from the worker") as caught:
        _fails_here()
    error = caught.value
    outcome = Error(error)
    with pytest.raises(ValueError, match="from the worker") as raised:
        outcome.unwrap()
    assert raised.value is error
    frames = [frame.name for frame in traceback.extract_tb(error.__traceback__)]
    assert frames[-1] == "_fails_here", "the traceback of the raise was lost"


def test_an_error_lets_go_of_its_exception_once_unwrapped() -> None:
    """Nothing of the outcome's keeps the exception (and its frames) alive."""
    outcome = Error(RuntimeError("once"))
    with pytest.raises(RuntimeError):
        outcome.unwrap()
    assert not hasattr(outcome, "error")


def test_cancelled_carries_the_loops_exception_if_any() -> None:
    exc = KeyboardInterrupt()
    assert Cancelled(exc).exc is exc
    assert Cancelled().exc is None
