"""Say what cannot be pickled, and what to do, when a call must go to another process.

Used by :class:`~syncbridge.ProcessExecutor` and by anything else that sends calls
to processes (a stdlib ``ProcessPoolExecutor``, loky, dask): *dumps* is pluggable
(``cloudpickle.dumps`` for those that use it). The happy path pickles once; only
after that failed is each piece pickled on its own to find the culprit.
"""

from __future__ import annotations

__all__ = (
    "Dumps",
    "check_picklable",
    "default_dumps",
    "describe_unpicklable",
    "exception_message",
    "result_message",
)

import functools
from types import BuiltinFunctionType, FunctionType, MethodType
from typing import TYPE_CHECKING, Any, cast

from .._exceptions import SerializationError, callable_name

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping
    from typing import TypeAlias

Dumps: TypeAlias = "Callable[[Any], bytes]"

# Bounds on the search for the culprit inside containers: it runs only once
# pickling has failed, but must not take long over a huge list.
_MAX_DEPTH = 8
_MAX_PARTS = 1000

_FUNCTION_FIX = (
    "Pass a function defined at the top level of a module (not a lambda, a nested "
    "function or a method of a local class): the worker process imports it by name."
)
_ARGUMENT_FIX = (
    "Pass data the worker process can receive (str, bytes, numbers, lists and dicts "
    "of them, picklable objects), not open files, locks, sockets or clients: open "
    "those inside the function."
)
_RESULT_FIX = (
    "Return data that can be pickled (str, bytes, numbers, lists and dicts of them, "
    "picklable objects), not open files, locks, sockets, generators or clients."
)
_EXCEPTION_FIX = (
    "Make the exception class picklable: pass every argument of its __init__ on "
    "to super().__init__(), and keep unpicklable objects out of its attributes."
)


def default_dumps(obj: Any) -> bytes:
    """Pickle *obj* with the highest protocol (:mod:`pickle` imported on first use)."""
    import pickle  # `import syncbridge` does not need pickle

    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def check_picklable(
    func: object,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    *,
    dumps: Dumps = default_dumps,
    what: str = "ProcessExecutor.submit()",
) -> bytes:
    """Return ``dumps((func, args, kwargs))``, the call to send to another process.

    If it cannot be pickled, raise :class:`~syncbridge.SerializationError`
    naming the first piece that fails — the function, positional argument N or
    keyword argument 'name', and inside it the value at fault — and saying what
    to do. *what* is the user's spelling of the entry point, for the message.
    """
    try:
        return dumps((func, args, dict(kwargs)))
    except Exception as error:
        raise SerializationError(
            _call_message(func, args, kwargs, error, dumps, what)
        ) from error


def _call_message(
    func: object,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    error: Exception,
    dumps: Dumps,
    what: str,
) -> str:
    name = callable_name(func)
    plain = isinstance(func, (FunctionType, BuiltinFunctionType, MethodType, type))
    label = f"the function {name}" if plain else f"the callable {name}"
    pieces: list[tuple[str, object, str]] = [(label, func, _FUNCTION_FIX)]
    pieces += [
        (f"argument {i} of {name}()", a, _ARGUMENT_FIX) for i, a in enumerate(args, 1)
    ]
    pieces += [
        (f"keyword argument {key!r} of {name}()", value, _ARGUMENT_FIX)
        for key, value in kwargs.items()
    ]
    for label, piece, fix in pieces:
        piece_error = _failure(piece, dumps)
        if piece_error is not None:
            described = describe_unpicklable(
                piece,
                label,
                piece_error,
                dumps=dumps,
                kind=piece is not func or not plain,
            )
            return f"{what}: {described}. {fix}"
    # Each piece pickles alone, the whole does not (a pickler limit, a shared state).
    return f"{what}: the call of {name}() cannot be pickled: {_reason(error)}. {_ARGUMENT_FIX}"


