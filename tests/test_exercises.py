"""recnb.exercises: the checker gives specific feedback and never crashes the notebook; the grading aid's rules."""

import re

import nbformat
import numpy as np
import pytest

from recnb import exercises
from recnb.exercises import RECORD_ENV, RECORD_MIME, REPORTS, Case, Report, check, grade, grade_cell

CASES = [Case((2, 3), 5, hint="add them"), Case((np.array([1.0]), np.array([2.0])), np.array([3.0]))]


def test_correct_answer_passes():
    report = check(lambda a, b: a + b, CASES)
    assert report.ok and "well done" in str(report)


def test_wrong_answer_shows_hint_and_strict_raises():
    def add(a, b):
        return a - b

    report = check(add, CASES)
    assert not report.ok and "Hint: add them" in str(report) and "got -1" in str(report)
    with pytest.raises(AssertionError, match="0/2 cases pass"):
        check(add, CASES, strict=True)


def test_stub_and_exception_are_reported_not_raised():
    def stub(a, b):
        raise NotImplementedError

    def broken(a, b):
        return a / 0

    assert "[todo]" in str(check(stub, CASES))
    assert "ZeroDivisionError" in str(check(broken, CASES[:1]))


def test_misuse_is_explained():
    with pytest.raises(TypeError, match="pass the function itself"):
        check(5, CASES)
    with pytest.raises(ValueError, match="at least one Case"):
        check(len, [])


# -- what the grading aid builds on: status, the registry, records, grades ----------------------


def test_status_and_record():
    def stub(a, b):
        raise NotImplementedError

    assert check(lambda a, b: a + b, CASES).status == "pass"
    assert check(stub, CASES).status == "not attempted"
    half = check(lambda a, b: 5, CASES)
    assert half.status == "fail" and half.record()["passed"] == 1 and half.record()["total"] == 2
    assert check(stub, CASES).record() == {
        "function": "stub",
        "status": "not attempted",
        "passed": 0,
        "total": 2,
        "todo": 2,
        "errors": 0,
        "lines": check(stub, CASES).lines,
    }
    assert Report(["[ok] x"], 1, 1).status == "pass"  # the old three-field form still works


def test_every_report_is_registered_and_records_only_when_asked(monkeypatch):
    emitted = []
    monkeypatch.setattr(exercises, "_emit", lambda report, strict: emitted.append((report.status, strict)))
    monkeypatch.delenv(RECORD_ENV, raising=False)
    before = len(REPORTS)
    report = check(lambda a, b: a + b, CASES)
    assert REPORTS[-1] is report and len(REPORTS) == before + 1 and emitted == []
    monkeypatch.setenv(RECORD_ENV, "1")
    check(lambda a, b: a + b, CASES)
    with pytest.raises(AssertionError):
        check(lambda a, b: 0, CASES, strict=True)
    assert emitted == [("pass", False), ("fail", True)]


def _cell(*records, error=None, ran=True):
    cell = nbformat.v4.new_code_cell("...", metadata={"tags": ["exercise", "exercise:nb01-x"]})
    cell.outputs = [nbformat.v4.new_output("display_data", data={RECORD_MIME: r, "text/plain": ""}) for r in records]
    if error:
        cell.outputs.append(nbformat.v4.new_output("error", ename=error, evalue="boom", traceback=[]))
    cell.execution_count = 1 if ran else None
    return cell


def _record(fn, cases):
    return check(fn, cases).record()


def test_grade_rules():
    def stub(a, b):
        raise NotImplementedError

    ok, todo, wrong = _record(lambda a, b: a + b, CASES), _record(stub, CASES), _record(lambda a, b: 5, CASES)
    assert grade_cell("x", _cell(ok)).status == "pass"
    assert grade_cell("x", _cell(todo)).status == "not attempted"
    failed = grade_cell("x", _cell(wrong))
    assert failed.status == "fail" and (failed.passed, failed.total) == (1, 2) and "[differs]" in failed.detail
    assert grade_cell("x", _cell(ok, todo)).status == "fail"  # every check() in the cell must pass
    assert grade_cell("x", _cell(ok, error="NameError")).status == "fail"
    assert grade_cell("x", _cell()).detail == "the cell did not call check()"
    assert grade_cell("x", _cell(ran=False)).status == "not run"
    nb = nbformat.v4.new_notebook(cells=[_cell(ok)])
    assert [(g.exercise, g.status) for g in grade(nb, ["nb01-w", "nb01-x"])] == [
        ("nb01-w", "missing"),
        ("nb01-x", "pass"),
    ]
    text = exercises.format_grades("01.ipynb", grade(nb, ["nb01-w", "nb01-x"]))
    assert (
        re.search(r"nb01-x +pass +2/2 cases", text)
        and "2 exercises: 1 pass, 0 fail, 0 not attempted, 1 missing" in text
    )


def test_command_line_rejects_a_missing_notebook(tmp_path, capsys):
    with pytest.raises(SystemExit):
        exercises.main([str(tmp_path / "nope.ipynb")])
    assert "no such notebook" in capsys.readouterr().err


# -- where the instructor's tools live: recnb.exercise_tags and recnb.grading, importable from here too -----


def test_instructor_tools_are_the_same_objects_under_their_old_names():
    from recnb import exercise_tags, grading

    for name in ("lint", "cell_role", "tagged_cells", "module_names", "EXERCISE_TAG", "_parse", "_is_strict"):
        assert getattr(exercises, name) is getattr(exercise_tags, name), name
    for name in ("grade", "grade_cell", "format_grades", "run_submission", "main", "STATUSES", "Grade"):
        assert getattr(exercises, name) is getattr(grading, name), name
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        exercises.nothing_here  # the lookup itself is the test


def test_the_grading_aid_still_answers_as_python_m_recnb_exercises():
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "recnb.exercises", "--help"], capture_output=True, text=True, timeout=60, check=True
    )
    assert "usage: python -m recnb.exercises" in out.stdout and "--reference" in out.stdout
