"""Every example in docs/examples/ runs as written and prints what its page shows.

Each example runs offline in a fresh interpreter, exits 0 and writes nothing to
stderr. Its output, as the pages show it, is compared with what it really
prints (see :func:`shown_outputs` for which blocks count as output), so a page
cannot drift from its example. No time limit beyond a hang guard: speed is for
the benchmarks, and a loaded machine made a 5-second limit fail examples that
were right.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from _shown_output import matches, mismatch

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"
SCRIPTS = sorted(EXAMPLES.glob("*.py"))
PAGES = sorted(p for p in DOCS.rglob("*.md") if "_build" not in p.parts)
HANG_GUARD = 120.0
"""Seconds before a run counts as hung (the examples take a few)."""

_FENCE = re.compile(
    r"^```(?P<info>[^\n]*)\n(?P<body>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL
)
_INCLUDE = re.compile(r"\{literalinclude\} \.\./examples/(\S+\.py)")
_RUN = re.compile(r"\$ python (?P<script>\S+\.py)(?P<args>[^\n]*)")
NOT_OUTPUT = "% not the example's output:"
"""A MyST comment right above a text block that illustrates something else."""


@dataclass(frozen=True)
class Shown:
    """An output block on a page: the lines it shows for one run of an example."""

    page: str
    line: int
    args: tuple[str, ...]
    lines: tuple[str, ...]


def shown_outputs(
    text: str, name: str
) -> dict[tuple[str, tuple[str, ...]], list[Shown]]:
    """The output blocks of page *name*, by example file name and its arguments.

    An output block is a ```` ```text ```` block, or a ```` ```console ```` block
    that starts with ``$ python <file>.py [args]`` (its other lines are the
    output), placed after a literalinclude of an example: it shows the output of
    the example included last above it, whatever name the page saves it under.
    A text block that shows something else is marked by a :data:`NOT_OUTPUT`
    comment on the line above it. An example's blocks on one page, in order,
    show its whole output, with ``...`` lines for what they leave out.
    """
    found: dict[tuple[str, tuple[str, ...]], list[Shown]] = {}
    example: str | None = None
    for fence in _FENCE.finditer(text):
        info, body = fence["info"].strip(), fence["body"]
        line = text.count("\n", 0, fence.start()) + 1
        include = _INCLUDE.match(info)
        if include:
            example = include[1]
            continue
        lines = body.splitlines()
        if info == "console" and lines and (run := _RUN.fullmatch(lines[0])):
            args, lines = tuple(shlex.split(run["args"])), lines[1:]
            assert not any(x.startswith("$ ") for x in lines), (
                f"{name}:{line}: one command per console block that shows output"
            )
        elif info == "text":
            above = text[: fence.start()].rstrip("\n").rsplit("\n", 1)[-1]
            if above.startswith(NOT_OUTPUT):
                continue
            args = ()
        else:
            continue
        assert example is not None, (
            f"{name}:{line}: an output block with no example above it; mark it "
            f"with '{NOT_OUTPUT} <what it shows>' if it is an illustration"
        )
        shown = Shown(name, line, args, tuple(lines))
        found.setdefault((example, args), []).append(shown)
    return found


def _all_shown() -> dict[tuple[str, tuple[str, ...]], list[Shown]]:
    shown: dict[tuple[str, tuple[str, ...]], list[Shown]] = {}
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        name = page.relative_to(ROOT).as_posix()
        for key, blocks in shown_outputs(text, name).items():
            assert key not in shown, f"{key[0]} is shown on two pages"
            shown[key] = blocks
    return shown


SHOWN = _all_shown()


def run_example(script: Path, args: tuple[str, ...] = ()) -> str:
    """Run *script* from the repository root, as a reader would; return its stdout.

    It must exit 0 and write nothing to stderr.
    """
    env = {
        **os.environ,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONIOENCODING": "utf-8",
    }
    proc = subprocess.run(
        [sys.executable, script.relative_to(ROOT).as_posix(), *args],
        capture_output=True,
        encoding="utf-8",
        timeout=HANG_GUARD,
        cwd=ROOT,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, (
        f"{script.name} exited {proc.returncode}\n"
        f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
    )
    assert not proc.stderr.strip(), f"{script.name} wrote to stderr:\n{proc.stderr}"
    return proc.stdout


def test_examples_are_found() -> None:
    assert len(SCRIPTS) >= 10, f"expected the docs examples in {EXAMPLES}"


def test_output_blocks_are_found() -> None:
    """The parser sees the pages' output blocks (a broken one would check nothing)."""
    assert ("iter_blocking_source.py", ()) in SHOWN
    assert ("scripts_cli.py", ("Oslo", "Lima")) in SHOWN
    assert len(SHOWN) >= 15
    assert all(name in {s.name for s in SCRIPTS} for name, _ in SHOWN)


@pytest.mark.parametrize("script", [pytest.param(s, id=s.stem) for s in SCRIPTS])
def test_docs_example_runs_and_prints_what_its_page_shows(script: Path) -> None:
    """Run the example; each run a page shows must print what the page shows."""
    runs = {
        args: blocks for (name, args), blocks in SHOWN.items() if name == script.name
    }
    for args in runs or {(): []}:
        real = run_example(script, args).splitlines()
        blocks = runs.get(args, [])
        if not blocks:
            continue
        shown = [line for block in blocks for line in block.lines]
        problem = mismatch(
            shown,
            real,
            ", ".join(f"{b.page}:{b.line}" for b in blocks),
            f"python {script.name} {shlex.join(args)}".rstrip(),
        )
        if problem:
            pytest.fail(problem, pytrace=False)


# -- the comparison itself ---------------------------------------------------


def test_matching_normalises_only_what_varies() -> None:
    assert matches(["done in 0.20 s"], ["done in 1.37 s"])
    assert matches(["<Lock at 0x7f00>"], ["<Lock at 0x55aa12>"])
    assert not matches(["closed on worker-1"], ["closed on worker-close"])
    assert not matches(["threshold 0.1 s"], ["threshold 0.2 s"])
    for seconds in ('lag_seconds{b="a"}', 'busy_seconds_total{b="a"}', "t_seconds_sum"):
        assert matches([f"x_{seconds} 0.2012"], [f"x_{seconds} 0.20018480200087652"])
    for count in (
        'calls_total{b="a"}',
        'wait_seconds_count{b="a"}',
        "t_seconds_bucket",
    ):
        assert not matches([f"x_{count} 9.0"], [f"x_{count} 10.0"])
    assert not matches(["a", "b"], ["a"])
    assert not matches(["a"], ["a", "b"])


def test_an_ellipsis_line_stands_for_any_lines() -> None:
    assert matches(["a", "  ...", "d"], ["a", "b", "c", "d"])
    assert matches(["a", "...", "b"], ["a", "b"])
    assert not matches(["a", "...", "d"], ["a", "b", "c"])


def test_output_blocks_belong_to_the_example_included_above_them() -> None:
    page = (
        "```{literalinclude} ../examples/a.py\n```\n\n"
        "```console\n$ python saved_as.py x 'y z'\nout 1\n```\n\n"
        "```text\nout 2\n```\n\n"
        f"{NOT_OUTPUT} a log of some other app\n```text\nignored\n```\n\n"
        "```console\n$ python -m pip install .\n```\n"
    )
    found = shown_outputs(page, "page.md")
    assert {k: [b.lines for b in v] for k, v in found.items()} == {
        ("a.py", ("x", "y z")): [("out 1",)],
        ("a.py", ()): [("out 2",)],
    }