def describe_unpicklable(
    obj: object,
    label: str,
    error: BaseException,
    *,
    dumps: Dumps = default_dumps,
    kind: bool = True,
) -> str:
    """Describe why *obj*, called *label* (``"argument 2 of f()"``), cannot be pickled.

    *error* is what pickling *obj* raised. Items, values and attributes inside
    *obj* are pickled one by one to name the innermost one at fault, as in
    ``"argument 2 of f() (a dict object) cannot be pickled because of the value
    at ['conn'] (a _thread.lock object): TypeError: cannot pickle ..."``. With
    *kind* false the type of *obj* is left out (a function names itself).
    """
    path, culprit, culprit_error = _innermost(obj, error, dumps)
    text = f"{label} ({_kind(obj)})" if kind else label
    text += " cannot be pickled"
    if path:
        text += f" because of the value at {path} ({_kind(culprit)})"
    return f"{text}: {_reason(culprit_error)}"


def result_message(
    func: object, value: object, error: BaseException, dumps: Dumps
) -> str:
    """The message of the :class:`SerializationError` for a result that cannot go back."""
    described = describe_unpicklable(
        value, f"the result of {callable_name(func)}()", error, dumps=dumps
    )
    return (
        f"{described}, so it cannot be sent back from the worker process. {_RESULT_FIX}"
    )


def exception_message(func: object, exc: BaseException, error: BaseException) -> str:
    """The message for an exception raised in a worker that cannot be sent back.

    It keeps the exception's type name and message text; *error* is why it
    could not be pickled (or rebuilt).
    """
    kind = type(exc)
    kind_name = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )
    return (
        f"{callable_name(func)}() raised {kind_name}: {exc}; it cannot be sent back "
        f"from the worker process ({_reason(error)}). {_EXCEPTION_FIX}"
    )


def _failure(obj: object, dumps: Dumps) -> Exception | None:
    try:
        dumps(obj)
    except Exception as error:
        return error
    return None


def _innermost(
    obj: object, error: BaseException, dumps: Dumps
) -> tuple[str, object, BaseException]:
    """Follow the failing parts of *obj* down: (path, culprit, its error)."""
    path = ""
    seen = {id(obj)}
    for _ in range(_MAX_DEPTH):
        for where, part in _parts(obj):
            if id(part) in seen:
                continue
            part_error = _failure(part, dumps)
            if part_error is not None:
                seen.add(id(part))
                path, obj, error = path + where, part, part_error
                break
        else:
            break  # no part fails on its own: *obj* is the culprit
    return path, obj, error


def _parts(obj: object) -> Iterator[tuple[str, object]]:
    """The pieces pickle would save for *obj*, as (path suffix, value)."""
    parts = _all_parts(obj)
    for _ in range(_MAX_PARTS):
        try:
            yield next(parts)
        except StopIteration:
            return
        except Exception:  # a mapping or object that fails when looked into
            return


def _all_parts(obj: object) -> Iterator[tuple[str, object]]:
    import reprlib  # only once pickling failed

    if isinstance(obj, (list, tuple)):
        for index, item in enumerate(obj):  # pyright: ignore[reportUnknownArgumentType, reportUnknownVariableType]
            yield f"[{index}]", item
    elif isinstance(obj, dict):
        items = cast("dict[object, object]", obj).items()
        for key, value in items:
            yield f"[{reprlib.repr(key)}]", value
    elif isinstance(obj, functools.partial):
        yield ".func", obj.func
        for index, item in enumerate(obj.args):
            yield f".args[{index}]", item
        for key, value in obj.keywords.items():
            yield f".keywords[{key!r}]", value
    elif isinstance(obj, MethodType):
        yield ".__self__", obj.__self__
    elif _pickles_its_dict(obj):
        for key, value in vars(obj).items():
            yield f".{key}", value


def _pickles_its_dict(obj: object) -> bool:
    """Whether *obj* is pickled as its class plus its ``__dict__`` (the default)."""
    kind = type(obj)
    default_getstate = getattr(object, "__getstate__", None)  # 3.11+
    return (
        isinstance(getattr(obj, "__dict__", None), dict)
        and not isinstance(obj, (type, FunctionType, BuiltinFunctionType))
        and kind.__reduce_ex__ is object.__reduce_ex__
        and kind.__reduce__ is object.__reduce__
        and getattr(kind, "__getstate__", None) is default_getstate
    )


def _kind(obj: object) -> str:
    kind = type(obj)
    name = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )
    article = "an" if name[:1].lower() in "aeiou" else "a"
    return f"{article} {name} object"


def _reason(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
