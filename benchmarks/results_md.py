"""Write one benchmark's section of ``benchmarks/RESULTS.md`` (shared by the benchmark scripts).

Each section sits between its script's own start and end markers; writing replaces that span (or
appends the section when it is new) and leaves every other section alone.
"""

from __future__ import annotations

import re
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def write_section(section: str, start: str, end: str, path: Path = RESULTS) -> Path:
    """Replace the ``start``..``end`` span of ``path`` with ``section`` (which carries both markers), atomically."""
    text = path.read_text() if path.exists() else "# Benchmarks\n\nEach section is written by the script it names.\n"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section + "\n"
    tmp = path.with_suffix(".md.part")
    tmp.write_text(text)
    tmp.replace(path)  # atomic: readers see the old file or the new one
    return path
