"""Every example in docs/examples/ runs as written: exit status 0, offline.

No time limit beyond a hang guard: speed is for the benchmarks, and a loaded
machine made a 5-second limit fail examples that were right.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"
SCRIPTS = sorted(EXAMPLES.glob("*.py"))
HANG_GUARD = 120.0
"""Seconds before a run counts as hung (the examples take a few)."""


def test_examples_are_found() -> None:
    assert len(SCRIPTS) >= 10, f"expected the docs examples in {EXAMPLES}"


@pytest.mark.parametrize("script", [pytest.param(s, id=s.stem) for s in SCRIPTS])
def test_docs_example_runs(script: Path) -> None:
    """Run the example in a fresh interpreter, as a reader would."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        cwd=EXAMPLES.parent.parent,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, (
        f"{script.name} exited {proc.returncode}\n"
        f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
    )
    assert not proc.stderr.strip(), f"{script.name} wrote to stderr:\n{proc.stderr}"
