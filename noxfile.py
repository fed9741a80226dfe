"""Automation: the only entry point for tests, type checks, lint and benchmarks.

``nox`` runs the default sessions (tests on every supported Python, free-threaded
builds included, distributed: the executor tests on a real dask cluster and loky,
typecheck, lint, docs, compat: the frameworks' own suites with syncbridge applied,
newcomer: the README's and docs' install lines in fresh virtual environments).
``SYNCBRIDGE_PYTHONS`` (``"3.11 3.13t"``) narrows the interpreters a run tests;
in CI (``CI`` set) a missing one is an error, not a skip. The reliability suites
at full scale (``nox -s faults``, ``stress``, ``soak``, and ``free_threaded``,
all three on a free-threaded build) run only when named (``.ci/run`` names
``free_threaded``); ``tests`` runs them at their small default scale.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import tarfile
import time
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = [
    "tests",
    "distributed",
    "typecheck",
    "lint",
    "docs",
    "compat",
    "newcomer",
]
nox.options.error_on_missing_interpreters = bool(os.environ.get("CI"))

SUPPORTED_PYTHONS = ["3.11", "3.12", "3.13", "3.14", "3.15", "3.13t", "3.14t"]
FREE_THREADED = [p for p in SUPPORTED_PYTHONS if p.endswith("t")]
# The interpreters this run tests: every supported one unless SYNCBRIDGE_PYTHONS
# names some (.ci/run tests the ones Debian 12 has on the host and the others in
# a chroot, each run erroring on any of its own that is missing).
PYTHONS = os.environ.get("SYNCBRIDGE_PYTHONS", " ".join(SUPPORTED_PYTHONS)).split()


PYPROJECT = nox.project.load_toml("pyproject.toml")
ALL_EXTRAS = ",".join(PYPROJECT["project"]["optional-dependencies"])


def install(session: nox.Session, *groups: str, extras: str = "") -> None:
    """Install the project (editable, with *extras*) and dependency *groups*."""
    requirements: list[str] = []
    for group in groups:
        requirements += nox.project.dependency_groups(PYPROJECT, group)
    if str(session.python).endswith("t"):
        # Their source builds need a Rust toolchain and crates; the wheels they
        # publish for free-threaded builds (older releases) import without the GIL.
        requirements += [
            "--only-binary",
            "pydantic-core",
            "--only-binary",
            "hypothesis",
        ]
    session.install("-e", f".[{extras}]" if extras else ".", *requirements)


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Run the test suite (asyncio and trio backends) under pytest."""
    install(session, "test", extras="trio,uvloop")
    session.run("pytest", *session.posargs)


@nox.session(python="3.11")
def distributed(session: nox.Session) -> None:
    """Run the executor tests against a real dask cluster and loky's process pool.

    A ``LocalCluster`` of 2 worker processes on loopback; needs the extras
    ``syncbridge[dask,loky]``, which the ``tests`` session leaves out (it does
    not collect these modules at all).
    """
    install(session, "test", extras="trio,dask,loky")
    session.run(
        "pytest", "tests/test_dask.py", "tests/test_loky.py", "tests/test_executors.py",
        *session.posargs,
    )  # fmt: skip


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


@nox.session(python=[p for p in PYTHONS if p in FREE_THREADED] or FREE_THREADED)
def free_threaded(session: nox.Session) -> None:
    """Hammer the core on a free-threaded build, where the GIL hides no race.

    The fault suite at 5 rounds per fault, then the stress suite at full scale
    (50 caller threads on top of the workers, on however few cores) five
    times in a row, then a soak of 500,000 calls a direction whose counts must
    add up exactly (about 6 minutes on 2 cores). Each pytest run fails if the GIL came back on. ``.ci/run``
    runs it; positional arguments go to every pytest run.
    """
    install(session, "test", extras="trio,uvloop")
    session.run(
        "pytest", "tests/faults", "-m", "faults", *session.posargs,
        env={"SYNCBRIDGE_FAULT_ROUNDS": "5"},
    )  # fmt: skip
    for _ in range(5):
        session.run(
            "pytest", "tests/stress", "-m", "stress", *session.posargs,
            env={"SYNCBRIDGE_STRESS_SCALE": "full"},
        )  # fmt: skip
    session.run(
        "pytest", "tests/soak", "-m", "soak", *session.posargs,
        env={"SYNCBRIDGE_SOAK_CALLS": "500000"},
    )  # fmt: skip


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
    installed wheel presents it, and fails below 100 %. Every extra is
    installed: an optional import that is missing is an unknown type to pyright.
    """
    install(session, "typecheck", "bench", extras=ALL_EXTRAS)
    session.run("mypy", *session.posargs)
    session.run("pyright")
    # verifytypes reads the package from site-packages, not an editable install.
    session.install("--no-deps", "--force-reinstall", ".")
    session.run("pyright", "--verifytypes", "syncbridge", "--ignoreexternal")
    session.install("--no-deps", "-e", ".")  # back to editable for the next run


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """Run ruff (lint and format check) and check the import layers (``.importlinter``)."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    # Static: reads src/ without installing syncbridge.
    session.run("lint-imports", env={"PYTHONPATH": "src"})


