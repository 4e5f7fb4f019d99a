"""Checkers for the "your turn" cells: run the reader's function on cases, explain what is off.

Usage in a notebook (introduced in notebook 01)::

    def my_answer(...): ...
    check(my_answer, CASES)          # prints a verdict for each case; raises nothing

Each case is an :class:`Case`: the arguments, the expected result, and a hint shown when the
reader's result differs. ``check(..., strict=True)`` raises ``AssertionError`` instead, which the
notebooks use on the reference solution so that a wrong solution fails the notebook test.

With ``RECNB_CHECK_RECORD=1`` in the kernel's environment (the grading run sets it), :func:`check` also
displays a machine-readable record of its :class:`Report` (MIME type ``application/vnd.recnb.check+json``)
in the cell that called it; outside that run nothing is displayed. :data:`REPORTS` keeps every report of
the process either way.

The instructor's tools live elsewhere: the cell tags and their lint in :mod:`recnb.exercise_tags`, grading
a submission in :mod:`recnb.grading`. Their names stay importable from here (``from recnb.exercises import
lint``), and ``python -m recnb.exercises NOTEBOOK...`` (``make check-submission NB=path``) is the grading aid.
"""

from __future__ import annotations

import math
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import config

RECORD_ENV = "RECNB_CHECK_RECORD"  # set (non-empty, not "0") in the kernel: check() emits records
RECORD_MIME = "application/vnd.recnb.check+json"


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
    return config.env_flag(RECORD_ENV)


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


# The instructor's tools, importable from here as before (scripts/student_edition.py and the tests do);
# imported on first use, so a notebook's `from recnb.exercises import check` stays light.
_MOVED = {
    "recnb.exercise_tags": (
        "EXERCISE_TAG",
        "SOLUTION_TAG",
        "ID_PATTERN",
        "cell_role",
        "tagged_cells",
        "module_names",
        "lint",
        "_parse",
        "_check_calls",
        "_is_strict",
        "_raises_not_implemented",
    ),
    "recnb.grading": (
        "STATUSES",
        "Grade",
        "grade_cell",
        "grade",
        "reference_notebook",
        "run_submission",
        "format_grades",
        "main",
    ),
}


def __getattr__(name: str):
    import importlib

    for module, names in _MOVED.items():
        if name in names:
            return getattr(importlib.import_module(module), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    from recnb.grading import main

    raise SystemExit(main())
