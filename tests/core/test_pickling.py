"""check_picklable: what cannot go to another process is named, with what to do."""

from __future__ import annotations

import pickle
import threading

import pytest

from syncbridge import SerializationError
from syncbridge._core._pickling import check_picklable, exception_message


def _top_level(x: int) -> int:
    return x


def test_a_picklable_call_is_pickled_once_as_is() -> None:
    data = check_picklable(_top_level, (1,), {"x": 2})
    assert pickle.loads(data) == (_top_level, (1,), {"x": 2})


def test_a_lambda_is_refused_with_what_to_do() -> None:
    with pytest.raises(SerializationError) as raised:
        check_picklable(lambda: 1, (), {}, what="ProcessExecutor.submit()")
    message = str(raised.value)
    assert message.startswith("ProcessExecutor.submit(): the function ")
    assert "<lambda>" in message
    assert "cannot be pickled" in message
    assert "Pass a function defined at the top level of a module" in message
    assert isinstance(raised.value.__cause__, (pickle.PicklingError, AttributeError))


def test_the_innermost_unpicklable_value_of_an_argument_is_named() -> None:
    config = {"path": "/tmp/x", "conn": threading.Lock()}
    with pytest.raises(SerializationError) as raised:
        check_picklable(_top_level, (1,), {"config": config}, what="to_async")
    message = str(raised.value)
    assert (
        "keyword argument 'config' of _top_level() (a dict object) cannot be "
        "pickled because of the value at ['conn'] (a _thread.lock object)"
    ) in message
    assert "open those inside the function" in message


def test_the_pickler_is_the_callers() -> None:
    """*dumps* is pluggable (cloudpickle for loky and dask): its refusal counts."""

    def keeps_secrets(obj: object) -> bytes:
        if "secret" in repr(obj):
            raise TypeError("no secrets here")
        return pickle.dumps(obj)

    assert check_picklable(_top_level, ("public",), {}, dumps=keeps_secrets)
    with pytest.raises(
        SerializationError, match=r"argument 2 of _top_level\(\) .*no secrets here"
    ):
        check_picklable(_top_level, ("public", "secret"), {}, dumps=keeps_secrets)


def test_an_exception_that_cannot_go_back_keeps_its_type_and_text() -> None:
    message = exception_message(
        _top_level, ValueError("bad row 3"), TypeError("cannot pickle")
    )
    assert message.startswith("_top_level() raised ValueError: bad row 3;")
    assert "(TypeError: cannot pickle)" in message
    assert "pass every argument of its __init__ on to super().__init__()" in message
