"""Checkers for the "your turn" cells: run the reader's function on cases, explain what is off.

Usage in a notebook (introduced in notebook 01)::

    def my_answer(...): ...
    check(my_answer, CASES)          # prints a verdict for each case; raises nothing

Each case is an :class:`Case`: the arguments, the expected result, and a hint shown when the
reader's result differs. ``check(..., strict=True)`` raises ``AssertionError`` instead, which the
notebooks use on the reference solution so that a wrong solution fails the notebook test.
"""

from __future__ import annotations

import math
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np


@dataclass
class Case:
    """One test case: ``fn(*args, **kwargs)`` should equal ``expected`` (within ``atol`` for numbers)."""

    args: tuple = ()
    expected: Any = None
    hint: str = ""
    kwargs: dict = field(default_factory=dict)
    atol: float = 1e-6

    def describe(self) -> str:
        parts = [repr(a) if not isinstance(a, (np.ndarray, list)) or len(a) < 12 else f"<{type(a).__name__} of {len(a)}>"
                 for a in self.args]
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
    """What :func:`check` found: one line a case, and whether all passed."""

    lines: list
    passed: int
    total: int

    @property
    def ok(self) -> bool:
        return self.passed == self.total

    def __str__(self) -> str:
        verdict = "All cases pass -- well done!" if self.ok else f"{self.passed}/{self.total} cases pass."
        return "\n".join([*self.lines, verdict])

    def _repr_pretty_(self, printer, cycle):  # IPython shows the report, not a dataclass repr
        printer.text(str(self))


def check(fn: Callable, cases: list[Case], *, strict: bool = False) -> Report:
    """Run ``fn`` on every case and report, with the case's hint where the answer differs."""
    if not callable(fn):
        raise TypeError(f"check() needs your function, got {type(fn).__name__}; pass the function itself, not its result")
    if not cases:
        raise ValueError("check() needs at least one Case")
    lines, passed = [], 0
    for i, case in enumerate(cases, 1):
        label = f"case {i} {fn.__name__}{case.describe()}"
        try:
            got = fn(*case.args, **case.kwargs)
        except NotImplementedError:
            lines.append(f"[todo] {label}: not implemented yet -- replace `raise NotImplementedError` with your code")
            continue
        except Exception as exc:  # the reader's bug: show it, do not crash the notebook
            where = traceback.extract_tb(exc.__traceback__)[-1]
            lines.append(f"[error] {label}: {type(exc).__name__}: {exc} (line {where.lineno})")
            continue
        if _same(got, case.expected, case.atol):
            passed += 1
            lines.append(f"[ok] {label}")
        else:
            hint = f" Hint: {case.hint}" if case.hint else ""
            lines.append(f"[differs] {label}: got {got!r}, expected {case.expected!r}.{hint}")
    report = Report(lines, passed, len(cases))
    if strict and not report.ok:
        raise AssertionError(str(report))
    return report
