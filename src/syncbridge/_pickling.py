"""STUB (replaced by the process-executor branch): name what cannot be pickled."""

from __future__ import annotations

__all__ = ("check_picklable",)

import pickle
from typing import TYPE_CHECKING, Any

from ._exceptions import SerializationError, callable_name

if TYPE_CHECKING:
    from collections.abc import Callable


def check_picklable(
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    dumps: Callable[[object], bytes] = pickle.dumps,
    what: str = "ProcessExecutor.submit()",
) -> bytes:
    try:
        return dumps((func, args, kwargs))
    except Exception as whole:
        pieces: list[tuple[str, object]] = [
            (f"the function {callable_name(func)}", func)
        ]
        pieces += [(f"argument {i + 1}", a) for i, a in enumerate(args)]
        pieces += [(f"keyword argument {k!r}", v) for k, v in kwargs.items()]
        for label, piece in pieces:
            try:
                dumps(piece)
            except Exception as exc:
                raise SerializationError(
                    f"{what}: {label} ({type(piece).__name__}) cannot be pickled: {exc}"
                ) from exc
        raise SerializationError(
            f"{what}: the call cannot be pickled: {whole}"
        ) from whole
