"""Splice notebook 10's results and the measured chapter run times into README.md, between markers.

    python scripts/update_readme_results.py           # rewrite README.md's results section
    python scripts/update_readme_results.py --check   # exit 1 if README.md's section differs from the run

Notebook 08, refreshed with ``scripts/run_notebooks.py --in-place 10``, writes ``docs/results/summary.md``
(a header line with profile, date and protocols, the summary table, the n/a reasons and the computed
conclusions) and ``docs/results/summary.png``. This script copies the first and embeds the second in
README.md between ``<!-- results:start -->`` and ``<!-- results:end -->``, touching nothing
outside the markers. ``tests/test_readme_results.py`` fails when the two drift apart.

The chapter table between ``<!-- chapters:start -->`` and ``<!-- chapters:end -->`` comes from
``recnb.chapters`` (titles, concepts, Colab badges from the one repository URL) and
``recnb/runtimes.json`` (the minutes that ``scripts/run_notebooks.py --in-place`` measured), the same
source notebook 00 reads.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SUMMARY = ROOT / "docs" / "results" / "summary.md"
FIGURE = "docs/results/summary.png"  # relative to the README
START, END = "<!-- results:start -->", "<!-- results:end -->"
CHAPTERS_START, CHAPTERS_END = "<!-- chapters:start -->", "<!-- chapters:end -->"
NOTE = (
    "This section is produced by the run: notebook 10 (refreshed with `scripts/run_notebooks.py --in-place 10`) "
    "writes `docs/results/summary.md` and `docs/results/summary.png`, and "
    "`python scripts/update_readme_results.py` copies them here."
)


def section(summary_md: str) -> str:
    """The README's results section, markers included, for the given ``summary.md`` text."""
    return f"{START}\n{NOTE}\n\n{summary_md.strip()}\n\n![Summary figure: the five axes side by side]({FIGURE})\n{END}"


def chapters_section() -> str:
    """The README's chapter table, markers included: from recnb.chapters and recnb/runtimes.json."""
    sys.path.insert(0, str(ROOT))
    from recnb import chapters

    runtimes = chapters.load_runtimes()
    intro = (
        f"Minutes: {chapters.runs_described(runtimes)}. **Whole workbook: "
        f"{chapters.total_minutes(runtimes)} minutes** (the sum of all {len(chapters.CHAPTERS)}). "
        "Notebook 00 shows the same table, "
        "read from the same file (`recnb/runtimes.json`). Every number a notebook prints names its protocol "
        "([docs/protocols.md](docs/protocols.md)) and profile; every target is printed, met or missed, and "
        "what holds is asserted inside the notebook."
    )
    return f"{CHAPTERS_START}\n{intro}\n\n{chapters.readme_table(runtimes)}\n{CHAPTERS_END}"


def _bounds(readme: str, start_marker: str = START, end_marker: str = END) -> tuple[int, int]:
    """Start and end offsets of the marked section (markers included); clear errors if malformed."""
    if readme.count(start_marker) != 1 or readme.count(end_marker) != 1:
        raise ValueError(
            f"README.md must hold exactly one {start_marker!r} and one {end_marker!r} line "
            f"(found {readme.count(start_marker)} and {readme.count(end_marker)}); "
            "add them where the section goes"
        )
    start, end = readme.index(start_marker), readme.index(end_marker) + len(end_marker)
    if end < start:
        raise ValueError(f"{end_marker!r} comes before {start_marker!r} in README.md; swap them")
    return start, end


def current(readme: str, start_marker: str = START, end_marker: str = END) -> str:
    """The marked section of ``readme`` as it stands, markers included."""
    start, end = _bounds(readme, start_marker, end_marker)
    return readme[start:end]


def replace_section(readme: str, text: str, start_marker: str, end_marker: str) -> str:
    """``readme`` with the section between the markers replaced by ``text`` (markers included)."""
    start, end = _bounds(readme, start_marker, end_marker)
    return readme[:start] + text + readme[end:]


def splice(readme: str, summary_md: str) -> str:
    """``readme`` with its results section replaced by :func:`section` of ``summary_md``."""
    return replace_section(readme, section(summary_md), START, END)


def update(readme: str, summary_md: str) -> str:
    """``readme`` with both generated sections (results and chapters) brought up to date."""
    return replace_section(splice(readme, summary_md), chapters_section(), CHAPTERS_START, CHAPTERS_END)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if README.md is out of date")
    args = parser.parse_args(argv)
    if not SUMMARY.is_file():
        sys.exit(
            f"{SUMMARY.relative_to(ROOT)} is missing: run notebook 10 first "
            "(python scripts/run_notebooks.py --in-place 10)"
        )
    readme, summary_md = README.read_text(encoding="utf-8"), SUMMARY.read_text(encoding="utf-8")
    updated = update(readme, summary_md)
    if args.check:
        if updated != readme:
            print(
                "README.md's results or chapter section differs from docs/results/summary.md or "
                "recnb/runtimes.json; run python scripts/update_readme_results.py"
            )
            return 1
        print("README.md's results and chapter sections are up to date")
        return 0
    if updated != readme:
        from recnb.cache import atomic_write  # the package's one atomic write (umask permissions)

        atomic_write(README, updated.encode("utf-8"))
    print(f"README.md generated sections {'updated' if updated != readme else 'already up to date'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
