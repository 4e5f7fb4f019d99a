"""The course kit (README, "For instructors"): exercise and solution tags, the student edition
(``make student``: scripts/student_edition.py) and the grading aid (``python -m recnb.exercises``).

The tests marked slow run each notebook's student edition once, from a fresh kernel, in the smoke
profile -- with one addition: just before every exercise cell sits a copy of it with the reference
solution pasted into the stub (what a student who wrote that answer would hand in). The copy runs
at the exercise's own place, with everything the notebook computed before it; the untouched stub
runs right after it and rebinds the same names, so the rest of the notebook runs as in the student
edition (no cell uses an exercise's function but its own exercise and solution cells, checked
below). One run per notebook thus shows that the student edition executes without error, that
the checker grades its stubs "not attempted", and that it grades the pasted solutions "pass".
``test_check_submission_command`` runs the real command on notebook 01 (two exercises) as well.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import nbformat
import pytest

from recnb import exercises as ex

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
IDS = [p.name[:2] for p in PATHS]
_spec = importlib.util.spec_from_file_location("student_edition", ROOT / "scripts" / "student_edition.py")
se = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(se)


def read(path):
    return nbformat.read(path, as_version=4)


# -- tags ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_every_exercise_is_tagged_with_its_solution(path):
    nb = read(path)
    assert ex.lint(nb, path.name) == []
    assert ex.tagged_cells(nb, "exercise"), f"{path.name} has no exercise"


def test_exercise_ids_are_unique_across_the_workbook():
    ids = [i for p in PATHS for i in ex.tagged_cells(read(p), "exercise")]
    assert len(ids) == len(set(ids)) >= len(PATHS)


def _nb01():
    return read(NOTEBOOKS / "01_data_preparation.ipynb")


def _problems_after(change):
    nb = _nb01()
    change(nb)
    return "\n".join(ex.lint(nb, "01_data_preparation.ipynb"))


NEW_EXERCISE = (
    "from recnb.exercises import Case, check\n\ndef twice(x):\n    raise NotImplementedError\n\n"
    "check(twice, [Case((2,), 4)])"
)


def test_an_exercise_without_a_tagged_solution_fails_lint():
    def add_untagged(nb):
        nb.cells.append(nbformat.v4.new_code_cell(NEW_EXERCISE))

    def add_tagged(nb):
        nb.cells.append(nbformat.v4.new_code_cell(NEW_EXERCISE, metadata={"tags": ["exercise", "exercise:nb01-twice"]}))

    def untag_a_solution(nb):
        nb.cells[ex.tagged_cells(nb, "solution")["nb01-head-share"]].metadata["tags"] = []

    def drop_an_exercise(nb):
        del nb.cells[ex.tagged_cells(nb, "exercise")["nb01-leave-one-out"]]

    def misnumber(nb):
        nb.cells[ex.tagged_cells(nb, "exercise")["nb01-head-share"]].metadata["tags"] = [
            "exercise",
            "exercise:nb02-head-share",
        ]

    assert "without the tags 'exercise'" in _problems_after(add_untagged)
    assert "exercise 'nb01-twice' has no solution cell" in _problems_after(add_tagged)
    untagged = _problems_after(untag_a_solution)
    assert "exercise 'nb01-head-share' has no solution cell" in untagged and "without the tags 'solution'" in untagged
    assert "solution 'nb01-leave-one-out' has no exercise cell" in _problems_after(drop_an_exercise)
    assert "does not carry this notebook's number nb01" in _problems_after(misnumber)


def test_a_cell_that_needs_a_solution_fails_lint():
    def use_the_solution(nb):
        nb.cells.append(nbformat.v4.new_code_cell("print(head_share_solution([1, 2], 0.5))"))

    assert "uses head_share_solution, which only a solution cell defines" in _problems_after(use_the_solution)


# -- the student edition (no kernel) --------------------------------------------------------------


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory):
    """``make student``'s command, into a temporary folder."""
    out = tmp_path_factory.mktemp("student")
    assert se.main(["--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_student_edition_has_no_solutions(student_dir, path):
    full, student = read(path), read(student_dir / path.name)
    solutions = set(ex.tagged_cells(full, "solution").values())
    exercises = ex.tagged_cells(full, "exercise")
    assert se.leaks(student) == []
    assert not any(ex.cell_role(c)[0] == "solution" for c in student.cells)
    assert not any(c.metadata.get("jupyter", {}).get("source_hidden") for c in student.cells)
    note = student.cells.pop(1)  # at the top, after the title (the first heading stays the notebook's title)
    assert (
        note.cell_type == "markdown" and "Student edition" in note.source and "python -m recnb.exercises" in note.source
    )
    assert student.cells[0].source == full.cells[0].source and student.cells[0].source.startswith("# ")
    kept = [c for i, c in enumerate(full.cells) if i not in solutions]
    assert [c.source for c in student.cells] == [c.source for c in kept]
    for cell, original in zip(student.cells, kept):
        if ex.cell_role(cell)[0] == "exercise":
            assert cell.outputs == [] and cell.execution_count is None
        elif cell.cell_type == "code":
            assert cell.outputs == original.outputs  # the rest reads as in the full edition
    assert set(ex.tagged_cells(student, "exercise")) == set(exercises)
    text = (student_dir / path.name).read_text()
    for i in solutions:
        assert full.cells[i].source not in text
    assert student.nbformat == full.nbformat and student.nbformat_minor == full.nbformat_minor


def test_student_edition_build_is_reproducible(student_dir, tmp_path):
    assert se.main(["--out", str(tmp_path), "01"]) == 0
    name = "01_data_preparation.ipynb"
    assert (tmp_path / name).read_text() == (student_dir / name).read_text()


def test_student_edition_refuses_untagged_solutions(tmp_path):
    nb = _nb01()
    nb.cells[ex.tagged_cells(nb, "solution")["nb01-head-share"]].metadata["tags"] = []
    nbformat.write(nb, tmp_path / "01_data_preparation.ipynb")
    with pytest.raises(ValueError, match="tags need fixing"):
        se.build([tmp_path / "01_data_preparation.ipynb"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_paste_solution_replaces_only_the_stub_body():
    exercise = (
        'from recnb.exercises import Case, check\n\ndef area(w, h):\n    """Width times height."""\n'
        "    # your code here\n    raise NotImplementedError  # replace me\n\n"
        "CASES = [Case((2, 3), 6)]\ncheck(area, CASES)\n"
    )
    solution = (
        "# Reference solution\ndef area_solution(w, h):\n    result = w * h\n    return result\n\n"
        "check(area_solution, CASES, strict=True)\nprint('done')\n"
    )
    assert se.paste_solution(exercise, solution) == (
        'from recnb.exercises import Case, check\n\ndef area(w, h):\n    """Width times height."""\n'
        "    result = w * h\n    return result\n\nCASES = [Case((2, 3), 6)]\ncheck(area, CASES)\n"
    )


# -- executed: the student edition, the checker on stubs and on pasted solutions ----------------


def _with_pasted_copies(student, reference):
    """``student`` with, before each exercise cell, a copy holding the pasted reference solution."""
    pasted = se.paste_solutions(student, reference)
    stubs = {}
    for ident, i in ex.tagged_cells(student, "exercise").items():
        tree = ex._parse(student.cells[i].source)
        stubs[ident] = se._stub(tree).name
    cells = []
    for i, cell in enumerate(student.cells):
        role, ident = ex.cell_role(cell)
        if role == "exercise":
            copy = nbformat.from_dict(pasted.cells[i])
            copy.metadata["recnb_test"] = "pasted"
            if "id" in copy:
                copy["id"] = f"{cell['id'][:50]}-pasted"
            # the pasted answer must not lean on another exercise's function (a stub here, an answer for the student)
            others = {name for other, name in stubs.items() if other != ident}
            assert not ex.module_names(ex._parse(copy.source))[1] & others, ident
            cells.append(copy)
        cells.append(cell)
    combined = nbformat.from_dict(student)
    combined.cells = cells
    return combined


def _view(executed, keep):
    """The executed notebook without the pasted copies (``keep="student"``) or without the stubs (``"pasted"``)."""
    view = nbformat.from_dict(executed)
    view.cells = [
        c
        for c in executed.cells
        if ex.cell_role(c)[0] != "exercise" or (c.metadata.get("recnb_test") == "pasted") == (keep == "pasted")
    ]
    return view


def _stub_names(nb):
    return {se._stub(ex._parse(nb.cells[i].source)).name for i in ex.tagged_cells(nb, "exercise").values()}


@cache
def _executed(name, student_dir, run_dir, results_dir):
    student = read(Path(student_dir) / name)
    stubs = _stub_names(student)
    for i, cell in enumerate(student.cells):  # only its own exercise and solution cells use an exercise's function
        if cell.cell_type == "code" and ex.cell_role(cell)[0] is None:
            assert not ex.module_names(ex._parse(cell.source))[1] & stubs, (name, i)
    combined = _with_pasted_copies(student, read(NOTEBOOKS / name))
    path = Path(run_dir) / name  # in a copy of the student edition's folder: it runs among its siblings
    nbformat.write(combined, path)
    return ex.run_submission(path, smoke=True, timeout=600, env={"RECNB_RESULTS_DIR": results_dir})


@pytest.fixture(scope="module")
def executed(student_dir, tmp_path_factory):
    run_dir, results = tmp_path_factory.mktemp("run"), str(tmp_path_factory.mktemp("results"))
    for path in student_dir.glob("*.ipynb"):
        shutil.copy(path, run_dir / path.name)
    return lambda path: _executed(path.name, str(student_dir), str(run_dir), results)


@pytest.mark.slow
@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_student_edition_executes_without_error(executed, path):
    nb = executed(path)
    assert not nb.metadata.get("recnb_check", {}).get("aborted")
    errors = [
        (i, out.get("ename"), out.get("evalue"))
        for i, c in enumerate(nb.cells)
        for out in c.get("outputs", [])
        if out.get("output_type") == "error"
    ]
    assert errors == []
    for cell in _view(nb, "student").cells:
        if ex.cell_role(cell)[0] == "exercise":  # each stub prints its [todo] hints
            shown = "".join(out.get("data", {}).get("text/plain", "") for out in cell.outputs)
            assert "[todo]" in shown and "[ok]" not in shown


@pytest.mark.slow
@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_checker_grades_the_student_edition_not_attempted(executed, path):
    expected = list(ex.tagged_cells(read(path), "exercise"))
    grades = ex.grade(_view(executed(path), "student"), expected)
    print(ex.format_grades(f"{path.name} (student edition)", grades))
    assert [(g.exercise, g.status) for g in grades] == [(i, "not attempted") for i in expected]


@pytest.mark.slow
@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_checker_grades_the_reference_solutions_pass(executed, path):
    expected = list(ex.tagged_cells(read(path), "exercise"))
    grades = ex.grade(_view(executed(path), "pasted"), expected)
    print(ex.format_grades(f"{path.name} (reference solutions pasted)", grades))
    assert [(g.exercise, g.status) for g in grades] == [(i, "pass") for i in expected], grades
    assert all(g.passed == g.total > 0 for g in grades)


@pytest.mark.slow
def test_check_submission_command(student_dir, tmp_path):
    """``python -m recnb.exercises`` from a fresh kernel: the student edition, then the pasted solutions."""
    name = "01_data_preparation.ipynb"
    (tmp_path / "stub").mkdir()
    (tmp_path / "solved").mkdir()
    student = read(student_dir / name)
    nbformat.write(student, tmp_path / "stub" / name)
    nbformat.write(se.paste_solutions(student, read(NOTEBOOKS / name)), tmp_path / "solved" / name)
    env = {"RECNB_RESULTS_DIR": str(tmp_path / "results")}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "recnb.exercises",
            "--smoke",
            "--json",
            str(tmp_path / "grades.json"),
            str(tmp_path / "stub" / name),
            str(tmp_path / "solved"),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, **env},
    )
    assert run.returncode == 0, run.stderr
    print(run.stdout)
    results = json.loads((tmp_path / "grades.json").read_text())
    stub, solved = results[str(tmp_path / "stub" / name)], results[str(tmp_path / "solved" / name)]
    ids = ["nb01-head-share", "nb01-leave-one-out"]
    assert [(g["exercise"], g["status"]) for g in stub["grades"]] == [(i, "not attempted") for i in ids]
    assert [(g["exercise"], g["status"]) for g in solved["grades"]] == [(i, "pass") for i in ids]
    assert stub["reference"] == str(NOTEBOOKS / name)
    assert "2 exercises: 0 pass, 0 fail, 2 not attempted" in run.stdout
    assert "2 exercises: 2 pass, 0 fail, 0 not attempted" in run.stdout
