"""Type variables shared by the helper modules."""

from __future__ import annotations

__all__ = ("P", "T", "T_co", "X")

from typing import TypeVar

from typing_extensions import ParamSpec

P = ParamSpec("P")
T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
X = TypeVar("X", bound="bool | None")
"""What a context manager's exit returns: ``bool`` if it may suppress exceptions."""
