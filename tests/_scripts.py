"""Run a script in a fresh interpreter: for exit, fork and import tests.

Beside the tests (pytest's "prepend" import mode puts this directory on
``sys.path``), so tests import it as ``from _scripts import run_script``.
"""

from __future__ import annotations

__all__ = ("run_script",)

import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence


def run_script(
    code: str, *, timeout: float = 30, flags: Sequence[str] = ()
) -> subprocess.CompletedProcess[str]:
    """Run *code* (dedented) with this interpreter and return what it printed.

    *flags* go before ``-c`` (``["-W", "ignore::DeprecationWarning"]``). The
    exit status is the caller's to check; a run longer than *timeout* raises
    :class:`subprocess.TimeoutExpired`, which carries the output so far.
    """
    return subprocess.run(
        [sys.executable, *flags, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
