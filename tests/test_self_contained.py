"""The repository stands on its own: no pointer to a design document or an issue tracker a reader lacks."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = re.compile(r"\bDESIGN\b|\b[Ii]ssue\s*#?\d+")
PLACES = ("recnb", "notebooks", "docs", "benchmarks", "scripts", "tests")


def test_no_reference_to_documents_outside_the_repository():
    files = [ROOT / "README.md", ROOT / "data" / "README.md", ROOT / "Makefile"]
    for place in PLACES:
        files += [p for p in (ROOT / place).rglob("*") if p.suffix in {".py", ".md", ".ipynb", ".cfg", ".toml"}]
    hits = [
        f"{p.relative_to(ROOT)}: {m.group(0)!r}"
        for p in files
        if p.is_file() and p != Path(__file__)
        for m in FORBIDDEN.finditer(p.read_text(encoding="utf-8"))
    ]
    assert not hits, "cite docs/ instead:\n" + "\n".join(hits)
