"""Outcomes that cross threads: one value per finished call, unwrapped in one place.

A call finished on one thread is read on another. Its outcome is a single object
written once (:class:`Value`, :class:`Error` or, for calls on an event loop,
:class:`Cancelled`), never an ``ok`` flag beside a value, so no reader can see
half of it.
"""

from __future__ import annotations

__all__ = ("Cancelled", "Error", "Outcome", "Value")

from typing import Any, Generic, NoReturn, final

from .._typing import T


@final
class Value(Generic[T]):
    """The call returned *value*."""

    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value

    def unwrap(self) -> T:
        """Return the value."""
        return self.value


@final
class Error:
    """The call raised *error*."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def unwrap(self) -> NoReturn:
        """Raise the exception: the same object, with its traceback.

        The reference held here is dropped first, so no frame of ours keeps the
        exception (and the frames of its traceback) alive after it is handled.
        """
        error = self.error
        del self.error
        try:
            raise error
        finally:
            del error


@final
class Cancelled:
    """The call was cancelled on its event loop before it could finish.

    *exc* is the loop's cancellation exception, when one was raised.
    """

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException | None = None) -> None:
        self.exc = exc


Outcome = Value[Any] | Error
"""What a finished blocking call has: its value or its exception."""
