"""Checkers for the "your turn" cells: run the reader's function on cases, explain what is off.

Usage in a notebook (introduced in notebook 01)::

    def my_answer(...): ...
    check(my_answer, CASES)          # prints a verdict for each case; raises nothing

Each case is an :class:`Case`: the arguments, the expected result, and a hint shown when the
reader's result differs. ``check(..., strict=True)`` raises ``AssertionError`` instead, which the
notebooks use on the reference solution so that a wrong solution fails the notebook test.

Exercise cells and their solutions (the course kit)
---------------------------------------------------
Every exercise is one code cell holding a stub (``raise NotImplementedError``) and a ``check()``
call; its reference solution is a later code cell of the same notebook that calls ``check(...,
strict=True)``. Both carry cell tags (``metadata.tags``, which nbconvert's ``TagRemovePreprocessor`` reads):

* the stub: ``exercise`` and ``exercise:<id>``,
* the solution: ``solution`` and ``solution:<id>``,

where ``<id>`` is ``nbNN-<name>``: the notebook's two-digit number and a short kebab-case name
(``nb01-head-share``). The id is what ties an exercise to its solution and what the grading report
names; it never changes once published. :func:`lint` enforces the scheme (the test suite runs it on
every notebook): every stub is tagged, every exercise has exactly one solution after it and vice
versa, and no other cell needs a name that only a solution cell defines (the student edition,
``make student``, drops the solution cells).

Checking a submission (the instructor's grading aid)
----------------------------------------------------
``python -m recnb.exercises NOTEBOOK...`` (``make check-submission NB=path``) runs each notebook
top to bottom in a fresh kernel (working directory: the notebook's folder; cells that raise do not
stop the run) and prints, for every exercise, one of

* ``pass`` -- every ``check()`` call in the exercise cell passed all its cases,
* ``not attempted`` -- every case reported ``[todo]`` (the stub still raises ``NotImplementedError``),
* ``fail`` -- anything else: a case differs or raises, the cell raised, or it never called ``check()``,
* ``missing`` -- the submission has no cell tagged ``exercise:<id>`` (a cell deleted or re-created
  without its tags),
* ``not run`` -- the run stopped (a timeout, a dead kernel) before the cell.

How results are collected: the checker starts the kernel with ``RECNB_CHECK_RECORD=1``; with that
variable set, :func:`check` also displays a machine-readable record of its :class:`Report` (MIME
type ``application/vnd.recnb.check+json``) in the cell that called it. The checker reads those
records from the executed cells tagged ``exercise:<id>`` -- so grading is by cell, the cases are
the ones in that cell (the notebook's own cases, as the student saw them), and the student must
write the answer in the exercise cell and keep its tags. A student could edit the cases in that
cell; each verdict therefore shows the number of cases, and ``--json`` writes every record for a
closer look. Which exercises a submission should contain comes from the committed notebook with
the same number in the workbook's ``notebooks/`` folder (``--reference`` names another one).
Outside that run nothing is displayed; :data:`REPORTS` keeps every report of the process either way.
The checker runs the submitted code as it is (it is a grading aid, not a sandbox): grade untrusted
work in a container or VM, and read the code behind a surprising pass.
"""

from __future__ import annotations

import math
import os
import re
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

EXERCISE_TAG, SOLUTION_TAG = "exercise", "solution"
ID_PATTERN = re.compile(r"nb(\d{2})-[a-z0-9]+(?:-[a-z0-9]+)*")
RECORD_ENV = "RECNB_CHECK_RECORD"  # set (non-empty, not "0") in the kernel: check() emits records
RECORD_MIME = "application/vnd.recnb.check+json"
STATUSES = ("pass", "fail", "not attempted", "missing", "not run")