@nox.session(python="3.11")
def docs(session: nox.Session) -> None:
    """Build the HTML docs; warnings and broken references are errors.

    The threading-model diagram needs Graphviz's ``dot`` (apt-get install graphviz):
    without it the session is skipped locally and fails in CI (which installs it).
    """
    if shutil.which("dot") is None and not os.environ.get("CI"):
        session.skip("Graphviz's `dot` is not installed (apt-get install graphviz)")
    install(session, "docs", extras="trio,prometheus,opentelemetry")
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
    """Benchmark syncbridge against its peers; prints medians and ratios.

    Ends with one table of every script's targets from this run
    (``benchmarks/_summary.py``), so a regression shows at a glance.
    """
    install(session, "bench", extras="trio,uvloop")
    summary = Path(session.create_tmp()) / "bench-summary.jsonl"
    summary.unlink(missing_ok=True)
    env = {"SYNCBRIDGE_BENCH_SUMMARY": str(summary)}
    for script in sorted(os.listdir("benchmarks")):
        if script.startswith("bench_") and script.endswith(".py"):
            session.run("python", f"benchmarks/{script}", *session.posargs, env=env)
    session.run("python", "benchmarks/_summary.py", str(summary))


@nox.session(python=FREE_THREADED)
def bench_free_threaded(session: nox.Session) -> None:
    """Benchmark a free-threaded build beside the GIL build of the same Python.

    Not a default session. ``SYNCBRIDGE_GIL_PYTHON`` names the GIL interpreter
    (``.ci/pythons`` builds one from 3.13t's own source with the same flags:
    ``/opt/python3.13/bin/python3.13`` in its chroot), else ``python3.X`` on
    PATH; the session gives it a venv of its own with the same dependencies.
    Appends its targets to the summary, as the ``bench`` scripts do.
    """
    install(session, "bench", extras="trio,uvloop")
    assert isinstance(session.python, str)
    minor = session.python.removesuffix("t")
    gil = os.environ.get("SYNCBRIDGE_GIL_PYTHON") or shutil.which(f"python{minor}")
    if gil is None:
        session.error(f"no GIL build of {minor}: set SYNCBRIDGE_GIL_PYTHON")
    has_uv, uv, _ = nox.virtualenv.find_uv()
    if not has_uv:
        session.error("needs uv (pip install 'nox[uv]')")
    venv = Path(session.create_tmp(), "gil")
    session.run(uv, "venv", "-q", "-p", gil, str(venv), external=True)
    python = str(venv / "bin" / "python")
    session.run(
        uv, "pip", "install", "-q", "-p", python, "-e", ".[trio,uvloop]",
        "--group", "bench", external=True,
    )  # fmt: skip
    summary = Path(session.create_tmp()) / "bench-summary.jsonl"
    summary.unlink(missing_ok=True)
    session.run(
        "python", "benchmarks/bench_free_threaded.py", "--gil-python", python,
        *session.posargs, env={"SYNCBRIDGE_BENCH_SUMMARY": str(summary)},
    )  # fmt: skip
    session.run("python", "benchmarks/_summary.py", str(summary))


# The frameworks whose own released test suites ``compat`` runs: the distribution,
# the wrapped runs (SYNCBRIDGE_COMPAT_MODE values), the suite's dependency groups
# and the extras its tests import. Test plugins that change how pytest reports
# (coverage, benchmarks, pretty output) and linters are left out: they change
# nothing under test.
COMPAT_SUITES = {
    "flask": ("flask", ["flask"], ["tests"], ""),
    "starlette": ("starlette", ["fastapi", "fastapi-options"], ["dev"], "full"),
    "fastapi": ("fastapi", ["fastapi", "fastapi-options"], ["tests"], "all"),
}
COMPAT_SKIP_REQUIREMENTS = (
    "coverage",
    "mypy",
    "pytest-codspeed",
    "pytest-cov",
    "pytest-sugar",
    "ruff",
    "twine",
    "ty",
)


def _requirement_name(requirement: str) -> str:
    name = requirement
    for stop in "<>=!~[;@ ":
        name = name.split(stop, 1)[0]
    return name.strip().lower().replace("_", "-")


