"""recnb.chapters: the one chapter list and the one record of run times, as notebook 00 and the README show them."""

import importlib.util
import json
import re
from pathlib import Path

import nbformat
import pytest

from recnb import chapters

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def test_every_notebook_is_a_chapter_with_its_own_title():
    files = sorted(p.name for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    assert [c.file for c in chapters.CHAPTERS] == files
    for c in chapters.CHAPTERS:
        heading = nbformat.read(NOTEBOOKS / c.file, as_version=4).cells[0].source.splitlines()[0]
        assert heading == f"# {c.number} · {c.title}", f"{c.file}: title {c.title!r} vs heading {heading!r}"
        assert c.file.startswith(c.number + "_") and c.concepts


def test_every_chapter_has_a_recorded_run_time():
    runtimes = chapters.load_runtimes()
    for c in chapters.CHAPTERS:
        entry = runtimes["notebooks"][c.file]
        assert entry["seconds"] > 0 and re.fullmatch(r"\d{4}-\d{2}-\d{2}", entry["date"]) and entry["machine"]
    assert chapters.total_minutes(runtimes) == round(sum(e["seconds"] for e in runtimes["notebooks"].values()) / 60, 1)


def test_notebook_00_shows_the_recorded_minutes():
    nb = nbformat.read(NOTEBOOKS / chapters.CHAPTERS[0].file, as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code" and "chapter_table()" in c.source)
    html = next(o for o in cell.outputs if o.output_type == "execute_result")["data"]["text/html"]
    rows = [re.findall(r"<td>(.*?)</td>", row, re.S) for row in re.findall(r"<tr>(.*?)</tr>", html, re.S)]
    shown = {cells[0]: cells[-1] for cells in rows if cells}  # notebook -> minutes, as the table shows them
    runtimes = chapters.load_runtimes()
    for c in chapters.CHAPTERS:
        assert float(shown[c.file]) == chapters.minutes(c, runtimes), (
            f"notebook 00 shows {shown.get(c.file)} min, recnb/runtimes.json says {chapters.minutes(c, runtimes)} "
            f"for {c.file}; re-execute notebook 00 (scripts/run_notebooks.py --in-place 00)"
        )
    assert f"Whole workbook: {chapters.total_minutes(runtimes)} minutes." in "".join(
        o.get("text", "") for o in cell.outputs if o.output_type == "stream"
    )


def test_record_runtimes_merges_atomically_and_rejects_unknown_notebooks(tmp_path):
    path = tmp_path / "runtimes.json"
    first, second = chapters.CHAPTERS[0].file, chapters.CHAPTERS[3].file
    chapters.record_runtimes({second: (30.0, 1.5)}, date="2026-01-01", machine="m", path=path)
    chapters.record_runtimes({first: (6.04, 0.2)}, date="2026-01-02", machine="m", path=path)
    recorded = json.loads(path.read_text())["notebooks"]
    assert list(recorded) == [first, second]  # reading order, whatever the order of the runs
    assert recorded[first] == {"seconds": 6.0, "date": "2026-01-02", "machine": "m", "load": 0.2}
    assert recorded[second]["date"] == "2026-01-01"
    assert [p.name for p in tmp_path.iterdir()] == ["runtimes.json"]  # no temporary file left behind
    with pytest.raises(ValueError, match="not chapters"):
        chapters.record_runtimes({"99_new.ipynb": (1.0, 0.0)}, date="d", machine="m", path=path)
    table = chapters.chapter_table(chapters.load_runtimes(path))
    assert table.set_index("notebook").loc[second, "minutes"] == 0.5
    assert table["minutes"].isna().sum() == len(chapters.CHAPTERS) - 2


def test_readme_chapter_table_is_generated_from_the_record():
    spec = importlib.util.spec_from_file_location("urr", ROOT / "scripts" / "update_readme_results.py")
    urr = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(urr)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert urr.current(readme, urr.CHAPTERS_START, urr.CHAPTERS_END) == urr.chapters_section(), (
        "README.md's chapter table differs from recnb.chapters / recnb/runtimes.json; "
        "run python scripts/update_readme_results.py"
    )
