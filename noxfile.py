"""Automation: the only entry point for tests, type checks, lint and benchmarks.

``nox`` runs the default sessions (tests on every supported Python, typecheck,
lint, docs). In CI (``CI`` set) a missing interpreter is an error, not a skip.
The reliability suites at full scale (``nox -s faults``, ``stress``, ``soak``)
run only when named; ``tests`` runs them at their small default scale.
"""

from __future__ import annotations

import os
import shutil

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests", "typecheck", "lint", "docs"]
nox.options.error_on_missing_interpreters = bool(os.environ.get("CI"))

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]


PYPROJECT = nox.project.load_toml("pyproject.toml")


def install(session: nox.Session, *groups: str, extras: str = "") -> None:
    """Install the project (editable, with *extras*) and dependency *groups*."""
    requirements: list[str] = []
    for group in groups:
        requirements += nox.project.dependency_groups(PYPROJECT, group)
    session.install("-e", f".[{extras}]" if extras else ".", *requirements)


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Run the test suite (asyncio and trio backends) under pytest."""
    install(session, "test", extras="trio,uvloop")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHONS)
def faults(session: nox.Session) -> None:
    """Run the fault-injection suite with 5 rounds per fault (not a default session).

    The default ``tests`` session runs the same tests with one round.
    """
    install(session, "test", extras="trio,uvloop")
    session.run(
        "pytest",
        "tests/faults",
        "-m",
        "faults",
        *session.posargs,
        env={"SYNCBRIDGE_FAULT_ROUNDS": os.environ.get("SYNCBRIDGE_FAULT_ROUNDS", "5")},
    )


@nox.session(python="3.11")
def stress(session: nox.Session) -> None:
    """Run the stress suite at full scale: 10,000 nested calls, 50 threads per loop.

    Not a default session; the ``tests`` session runs it at a small scale.
    """
    install(session, "test", extras="trio,uvloop")
    session.run(
        "pytest",
        "tests/stress",
        "-m",
        "stress",
        *session.posargs,
        env={"SYNCBRIDGE_STRESS_SCALE": "full"},
    )


@nox.session(python="3.11")
def soak(session: nox.Session) -> None:
    """Soak each direction with 1,000,000 calls; logs RSS, blocks, threads, fds.

    Not a default session (about 3.5 minutes on 2 cores); the ``tests`` session
    runs it with 20,000 calls. ``SYNCBRIDGE_SOAK_CALLS`` overrides the count.
    """
    install(session, "test", extras="trio,uvloop")
    session.run(
        "pytest",
        "tests/soak",
        "-m",
        "soak",
        "-o",
        "log_cli=true",
        "--log-cli-level=INFO",
        *session.posargs,
        env={
            "SYNCBRIDGE_SOAK_CALLS": os.environ.get("SYNCBRIDGE_SOAK_CALLS", "1000000")
        },
    )


@nox.session(python="3.11")
def typecheck(session: nox.Session) -> None:
    """Gate the typing: mypy --strict, pyright strict, and verifytypes at 100 %.

    mypy checks src, tests, benchmarks, docs and this file; pyright (strict)
    checks src and tests/typing, so the typing checks users' code relies on hold
    under both. ``pyright --verifytypes`` then scores the public API as an
    installed wheel presents it, and fails below 100 %.
    """
    install(session, "typecheck", "bench", extras="trio,uvloop")
    session.run("mypy", *session.posargs)
    session.run("pyright")
    # verifytypes reads the package from site-packages, not an editable install.
    session.install("--no-deps", "--force-reinstall", ".")
    session.run("pyright", "--verifytypes", "syncbridge", "--ignoreexternal")
    session.install("--no-deps", "-e", ".")  # back to editable for the next run


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """Run ruff (lint and format check)."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python="3.11")
def docs(session: nox.Session) -> None:
    """Build the HTML docs; warnings and broken references are errors.

    The threading-model diagram needs Graphviz's ``dot`` (apt-get install graphviz):
    without it the session is skipped locally and fails in CI (which installs it).
    """
    if shutil.which("dot") is None and not os.environ.get("CI"):
        session.skip("Graphviz's `dot` is not installed (apt-get install graphviz)")
    install(session, "docs", extras="trio")
    session.run(
        "sphinx-build",
        "-W",
        "-n",
        "--keep-going",
        "-b",
        "html",
        "docs",
        "docs/_build/html",
        *session.posargs,
    )


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """Benchmark syncbridge against its peers; prints medians and ratios."""
    install(session, "bench", extras="trio,uvloop")
    for script in sorted(os.listdir("benchmarks")):
        if script.startswith("bench_") and script.endswith(".py"):
            session.run("python", f"benchmarks/{script}", *session.posargs)
