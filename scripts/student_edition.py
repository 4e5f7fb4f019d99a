"""Build the student edition of the workbook: the notebooks without their reference solutions.

    python scripts/student_edition.py                      # `make student`: every notebook -> build/student/
    python scripts/student_edition.py --out DIR 01 03      # some notebooks (names or prefixes), elsewhere

nbconvert does the work, as in any course that hands out notebooks: its ``TagRemovePreprocessor``
drops every cell tagged ``solution`` and the outputs of every cell tagged ``exercise``, and
``StudentNotePreprocessor`` (below) puts a short note at the top saying what this edition is and
how an answer is checked. Every other cell keeps its source and outputs. The tags are described in
``recnb/exercise_tags.py`` and ``docs/notebook-conventions.md``.

Nothing is written unless every notebook passes ``recnb.exercise_tags.lint`` (an untagged solution
would be handed out; a cell needing what only a solution defines would fail for the student), and
each written notebook is checked to hold no solution cell and no ``check(..., strict=True)``.
The instructor grades what comes back with ``python -m recnb.exercises`` (``make check-submission``).
"""

from __future__ import annotations

import argparse
import ast
import sys
import textwrap
from pathlib import Path

import nbformat
from nbconvert.exporters import NotebookExporter
from nbconvert.preprocessors import Preprocessor, TagRemovePreprocessor
from traitlets import Unicode

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
sys.path.insert(0, str(ROOT))  # recnb from this checkout, also when it is not installed

from recnb import chapters  # noqa: E402
from recnb.exercise_tags import (  # noqa: E402
    EXERCISE_TAG,
    SOLUTION_TAG,
    _check_calls,
    _is_strict,
    _parse,
    _raises_not_implemented,
    cell_role,
    lint,
    tagged_cells,
)

NOTE_ID = "student-edition-note"
NOTE = """\
> **Student edition.** This copy of the notebook has no reference solutions. In each "your turn" cell,
> replace `raise NotImplementedError` with your code and run the cell: `check()` prints one line a case
> (`[ok]`, `[differs]` with a hint, `[error]`, or `[todo]` while the stub is unchanged) and "All cases
> pass" once your function is right. Write each answer in its exercise cell and keep that cell and its
> tags (`exercise`, `exercise:<id>`): your instructor checks the notebook you hand in with
> `python -m recnb.exercises your_notebook.ipynb`, which runs it from a fresh kernel and reports every
> exercise as pass, fail or not attempted."""


class StudentNotePreprocessor(Preprocessor):
    """Insert the student-edition note at the top: right after the title cell (a notebook's first heading
    stays its title, as recnb.chapters and Jupyter's outline read it), or first when there is none. Once; a
    fixed cell id keeps builds identical."""

    note = Unicode(NOTE).tag(config=True)

    def preprocess(self, nb, resources):
        if not any(cell.get("id") == NOTE_ID for cell in nb.cells):
            cell = nbformat.v4.new_markdown_cell(self.note, metadata={"tags": ["student-note"]})
            if nb.nbformat > 4 or nb.nbformat_minor >= 5:
                cell["id"] = NOTE_ID
            else:
                cell.pop("id", None)
            titled = bool(nb.cells) and nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
            nb.cells.insert(1 if titled else 0, cell)
        return nb, resources


def exporter() -> NotebookExporter:
    """nbconvert's notebook-to-notebook exporter with the student-edition preprocessors, in order."""
    export = NotebookExporter()
    export.register_preprocessor(
        TagRemovePreprocessor(remove_cell_tags={SOLUTION_TAG}, remove_all_outputs_tags={EXERCISE_TAG}), enabled=True
    )
    export.register_preprocessor(StudentNotePreprocessor(), enabled=True)
    return export


def leaks(nb) -> list[str]:
    """What in a built notebook would give an answer away (empty: nothing)."""
    found = []
    for i, cell in enumerate(nb.cells):
        if cell_role(cell)[0] == SOLUTION_TAG:
            found.append(f"cell {i} is tagged solution")
        tree = _parse(cell.source) if cell.cell_type == "code" else None
        if tree is not None and any(_is_strict(c) for c in _check_calls(tree)):
            found.append(f"cell {i} checks a reference solution (strict=True)")
        if cell_role(cell)[0] == EXERCISE_TAG and (cell.get("outputs") or cell.get("execution_count") is not None):
            found.append(f"cell {i}: an exercise cell keeps its outputs")
    return found


