"""recnb.exercises: the checker gives specific feedback and never crashes the notebook."""

import numpy as np
import pytest

from recnb.exercises import Case, check

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
