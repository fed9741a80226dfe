from __future__ import annotations

import subprocess
import sys

import pytest

from syncbridge.__main__ import main


def test_demo_shows_blocking_waits_overlap(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--count", "5", "--wait", "0.1"]) == 0
    out = capsys.readouterr().out
    times = [
        float(line.split()[-2]) for line in out.splitlines() if line.endswith(" s")
    ]
    sequential, gathered, bridged = times
    assert sequential >= 0.5
    # both concurrent rows overlap their waits: far below the sequential total
    assert gathered < 0.35
    assert bridged < 0.35


def test_demo_rejects_bad_arguments() -> None:
    with pytest.raises(SystemExit) as info:
        main(["demo", "--count", "0"])
    assert info.value.code == 2


def test_python_dash_m_entry_point() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "syncbridge", "demo", "--count", "2", "--wait", "0"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert "run_blocking(time.sleep" in result.stdout
