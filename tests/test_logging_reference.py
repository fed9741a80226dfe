"""Every message syncbridge logs is in docs/reference/logging.md, with an event id."""

from __future__ import annotations

import ast
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
LEVELS = {"debug", "info", "warning", "error", "exception", "critical"}


def logging_calls() -> list[tuple[str, ast.Call]]:
    calls: list[tuple[str, ast.Call]] = []
    for path in sorted((ROOT / "src" / "syncbridge").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        calls += [
            (f"{path.name}:{node.lineno}", node)
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in LEVELS
            and "logger" in ast.unparse(node.func.value)
        ]
    return calls


def event_of(call: ast.Call) -> str | None:
    for keyword in call.keywords:
        if keyword.arg == "extra" and isinstance(keyword.value, ast.Dict):
            for key, value in zip(
                keyword.value.keys, keyword.value.values, strict=True
            ):
                if (
                    isinstance(key, ast.Constant)
                    and key.value == "syncbridge_event"
                    and isinstance(value, ast.Constant)
                ):
                    return str(value.value)
    return None


def test_the_source_logs_through_logger_calls_found_here() -> None:
    assert len(logging_calls()) >= 14


def test_every_logged_message_has_an_event_id_documented_with_its_level() -> None:
    page = (ROOT / "docs" / "reference" / "logging.md").read_text(encoding="utf-8")
    rows = {
        m.group(1): m.group(2)
        for m in re.finditer(r"^\| `([a-z-]+)` \| ([A-Z]+) \|", page, re.MULTILINE)
    }
    level_of = {"exception": "ERROR"}
    missing = []
    for where, call in logging_calls():
        event = event_of(call)
        assert isinstance(call.func, ast.Attribute)
        level = level_of.get(call.func.attr, call.func.attr.upper())
        if event is None or rows.get(event) != level:
            missing.append((where, event, level))
    assert missing == []
    assert len(rows) == len({event_of(c) for _, c in logging_calls()})
