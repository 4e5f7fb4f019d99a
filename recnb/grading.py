"""Grading submitted notebooks: the instructor's side of the "your turn" cells (``python -m recnb.exercises``).

``python -m recnb.exercises NOTEBOOK...`` (``make check-submission NB=path``; ``python -m recnb.grading``
is the same) runs each notebook top to bottom in a fresh kernel (working directory: the notebook's
folder; cells that raise do not stop the run) and prints, for every exercise, one of

* ``pass`` -- every ``check()`` call in the exercise cell passed all its cases,
* ``not attempted`` -- every case reported ``[todo]`` (the stub still raises ``NotImplementedError``),
* ``fail`` -- anything else: a case differs or raises, the cell raised, or it never called ``check()``,
* ``missing`` -- the submission has no cell tagged ``exercise:<id>`` (a cell deleted or re-created
  without its tags; the tag scheme is :mod:`recnb.exercise_tags`),
* ``not run`` -- the run stopped (a timeout, a dead kernel) before the cell.

How results are collected: the checker starts the kernel with ``RECNB_CHECK_RECORD=1``; with that
variable set, :func:`recnb.exercises.check` also displays a machine-readable record of its report (MIME
type ``application/vnd.recnb.check+json``) in the cell that called it. The checker reads those
records from the executed cells tagged ``exercise:<id>`` -- so grading is by cell, the cases are
the ones in that cell (the notebook's own cases, as the student saw them), and the student must
write the answer in the exercise cell and keep its tags. A student could edit the cases in that
cell; each verdict therefore shows the number of cases, and ``--json`` writes every record for a
closer look. Which exercises a submission should contain comes from the committed notebook with
the same number in the workbook's ``notebooks/`` folder (``--reference`` names another one).
The checker runs the submitted code as it is (it is a grading aid, not a sandbox): grade untrusted
work in a container or VM, and read the code behind a surprising pass.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import config
from .exercise_tags import EXERCISE_TAG, ID_PATTERN, tagged_cells
from .exercises import RECORD_ENV, RECORD_MIME

STATUSES = ("pass", "fail", "not attempted", "missing", "not run")


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


def _parser():
    import argparse

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
    return parser


def _submissions(parser, given: list[Path]) -> list[Path]:
    """The notebooks to grade: files as given, folders expanded to their ``*.ipynb`` (hidden ones skipped)."""
    paths = []
    for p in given:
        if p.is_dir():
            paths += sorted(q for q in p.glob("*.ipynb") if not q.name.startswith("."))
        elif p.is_file():
            paths.append(p)
        else:
            parser.error(f"no such notebook: {p}")
    if not paths:
        parser.error("no notebooks to check")
    return paths


def _check_one(path: Path, args) -> dict:
    """Run, grade and print one submission; its entry of the ``--json`` report."""
    import time

    import nbformat

    start = time.perf_counter()
    nb = run_submission(path, timeout=args.timeout, smoke=args.smoke)
    seconds = time.perf_counter() - start
    ref = args.reference
    if ref is None or ref.is_dir():
        ref = reference_notebook(path, nb, ref)
    expected = list(tagged_cells(nbformat.read(ref, as_version=4), EXERCISE_TAG)) if ref else None
    grades = grade(nb, expected)
    profile = "smoke" if args.smoke or config.smoke() else "default"
    note = f"fresh kernel, profile {profile}, {seconds:.0f} s"
    aborted = nb.metadata.get("recnb_check", {}).get("aborted")
    if aborted:
        note += f"; the run stopped: {aborted}"
    print(format_grades(path.name, grades, note), flush=True)
    if args.executed:  # EXECUTED/<submission's folder>/<name>: alice/01_... and bob/01_... stay apart
        target = args.executed / path.resolve().parent.name / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, target)
    return {
        "reference": str(ref) if ref else None,
        "seconds": round(seconds, 1),
        "aborted": aborted,
        "grades": [asdict(g) for g in grades],
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m recnb.exercises NOTEBOOK...``: the instructor's grading aid (see the module docstring)."""
    import json

    parser = _parser()
    args = parser.parse_args(argv)
    results = {str(path): _check_one(path, args) for path in _submissions(parser, args.notebooks)}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