@nox.session(python="3.11")
@nox.parametrize("suite", list(COMPAT_SUITES))
def compat(session: nox.Session, suite: str) -> None:
    """Run Flask's, Starlette's and FastAPI's own test suites with syncbridge applied.

    Each suite is the released sdist of the version the ``tests`` session
    installs. It runs stock, then with ``SyncBridge(app)`` on every Flask app or
    ``syncbridge.fastapi.install(app)`` (plain, and with ``threads=8,
    blocking_threshold=0.5``) on every Starlette/FastAPI app; the sets of failing
    tests must be identical. Positional arguments go to each pytest run.
    """
    dist, modes, groups, extras = COMPAT_SUITES[suite]
    # The frameworks as the tests session resolves them, without its pytest
    # plugins (pytest-asyncio, hypothesis), which would change the suites.
    install(session, "web", extras="flask,fastapi")
    pins = [
        f"{name}=={_installed_version(session, name)}"
        for name in ("flask", "starlette", "fastapi")
    ]
    pin = next(p for p in pins if p.startswith(f"{dist}=="))
    version = pin.split("==")[1]
    # Outside the session's venv: Flask's suite tells installed packages from
    # source trees by whether a path lies under sys.prefix.
    tmp = Path(".nox", "_compat", suite).resolve()
    (tmp / "tmp").mkdir(parents=True, exist_ok=True)
    source = tmp / f"{dist}-{version}"
    if not source.is_dir():
        session.install("pip")
        session.run(
            "python", "-m", "pip", "download", "--quiet", "--no-deps",
            "--no-binary", ":all:", pin, "-d", str(tmp),
        )  # fmt: skip
        with tarfile.open(tmp / f"{dist}-{version}.tar.gz") as archive:
            archive.extractall(tmp, filter="data")
    project = nox.project.load_toml(source / "pyproject.toml")
    requirements = [
        r
        for group in groups
        for r in nox.project.dependency_groups(project, group)
        if _requirement_name(r) not in COMPAT_SKIP_REQUIREMENTS
    ]
    locked = _locked(session, source, groups, requirements)
    if extras:
        requirements.append(f"{dist}[{extras}]")
    session.install(*requirements, *locked, *pins)

    plugin_dir = Path("tests/compat").resolve()
    results: dict[str, set[str]] = {}
    timings: dict[str, float] = {}
    session.chdir(source)
    for mode in ["stock", *modes]:
        report = tmp / f"report-{mode}.json"
        report.unlink(missing_ok=True)
        started = time.monotonic()
        session.run(
            "python", "-m", "pytest", "tests", "-p", "no:cacheprovider",
            "-p", "syncbridge_compat", "-q", "--no-header",
            *session.posargs,
            env={
                "PYTHONPATH": str(plugin_dir),
                "SYNCBRIDGE_COMPAT_MODE": mode,
                "SYNCBRIDGE_COMPAT_REPORT": str(report),
                "TMPDIR": str(tmp / "tmp"),
            },
            success_codes=[0, 1],
        )  # fmt: skip
        timings[mode] = time.monotonic() - started
        outcome = json.loads(report.read_text(encoding="utf-8"))
        results[mode] = set(outcome["failed"])
        session.log(
            f"{dist} {version} [{mode}]: {len(results[mode])} failing, "
            f"{outcome['wrapped']} apps wrapped, {timings[mode]:.0f} s"
        )
        # A run that wrapped no app would compare nothing: the hook is broken.
        if mode != "stock" and outcome["wrapped"] < _MIN_WRAPPED:
            session.error(
                f"{dist} {version} [{mode}]: only {outcome['wrapped']} apps were "
                f"wrapped (expected {_MIN_WRAPPED} or more): the integration was "
                "not applied to the suite's apps"
            )
    stock = results["stock"]
    differing = False
    for mode in modes:
        only_wrapped = sorted(results[mode] - stock)
        only_stock = sorted(stock - results[mode])
        for label, ids in (
            (f"fail only with syncbridge [{mode}]", only_wrapped),
            (f"fail only without syncbridge [{mode}]", only_stock),
        ):
            if ids:
                differing = True
                session.log(f"{len(ids)} tests {label}:\n  " + "\n  ".join(ids))
    if differing:
        session.error(f"{dist} {version}: the failing tests differ (see above)")


_MIN_WRAPPED = 100  # each suite makes hundreds of apps (460, 410, 2,251 today)


def _installed_version(session: nox.Session, dist: str) -> str:
    code = f"import importlib.metadata as m; print(m.version({dist!r}))"
    out = session.run("python", "-c", code, silent=True)
    assert isinstance(out, str)
    return out.strip()


