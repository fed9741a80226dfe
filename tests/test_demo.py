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


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "syncbridge", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_demo_streams_each_row_as_it_is_measured() -> None:
    """The first row and the status line of the next arrive while the rest runs."""
    with subprocess.Popen(
        [sys.executable, "-m", "syncbridge", "demo", "--count", "2", "--wait", "0.5"],
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        lines = iter(proc.stdout.readline, "")
        assert next(lines).startswith("how")
        assert next(lines).startswith("---")
        status = next(lines)
        assert status.startswith("timing time.sleep(0.5) x 2, one after another")
        first = next(lines)
        assert first.startswith("time.sleep(0.5) x 2, one after another")
        assert first.rstrip().endswith(" s")
        # Two more rows of at least 0.5 s each are still to be measured.
        assert proc.poll() is None, "the first row came only with the whole table"
        assert next(lines).startswith("timing await asyncio.sleep(0.5)")
        assert proc.poll() is None
        rest = list(lines)
    assert proc.returncode == 0
    assert rest[0].startswith("await asyncio.sleep(0.5) x 2, gathered")
    assert rest[1].startswith("timing await run_blocking(time.sleep, 0.5)")
    assert rest[2].startswith("await run_blocking(time.sleep, 0.5) x 2, gathered")


def test_no_arguments_prints_the_help_and_exits_0() -> None:
    result = _run()
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m syncbridge")
    assert "demo" in result.stdout
    assert result.stderr == ""


def test_version() -> None:
    import syncbridge

    result = _run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"syncbridge {syncbridge.__version__}"


def test_demo_help_has_a_description() -> None:
    result = _run("demo", "--help")
    assert result.returncode == 0
    assert "Time N waits of SECONDS each, done three ways" in result.stdout
    assert "--count N" in result.stdout
