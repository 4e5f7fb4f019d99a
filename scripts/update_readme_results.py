"""Splice notebook 08's results into README.md, between the results markers.

    python scripts/update_readme_results.py           # rewrite README.md's results section
    python scripts/update_readme_results.py --check   # exit 1 if README.md's section differs from the run

Notebook 08, refreshed with ``scripts/run_notebooks.py --in-place 08``, writes ``docs/results/summary.md``
(a header line with profile, date and protocols, the summary table, the n/a reasons and the computed
conclusions) and ``docs/results/summary.png``. This script copies the first and embeds the second in
README.md between ``<!-- results:start -->`` and ``<!-- results:end -->``, touching nothing
outside the markers. ``tests/test_readme_results.py`` fails when the two drift apart.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SUMMARY = ROOT / "docs" / "results" / "summary.md"
FIGURE = "docs/results/summary.png"  # relative to the README
START, END = "<!-- results:start -->", "<!-- results:end -->"
NOTE = ("This section is produced by the run: notebook 08 (refreshed with `scripts/run_notebooks.py --in-place 08`) "
        "writes `docs/results/summary.md` and `docs/results/summary.png`, and "
        "`python scripts/update_readme_results.py` copies them here.")


def section(summary_md: str) -> str:
    """The README's results section, markers included, for the given ``summary.md`` text."""
    return (f"{START}\n{NOTE}\n\n{summary_md.strip()}\n\n"
            f"![Summary figure: the five axes side by side]({FIGURE})\n{END}")


def _bounds(readme: str) -> tuple[int, int]:
    """Start and end offsets of the marked section (markers included); clear errors if malformed."""
    if readme.count(START) != 1 or readme.count(END) != 1:
        raise ValueError(f"README.md must hold exactly one {START!r} and one {END!r} line "
                         f"(found {readme.count(START)} and {readme.count(END)}); add them where the results go")
    start, end = readme.index(START), readme.index(END) + len(END)
    if end < start:
        raise ValueError(f"{END!r} comes before {START!r} in README.md; swap them")
    return start, end


def current(readme: str) -> str:
    """The marked section of ``readme`` as it stands, markers included."""
    start, end = _bounds(readme)
    return readme[start:end]


def splice(readme: str, summary_md: str) -> str:
    """``readme`` with its marked section replaced by :func:`section` of ``summary_md``."""
    start, end = _bounds(readme)
    return readme[:start] + section(summary_md) + readme[end:]


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if README.md is out of date")
    args = parser.parse_args(argv)
    if not SUMMARY.is_file():
        sys.exit(f"{SUMMARY.relative_to(ROOT)} is missing: run notebook 08 first "
                 "(python scripts/run_notebooks.py --in-place 08)")
    readme, summary_md = README.read_text(encoding="utf-8"), SUMMARY.read_text(encoding="utf-8")
    updated = splice(readme, summary_md)
    if args.check:
        if updated != readme:
            print("README.md's results section differs from docs/results/summary.md; "
                  "run python scripts/update_readme_results.py")
            return 1
        print("README.md's results section is up to date")
        return 0
    if updated != readme:
        _write_atomic(README, updated)
    print(f"README.md results section {'updated' if updated != readme else 'already up to date'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