def _locked(
    session: nox.Session, source: Path, groups: list[str], requirements: list[str]
) -> list[str]:
    """Pin the suite's own test tools to the versions its ``uv.lock`` holds.

    A suite is written against its lockfile's pytest (Flask 3.1.3's imports a
    private name later pytest releases dropped). Only the group's direct
    requirements are pinned: the framework's own dependencies stay as the
    ``tests`` session resolves them.
    """
    if not (source / "uv.lock").is_file():
        return []
    has_uv, uv, _ = nox.virtualenv.find_uv()
    if not has_uv:
        return []
    out = session.run(
        uv, "export", "--frozen", "--no-hashes", "--no-emit-project",
        "--no-annotate", "--no-header", *(f"--only-group={g}" for g in groups),
        "--directory", str(source), silent=True, external=True,
    )  # fmt: skip
    assert isinstance(out, str)
    direct = {_requirement_name(r) for r in requirements}
    return [
        line.strip()
        for line in out.splitlines()
        if line.strip()
        and not line.startswith(("#", " "))
        and _requirement_name(line) in direct
    ]


# The pages whose install lines ``newcomer`` runs, with the examples it then runs
# (besides the page's own literalincluded ones). A how-to that installs into the
# tutorial's checkout starts from the tutorial's clone and venv lines.
NEWCOMER_PAGES = {
    "README.md": None,
    "docs/tutorial/first-bridge.md": None,
    "docs/tutorial/web-apps.md": None,
    "docs/howto/flask.md": "docs/tutorial/first-bridge.md",
    "docs/howto/testing.md": "docs/tutorial/first-bridge.md",
    "docs/howto/observability.md": None,
    "docs/howto/fastapi.md": "docs/tutorial/first-bridge.md",
    "docs/howto/cpu-and-clusters.md": "docs/tutorial/first-bridge.md",
    "docs/howto/scheduled-jobs.md": "docs/tutorial/first-bridge.md",
}
_CONSOLE_BLOCK = re.compile(r"```console\n(.*?)```", re.DOTALL)
_INLINE_INSTALL = re.compile(r"`((?:python -m )?pip install [^`]+)`")
_SETUP = re.compile(r"^(git clone |python -m venv |\. \.venv/bin/activate)")


def newcomer_steps(text: str) -> list[str]:
    """The setup lines of a page: clone, venv, activate and pip install lines.

    The contributor command (``pip install 'nox[uv]' && python -m nox``) is left
    out: it is what runs this.
    """
    lines = [
        line.removeprefix("$ ").strip()
        for block in _CONSOLE_BLOCK.findall(text)
        for line in block.splitlines()
    ]
    lines += _INLINE_INSTALL.findall(text)
    return [
        line
        for line in lines
        if ("pip install" in line or _SETUP.match(line)) and "nox" not in line
    ]


@nox.session(python=False)
def newcomer(session: nox.Session) -> None:
    """Follow the README and the docs literally: their install lines, then their code.

    Each page gets a fresh directory: its lines run there in one shell (the
    ``git clone`` clones this checkout's committed HEAD instead of the URL),
    then the page's examples run with only what the page installed.
    """
    root = Path.cwd()
    work = Path(".nox", "_newcomer").resolve()
    shutil.rmtree(work, ignore_errors=True)
    for page, base in NEWCOMER_PAGES.items():
        text = (root / page).read_text(encoding="utf-8")
        steps = newcomer_steps(text)
        if base is not None:
            base_steps = newcomer_steps((root / base).read_text(encoding="utf-8"))
            steps = [s for s in base_steps if "pip install" not in s] + steps
        if not any("pip install" in s for s in steps):
            session.error(f"{page}: no install line found")
        if not steps[0].startswith("git clone "):
            session.error(f"{page}: the first step is not the git clone line")
        steps[0] = re.sub(
            r"git clone \S+", f"git clone --quiet {root} syncbridge", steps[0]
        )
        examples = [
            root / "docs" / m
            for m in re.findall(r"\{literalinclude\} \.\./(examples/\S+\.py)", text)
        ]
        checks = [f"python {shlex.quote(str(e))}" for e in examples]
        if page == "README.md":
            for i, block in enumerate(
                re.findall(r"```python\n(.*?)```", text, re.DOTALL)
            ):
                snippet = work / f"readme_block{i}.py"
                snippet.parent.mkdir(parents=True, exist_ok=True)
                snippet.write_text(block, encoding="utf-8")
                checks.append(f"python {shlex.quote(str(snippet))}")
        if page == "docs/howto/testing.md":
            # Run the page's test file as the page says: with pytest.
            checks = [
                f"python -m pytest -q -c /dev/null -p no:cacheprovider {shlex.quote(str(e))}"
                for e in examples
            ]
        checks.append("python -m syncbridge --version")
        page_dir = work / page.replace("/", "_")
        page_dir.mkdir(parents=True)
        session.chdir(page_dir)  # each page starts in a fresh directory
        script = "\n".join(["set -euxo pipefail", *steps, *checks])
        session.run(
            "bash", "-c", script, external=True,
            env={"PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        )  # fmt: skip
    session.chdir(root)