def student_notebook(path: Path):
    """The student edition of one notebook, as a notebook node (nothing written)."""
    body, _ = exporter().from_filename(str(path))
    return nbformat.reads(body, as_version=4)


def build(paths: list[Path], out: Path) -> list[Path]:
    """Write the student edition of ``paths`` into ``out``.

    Refuses (ValueError, nothing written) on a tag problem or a leak: an untagged solution would be
    handed out. A cell that needs what only a solution defines is printed as a warning (stderr) and
    the edition is still written; the test suite fails on it.
    """
    notebooks = [(path, nbformat.read(path, as_version=4)) for path in paths]
    problems = [p for path, nb in notebooks for p in lint(nb, path.name, dependencies=False)]
    if problems:
        raise ValueError("the notebooks' exercise tags need fixing first:\n  " + "\n  ".join(problems))
    for path, nb in notebooks:  # the tags hold, so what lint still finds are cells that need a solution
        for warning in lint(nb, path.name):
            print(f"warning: {warning}", file=sys.stderr)
    editions = [(path, student_notebook(path)) for path in paths]
    for path, nb in editions:
        if found := leaks(nb):
            raise ValueError(f"{path.name}: the student edition would leak: {'; '.join(found)}")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path, nb in editions:
        nbformat.write(nb, out / path.name)
        written.append(out / path.name)
    return written


# -- pasting the reference solutions into the stubs (to test the grading aid) -----------------


def _stub(tree) -> ast.FunctionDef:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and _raises_not_implemented(node):
            return node
    raise ValueError("no stub (a function that raises NotImplementedError) in the exercise cell")


def _solution(tree) -> ast.FunctionDef:
    strict = [c for c in _check_calls(tree) if _is_strict(c) and c.args and isinstance(c.args[0], ast.Name)]
    if not strict:
        raise ValueError("the solution cell checks no named function with strict=True")
    name, line = strict[0].args[0].id, strict[0].lineno
    defs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name and n.lineno < line]
    if not defs:
        raise ValueError(f"the solution cell does not define {name}")
    return defs[-1]


def _body_start(fn: ast.FunctionDef) -> int:
    first = fn.body[0]
    docstring = (
        isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str)
    )
    return first.end_lineno + 1 if docstring and len(fn.body) > 1 else first.lineno


def paste_solution(exercise_source: str, solution_source: str) -> str:
    """``exercise_source`` with its stub's body replaced by the body of the function the solution checks.

    What a student who wrote the reference answer would hand in: the stub keeps its name, signature
    and docstring; only the lines from ``raise NotImplementedError`` to the end of the function change.
    """
    stub, solution = _stub(ast.parse(exercise_source)), _solution(ast.parse(solution_source))
    lines, sol_lines = exercise_source.splitlines(keepends=True), solution_source.splitlines(keepends=True)
    body = textwrap.dedent("".join(sol_lines[_body_start(solution) - 1 : solution.end_lineno]))
    indent = " " * stub.body[-1].col_offset
    new_body = textwrap.indent(body.rstrip("\n") + "\n", indent)
    start, end = _body_start(stub), stub.end_lineno
    return "".join(lines[: start - 1]) + new_body + "".join(lines[end:])


def paste_solutions(student_nb, reference_nb):
    """A copy of ``student_nb`` whose exercise cells hold the reference solutions of ``reference_nb``."""
    nb = nbformat.from_dict(student_nb)
    solutions = tagged_cells(reference_nb, SOLUTION_TAG)
    for ident, i in tagged_cells(nb, EXERCISE_TAG).items():
        nb.cells[i].source = paste_solution(nb.cells[i].source, reference_nb.cells[solutions[ident]].source)
    return nb


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="notebook names or prefixes (default: all)")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "student", help="output folder")
    args = parser.parse_args(argv)
    try:
        paths = [NOTEBOOKS / c.file for c in chapters.select(args.names)]
    except ValueError as exc:
        parser.error(str(exc))
    try:
        written = build(paths, args.out.resolve())
    except ValueError as exc:
        print(f"student edition not built: {exc}", file=sys.stderr)
        return 1
    exercises = sum(len(tagged_cells(nbformat.read(p, as_version=4), EXERCISE_TAG)) for p in written)
    where = args.out.resolve()
    where = where.relative_to(ROOT) if where.is_relative_to(ROOT) else where
    print(f"student edition: {len(written)} notebooks, {exercises} exercises, no solutions -> {where}/")
    print("check a submission: python -m recnb.exercises PATH.ipynb   (make check-submission NB=PATH)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
