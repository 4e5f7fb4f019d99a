"""The workbook teaches the algorithms, not only their results (docs/notebook-conventions.md, "Teaching"):

* every chapter ends with a "Further reading" section of at least three primary references;
* the equations of each idea appear in LaTeX in the chapter that introduces it;
* at least 14 exercises across the workbook, each with a reference solution checked with ``strict=True``.
"""

import re
from pathlib import Path

import nbformat
import pytest

from recnb import chapters
from recnb.exercise_tags import tagged_cells

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"

# chapter number -> (idea, a pattern its LaTeX must contain); the patterns are loose on purpose: notation may vary
EQUATIONS = {
    "02": [
        ("BPR objective", r"\\mathrm\{BPR\}.*\\sigma"),
        ("NDCG", r"NDCG@k"),
        ("DCG", r"\\log_2"),
    ],
    "03": [("self-attention", r"softmax.*\\sqrt\{d")],
    "04": [
        ("choice model", r"P\(\\text\{click"),
        ("rating model", r"\\hat r_\{ui\}"),
        ("long-term dynamics", r"_\{t\+1\}"),
        ("leaving", r"leave"),
    ],
    "05": [
        ("Bellman expectation for V", r"V\^\\pi\(s\)"),
        ("Bellman expectation for Q", r"Q\^\\pi\(s, a\)"),
        ("Bellman optimality", r"Q\^\*\(s, a\).*\\max_\{a'\}"),
        ("TD error", r"\\delta ="),
        ("Q-learning update", r"y\^\{\\mathrm\{Q\}\}"),
        ("SARSA update", r"SARSA"),
    ],
    "06": [
        ("n-step return", r"G_t\^\{\(n\)\}"),
        ("Double-DQN target", r"\\arg\\max.*Q_\{?\\theta"),
        ("DQN loss", r"\\mathcal\{L\}\(\\theta\)"),
        ("Polyak update", r"\\tau"),
    ],
    "08": [("TD objective for the encoder", r"\\mathcal\{L\}\(\\theta, \\phi\)")],
    "09": [("SQN objective", r"\\mathcal\{L\}\(\\psi\)")],
    "10": [("IPS", r"\\mathrm\{IPS\}"), ("SNIPS", r"\\mathrm\{SNIPS\}"), ("doubly robust", r"\\mathrm\{DR\}")],
}


def _read(chapter):
    return nbformat.read(NOTEBOOKS / chapter.file, as_version=4)


def _markdown(nb) -> list[str]:
    return [c.source for c in nb.cells if c.cell_type == "markdown"]


def _latex(nb) -> str:
    blocks = [m.group(1) for md in _markdown(nb) for m in re.finditer(r"\$\$(.+?)\$\$", md, re.S)]
    return "\n".join(" ".join(b.split()) for b in blocks)


@pytest.mark.parametrize("chapter", chapters.CHAPTERS, ids=lambda c: c.number)
def test_every_chapter_ends_with_further_reading(chapter):
    sections = [md for md in _markdown(_read(chapter)) if re.search(r"^#+\s*Further reading", md, re.M)]
    assert len(sections) == 1, f"{chapter.file}: needs one '## Further reading' section, found {len(sections)}"
    references = re.findall(r"^\s*(?:[-*]|\d+\.)\s+\S", sections[0], re.M)
    assert len(references) >= 3, f"{chapter.file}: {len(references)} references; list at least three primary ones"


@pytest.mark.parametrize("number", sorted(EQUATIONS))
def test_each_idea_has_its_equation_where_it_is_introduced(number):
    chapter = next(c for c in chapters.CHAPTERS if c.number == number)
    latex = _latex(_read(chapter))
    missing = [idea for idea, pattern in EQUATIONS[number] if not re.search(pattern, latex)]
    assert not missing, f"{chapter.file}: no LaTeX ($$ ... $$) for {missing}"


def test_at_least_fourteen_checked_exercises_across_the_workbook():
    ids = []
    for chapter in chapters.CHAPTERS:
        nb = _read(chapter)
        solutions = tagged_cells(nb, "solution")
        for exercise in tagged_cells(nb, "exercise"):
            assert exercise in solutions, f"{chapter.file}: exercise {exercise} has no solution cell"
            source = nb.cells[solutions[exercise]].source
            assert re.search(r"check\(.*strict=True", source, re.S), f"{exercise}: solution not checked strictly"
            ids.append(exercise)
    assert len(ids) == len(set(ids)) and len(ids) >= 14, f"{len(ids)} exercises: {ids}"