@dataclass
class Case:
    """One test case: ``fn(*args, **kwargs)`` should equal ``expected`` (within ``atol`` for numbers)."""

    args: tuple = ()
    expected: Any = None
    hint: str = ""
    kwargs: dict = field(default_factory=dict)
    atol: float = 1e-6

    def describe(self) -> str:
        parts = [
            repr(a) if not isinstance(a, (np.ndarray, list)) or len(a) < 12 else f"<{type(a).__name__} of {len(a)}>"
            for a in self.args
        ]
        parts += [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"({', '.join(parts)})"


def _same(got: Any, expected: Any, atol: float) -> bool:
    if isinstance(expected, (float, int, np.floating, np.integer)) and not isinstance(expected, bool):
        try:
            return math.isclose(float(got), float(expected), abs_tol=atol, rel_tol=0)
        except (TypeError, ValueError):
            return False
    if isinstance(expected, (np.ndarray, list, tuple)):
        try:
            got_arr, exp_arr = np.asarray(got, dtype=float), np.asarray(expected, dtype=float)
        except (TypeError, ValueError):
            return got == expected
        return got_arr.shape == exp_arr.shape and np.allclose(got_arr, exp_arr, atol=atol, rtol=0)
    return got == expected


@dataclass
class Report:
    """What :func:`check` found: one line a case, and whether all passed.

    ``todo`` counts the cases where the function raised ``NotImplementedError``, ``errors`` those
    where it raised anything else; ``function`` is the checked function's name.
    """

    lines: list
    passed: int
    total: int
    todo: int = 0
    errors: int = 0
    function: str = ""

    @property
    def ok(self) -> bool:
        return self.passed == self.total

    @property
    def status(self) -> str:
        """``"pass"`` (every case), ``"not attempted"`` (every case ``[todo]``) or ``"fail"``."""
        if self.ok:
            return "pass"
        return "not attempted" if self.todo == self.total else "fail"

    def record(self) -> dict:
        """The machine-readable form the grading run collects (JSON-serialisable)."""
        return {
            "function": self.function,
            "status": self.status,
            "passed": self.passed,
            "total": self.total,
            "todo": self.todo,
            "errors": self.errors,
            "lines": list(self.lines),
        }

    def __str__(self) -> str:
        verdict = "All cases pass -- well done!" if self.ok else f"{self.passed}/{self.total} cases pass."
        return "\n".join([*self.lines, verdict])

    def _repr_pretty_(self, printer, cycle):  # IPython shows the report, not a dataclass repr
        printer.text(str(self))


REPORTS: list[Report] = []
"""Every :class:`Report` that :func:`check` produced in this process, in order (strict ones too)."""


def _recording() -> bool:
    return os.environ.get(RECORD_ENV, "").strip() not in ("", "0")


def _emit(report: Report, strict: bool) -> None:
    """Display ``report``'s record in the calling cell, for the grading run (IPython kernels only)."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        return
    if get_ipython() is None:
        return
    record = {**report.record(), "strict": strict}
    display(
        {
            RECORD_MIME: record,
            "text/plain": f"[recorded for grading] {report.function}: {report.status} ({report.passed}/{report.total})",
        },
        raw=True,
    )


def check(fn: Callable, cases: list[Case], *, strict: bool = False) -> Report:
    """Run ``fn`` on every case and report, with the case's hint where the answer differs."""
    if not callable(fn):
        raise TypeError(
            f"check() needs your function, got {type(fn).__name__}; pass the function itself, not its result"
        )
    if not cases:
        raise ValueError("check() needs at least one Case")
    name = getattr(fn, "__name__", type(fn).__name__)
    lines, passed, todo, errors = [], 0, 0, 0
    for i, case in enumerate(cases, 1):
        label = f"case {i} {name}{case.describe()}"
        try:
            got = fn(*case.args, **case.kwargs)
        except NotImplementedError:
            todo += 1
            lines.append(f"[todo] {label}: not implemented yet -- replace `raise NotImplementedError` with your code")
            continue
        except Exception as exc:  # the reader's bug: show it, do not crash the notebook
            errors += 1
            where = traceback.extract_tb(exc.__traceback__)[-1]
            lines.append(f"[error] {label}: {type(exc).__name__}: {exc} (line {where.lineno})")
            continue
        if _same(got, case.expected, case.atol):
            passed += 1
            lines.append(f"[ok] {label}")
        else:
            hint = f" Hint: {case.hint}" if case.hint else ""
            lines.append(f"[differs] {label}: got {got!r}, expected {case.expected!r}.{hint}")
    report = Report(lines, passed, len(cases), todo, errors, name)
    REPORTS.append(report)
    if _recording():
        _emit(report, strict)
    if strict and not report.ok:
        raise AssertionError(str(report))
    return report


# ---------------------------------------------------------------------------------------------
# Tags: which cell is an exercise, which its solution (used by lint, the student edition, grading)
# ---------------------------------------------------------------------------------------------


def cell_role(cell) -> tuple[str | None, str | None]:
    """``("exercise" | "solution" | None, id | None)`` from a cell's tags (malformed tags: see :func:`lint`)."""
    tags = cell.get("metadata", {}).get("tags", [])
    for role in (EXERCISE_TAG, SOLUTION_TAG):
        ids = [t.split(":", 1)[1] for t in tags if t.startswith(role + ":")]
        if role in tags or ids:
            return role, (ids[0] if ids else None)
    return None, None


def tagged_cells(nb, role: str) -> dict[str, int]:
    """``{id: cell index}`` of the cells tagged ``role`` (``"exercise"`` or ``"solution"``), in notebook order."""
    found: dict[str, int] = {}
    for i, cell in enumerate(nb.cells):
        r, ident = cell_role(cell)
        if r == role and ident and ident not in found:
            found[ident] = i
    return found


def _python(source: str) -> str:
    """A cell's source as plain Python (IPython magics and shell escapes turned into calls)."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        return TransformerManager().transform_cell(source)
    except ImportError:  # pragma: no cover - IPython comes with every kernel
        return "\n".join("pass" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


def _parse(source: str):
    import ast

    try:
        return ast.parse(_python(source))
    except SyntaxError:
        return None


def _check_calls(tree) -> list:
    """The ``check(...)`` / ``exercises.check(...)`` calls in a parsed cell."""
    import ast

    calls = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            if (isinstance(f, ast.Name) and f.id == "check") or (isinstance(f, ast.Attribute) and f.attr == "check"):
                calls.append(node)
    return calls


def _is_strict(call) -> bool:
    import ast

    return any(k.arg == "strict" and isinstance(k.value, ast.Constant) and k.value.value is True for k in call.keywords)


def _raises_not_implemented(tree) -> bool:
    import ast

    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(exc, ast.Name) and exc.id == "NotImplementedError":
                return True
    return False


def module_names(tree) -> tuple[set, set]:
    """(names a cell binds at module level, names it reads anywhere) -- a conservative static view."""
    import ast

    stored, loaded = set(), set()
    scopes = (
        ast.FunctionDef,
        ast.AsyncFunctionDef,
        ast.ClassDef,
        ast.Lambda,
        ast.ListComp,
        ast.SetComp,
        ast.DictComp,
        ast.GeneratorExp,
    )

    def visit(node, top):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and top:
            stored.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)) and top:
            stored.update((a.asname or a.name).split(".")[0] for a in node.names if a.name != "*")
        elif isinstance(node, ast.Name):
            if isinstance(node.ctx, ast.Load):
                loaded.add(node.id)
            elif top:
                stored.add(node.id)
        for child in ast.iter_child_nodes(node):
            visit(child, top and not isinstance(node, scopes))

    visit(tree, True)
    return stored, loaded


def lint(nb, name: str | None = None, *, dependencies: bool = True) -> list[str]:
    """Problems with a notebook's exercise and solution tags (empty: the scheme holds).

    ``name`` is the notebook's file name; when given, every id's ``nbNN`` must match its number.
    With ``dependencies`` (the default) it also lists the cells that use a name only a solution cell
    defines (a static check: the student edition would stop there).
    """
    problems: list[str] = []
    number = re.match(r"(\d{2})_", Path(name).name) if name else None
    where = (lambda i: f"{name}: cell {i}") if name else (lambda i: f"cell {i}")
    exercises: dict[str, int] = {}
    solutions: dict[str, int] = {}
    trees = {}
    for i, cell in enumerate(nb.cells):
        tags = cell.get("metadata", {}).get("tags", [])
        roles = [r for r in (EXERCISE_TAG, SOLUTION_TAG) if r in tags or any(t.startswith(r + ":") for t in tags)]
        tree = _parse(cell.source) if cell.cell_type == "code" else None
        trees[i] = tree
        calls = _check_calls(tree) if tree is not None else []
        stub = tree is not None and _raises_not_implemented(tree)
        strict = any(_is_strict(c) for c in calls)
        lenient = any(not _is_strict(c) for c in calls)
        if len(roles) > 1:
            problems.append(f"{where(i)} is tagged both exercise and solution")
            continue
        if not roles:
            if calls and stub:
                problems.append(
                    f"{where(i)} is an exercise (a stub checked with check()) without the tags "
                    f"'exercise' and 'exercise:<id>'"
                )
            elif strict:
                problems.append(
                    f"{where(i)} checks a reference solution (check(..., strict=True)) without the tags "
                    f"'solution' and 'solution:<id>'"
                )
            continue
        role = roles[0]
        ids = [t.split(":", 1)[1] for t in tags if t.startswith(role + ":")]
        if role not in tags or len(ids) != 1:
            problems.append(f"{where(i)} needs exactly the tags '{role}' and one '{role}:<id>', has {tags}")
            continue
        ident = ids[0]
        m = ID_PATTERN.fullmatch(ident)
        if not m:
            problems.append(f"{where(i)}: id {ident!r} is not nbNN-kebab-case-name")
        elif number and m.group(1) != number.group(1):
            problems.append(f"{where(i)}: id {ident!r} does not carry this notebook's number nb{number.group(1)}")
        if cell.cell_type != "code":
            problems.append(f"{where(i)} is tagged {role} but is not a code cell")
            continue
        table = exercises if role == EXERCISE_TAG else solutions
        if ident in table:
            problems.append(f"{where(i)}: {role} id {ident!r} already used by cell {table[ident]}")
            continue
        table[ident] = i
        if role == EXERCISE_TAG and not (stub and lenient):
            problems.append(f"{where(i)}: an exercise cell holds a stub (raise NotImplementedError) and calls check()")
        if role == SOLUTION_TAG:
            if not strict:
                problems.append(f"{where(i)}: a solution cell checks the reference with check(..., strict=True)")
            if not cell.get("metadata", {}).get("jupyter", {}).get("source_hidden"):
                problems.append(f"{where(i)}: a solution cell is collapsed (metadata jupyter.source_hidden: true)")
    for ident, i in exercises.items():
        if ident not in solutions:
            problems.append(
                f"{where(i)}: exercise {ident!r} has no solution cell (tags 'solution', 'solution:{ident}')"
            )
        elif solutions[ident] < i:
            problems.append(
                f"{where(solutions[ident])}: the solution of {ident!r} comes before its exercise (cell {i})"
            )
    for ident, i in solutions.items():
        if ident not in exercises:
            problems.append(
                f"{where(i)}: solution {ident!r} has no exercise cell (tags 'exercise', 'exercise:{ident}')"
            )
    if not dependencies:
        return problems
    # the student edition drops the solution cells: nothing else may need what only they define
    solution_cells = set(solutions.values())
    only_solutions = set()
    elsewhere = set()
    for i, tree in trees.items():
        if tree is not None:
            (only_solutions if i in solution_cells else elsewhere).update(module_names(tree)[0])
    only_solutions -= elsewhere
    for i, tree in trees.items():
        if tree is None or i in solution_cells:
            continue
        needed = sorted(module_names(tree)[1] & only_solutions)
        if needed:
            problems.append(
                f"{where(i)} uses {', '.join(needed)}, which only a solution cell defines: "
                f"the student edition (no solutions) would fail here"
            )
    return problems


# ---------------------------------------------------------------------------------------------
# Grading a submission: run it in a fresh kernel, read the records of its exercise cells
# ---------------------------------------------------------------------------------------------


@dataclass
class Grade:
    """The verdict on one exercise of a submission (``status`` is one of :data:`STATUSES`)."""

    exercise: str
    status: str
    passed: int = 0
    total: int = 0
    detail: str = ""
    records: list = field(default_factory=list)


def _records(cell) -> list[dict]:
    return [
        out["data"][RECORD_MIME]
        for out in cell.get("outputs", [])
        if out.get("output_type") == "display_data" and RECORD_MIME in out.get("data", {})
    ]


def _error(cell) -> str | None:
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            return f"{out.get('ename')}: {out.get('evalue')}".strip()
    return None


def grade_cell(exercise: str, cell) -> Grade:
    """The :class:`Grade` of one executed exercise cell (see the module docstring for the rules)."""
    records = _records(cell)
    passed, total = sum(r["passed"] for r in records), sum(r["total"] for r in records)
    error = _error(cell)
    if error is not None:
        return Grade(exercise, "fail", passed, total, f"the cell raised {error}", records)
    if not records:
        if cell.get("execution_count") is None and not cell.get("outputs"):
            return Grade(exercise, "not run", detail="the run stopped before this cell")
        return Grade(exercise, "fail", detail="the cell did not call check()")
    statuses = {r["status"] for r in records}
    if statuses == {"pass"}:
        return Grade(exercise, "pass", passed, total, "", records)
    if statuses == {"not attempted"}:
        return Grade(exercise, "not attempted", passed, total, "the stub still raises NotImplementedError", records)
    first = next(line for r in records for line in r["lines"] if not line.startswith("[ok]"))
    return Grade(exercise, "fail", passed, total, first, records)


def grade(nb, expected: list[str] | None = None) -> list[Grade]:
    """Grades of an *executed* notebook: one per expected exercise id, then any other tagged exercise."""
    found = tagged_cells(nb, EXERCISE_TAG)
    ids = list(expected or [])
    ids += [i for i in found if i not in ids]
    return [
        grade_cell(i, nb.cells[found[i]])
        if i in found
        else Grade(i, "missing", detail=f"no cell tagged exercise:{i} (keep the exercise cells and their tags)")
        for i in ids
    ]


def reference_notebook(submission: Path, nb=None, folder: Path | None = None) -> Path | None:
    """The committed notebook a submission comes from: same number (from its tags, else its file name) in
    ``folder`` (default: the workbook's ``notebooks/``, present in a checkout of the repository)."""
    folder = Path(folder) if folder is not None else Path(__file__).resolve().parents[1] / "notebooks"
    numbers = [
        m.group(1) for i in (tagged_cells(nb, EXERCISE_TAG) if nb is not None else {}) if (m := ID_PATTERN.fullmatch(i))
    ]
    name = re.match(r"(\d{2})_", submission.name)
    number = numbers[0] if numbers else (name.group(1) if name else None)
    if number is None or not folder.is_dir():
        return None
    matches = sorted(folder.glob(f"{number}_*.ipynb"))
    return matches[0] if matches else None


def run_submission(
    path: Path, *, timeout: int = 900, smoke: bool = False, env: dict | None = None, kernel_name: str = "python3"
):
    """Execute ``path`` top to bottom in a fresh kernel with recording on; return the executed notebook.

    Cells that raise do not stop the run (each exercise is graded on its own); a timeout or a dead
    kernel does, and the cells after it stay unexecuted (graded ``not run``).
    """
    import nbformat
    from nbclient import NotebookClient

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:  # outputs come from this run only, never from the file handed in
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    kernel_env = {**os.environ, RECORD_ENV: "1", **({"RECNB_SMOKE": "1"} if smoke else {}), **(env or {})}
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name=kernel_name,
        allow_errors=True,
        resources={"metadata": {"path": str(path.resolve().parent)}},
    )
    try:
        client.execute(env=kernel_env)
    except Exception as exc:  # timeout, dead kernel: grade what ran
        nb.metadata.setdefault("recnb_check", {})["aborted"] = f"{type(exc).__name__}: {exc}"[:500]
    return nb


def format_grades(name: str, grades: list[Grade], note: str = "") -> str:
    """The report printed for one notebook."""
    width = max([len(g.exercise) for g in grades] + [8])
    lines = [f"{name}{f' ({note})' if note else ''}"]
    for g in grades:
        cases = f"{g.passed}/{g.total} cases" if g.total else ""
        detail = f" -- {g.detail}" if g.detail else ""
        lines.append(f"  {g.exercise:<{width}}  {g.status:<13}  {cases}{detail}".rstrip())
    counts = {s: sum(g.status == s for g in grades) for s in STATUSES}
    shown = ", ".join(f"{n} {s}" for s, n in counts.items() if n or s in STATUSES[:3])  # missing, not run: if any
    lines.append(f"  {len(grades)} exercise{'s' * (len(grades) != 1)}: {shown}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m recnb.exercises NOTEBOOK...``: the instructor's grading aid (see the module docstring)."""
    import argparse
    import json
    import time

    import nbformat

    parser = argparse.ArgumentParser(
        prog="python -m recnb.exercises",
        description="Run submitted notebooks from a fresh kernel and report, per exercise, "
        "pass / fail / not attempted.",
    )
    parser.add_argument("notebooks", nargs="+", type=Path, help="submitted .ipynb files, or folders of them")
    parser.add_argument("--timeout", type=int, default=900, help="seconds allowed per cell (default 900)")
    parser.add_argument(
        "--smoke", action="store_true", help="run in the smoke profile (RECNB_SMOKE=1): fast, tiny sizes"
    )
    parser.add_argument(
        "--reference",
        type=Path,
        help="the notebook (or folder) that lists the expected exercises "
        "(default: the workbook's notebooks/ with the same number)",
    )
    parser.add_argument("--json", type=Path, help="also write every grade and check() record to this JSON file")
    parser.add_argument(
        "--executed",
        type=Path,
        help="folder to save the executed submissions in (by their folder's name), for a closer look",
    )
    args = parser.parse_args(argv)

    paths = []
    for p in args.notebooks:
        if p.is_dir():
            paths += sorted(q for q in p.glob("*.ipynb") if not q.name.startswith("."))
        elif p.is_file():
            paths.append(p)
        else:
            parser.error(f"no such notebook: {p}")
    if not paths:
        parser.error("no notebooks to check")
    results = {}
    for path in paths:
        start = time.perf_counter()
        nb = run_submission(path, timeout=args.timeout, smoke=args.smoke)
        seconds = time.perf_counter() - start
        ref = args.reference
        if ref is None or ref.is_dir():
            ref = reference_notebook(path, nb, ref)
        expected = list(tagged_cells(nbformat.read(ref, as_version=4), EXERCISE_TAG)) if ref else None
        grades = grade(nb, expected)
        profile = "smoke" if args.smoke or os.environ.get("RECNB_SMOKE", "").strip() not in ("", "0") else "default"
        note = f"fresh kernel, profile {profile}, {seconds:.0f} s"
        aborted = nb.metadata.get("recnb_check", {}).get("aborted")
        if aborted:
            note += f"; the run stopped: {aborted}"
        print(format_grades(path.name, grades, note), flush=True)
        results[str(path)] = {
            "reference": str(ref) if ref else None,
            "seconds": round(seconds, 1),
            "aborted": aborted,
            "grades": [asdict(g) for g in grades],
        }
        if args.executed:  # EXECUTED/<submission's folder>/<name>: alice/01_... and bob/01_... stay apart
            target = args.executed / path.resolve().parent.name / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, target)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
