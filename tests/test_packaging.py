"""The wheel: its license file and the metadata a package index shows."""

from __future__ import annotations

import email.parser
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    # hatchling refuses unknown classifiers, so building checks them too.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "uv",
            "build",
            "--wheel",
            "--quiet",
            "--out-dir",
            str(out),
        ],
        cwd=ROOT,
        check=True,
        timeout=300,
    )
    (built,) = out.glob("syncbridge-*.whl")
    return built


@pytest.fixture(scope="module")
def metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return email.parser.Parser().parsestr(archive.read(name).decode())


def test_the_repository_has_the_mit_license() -> None:
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License")


def test_the_wheel_contains_the_license(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        licenses = [n for n in archive.namelist() if n.endswith("/licenses/LICENSE")]
        assert len(licenses) == 1
        assert archive.read(licenses[0]) == (ROOT / "LICENSE").read_bytes()


def test_license_metadata(metadata: email.message.Message) -> None:
    assert metadata["License-Expression"] == "MIT"
    assert metadata.get_all("License-File") == ["LICENSE"]


def test_project_urls(metadata: email.message.Message) -> None:
    urls = dict(u.split(", ", 1) for u in metadata.get_all("Project-URL") or [])
    assert set(urls) == {"Documentation", "Changelog", "Source", "Issues"}
    assert all(
        u.startswith("https://github.com/syncbridge/syncbridge") for u in urls.values()
    )


@pytest.mark.parametrize(
    "classifier",
    [
        "Framework :: AnyIO",
        "Framework :: AsyncIO",
        "Framework :: FastAPI",
        "Framework :: Flask",
        "Framework :: Trio",
        "Intended Audience :: Developers",
        "Operating System :: OS Independent",
        *(f"Programming Language :: Python :: 3.{minor}" for minor in range(11, 16)),
        "Programming Language :: Python :: Free Threading :: 3 - Stable",
        "Topic :: Internet :: WWW/HTTP",
        "Topic :: Software Development :: Libraries",
        "Typing :: Typed",
    ],
)
def test_classifiers(metadata: email.message.Message, classifier: str) -> None:
    assert classifier in (metadata.get_all("Classifier") or [])


def test_python_310_is_not_supported(metadata: email.message.Message) -> None:
    assert metadata["Requires-Python"] == ">=3.11"
    assert "Programming Language :: Python :: 3.10" not in (
        metadata.get_all("Classifier") or []
    )


def test_the_wheel_has_the_typing_marker(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        assert "syncbridge/py.typed" in archive.namelist()
