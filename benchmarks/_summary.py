"""Print the closing table of ``nox -s bench``: every script's targets, one run.

Run: ``python benchmarks/_summary.py FILE``, where FILE holds the JSON lines the
scripts appended through ``_harness.print_targets`` (``SYNCBRIDGE_BENCH_SUMMARY``).
Every figure is a ratio of medians measured side by side in the same script run;
``rounds`` says how many timed rounds each median is over.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def table(lines: list[str]) -> str:
    """The summary table for the JSON *lines*, and a count of goals met."""
    rows = [json.loads(line) for line in lines if line.strip()]
    if not rows:
        return "no targets were recorded"
    label_width = max(len(r["label"]) for r in rows) + 2
    script_width = max(len(r["script"]) for r in rows) + 2
    out = [
        "## summary: every target of this run (ratios of medians)",
        (
            f"   {'script':<{script_width}}{'target':<{label_width}}"
            f"{'measured':>9}  {'goal':<11}{'rounds':>7}  verdict"
        ),
    ]
    met = 0
    for r in rows:
        ok = r["value"] <= r["limit"] if r["at_most"] else r["value"] >= r["limit"]
        met += ok
        unit = r.get("unit", "x")
        goal = f"{'<=' if r['at_most'] else '>='} {r['limit']:g}{'' if unit == 'x' else unit}"
        rounds = "?" if r["rounds"] is None else str(r["rounds"])
        measured = f"{r['value']:.2f}{unit}"
        out.append(
            f"   {r['script']:<{script_width}}{r['label']:<{label_width}}"
            f"{measured:>9}  {goal:<11}{rounds:>7}  "
            f"{'MET' if ok else 'NOT MET'}"
        )
    out.append(f"   {met} of {len(rows)} targets met")
    return "\n".join(out)


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        sys.exit("usage: python benchmarks/_summary.py FILE")
    path = Path(argv[0])
    print(table(path.read_text(encoding="utf-8").splitlines() if path.exists() else []))


if __name__ == "__main__":
    main(sys.argv[1:])
