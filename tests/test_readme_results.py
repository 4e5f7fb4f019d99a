"""README.md's results section must be exactly what notebook 10's run wrote (docs/results/summary.md)."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("update_readme_results", ROOT / "scripts" / "update_readme_results.py")
urr = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(urr)


def test_readme_results_section_matches_the_run():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    summary_md = (ROOT / "docs" / "results" / "summary.md").read_text(encoding="utf-8")
    assert urr.current(readme) == urr.section(summary_md), (
        "README.md's results section differs from docs/results/summary.md; run python scripts/update_readme_results.py"
    )


def test_results_come_from_a_full_run_with_its_figure():
    summary_md = (ROOT / "docs" / "results" / "summary.md").read_text(encoding="utf-8")
    assert summary_md.startswith("Produced by `notebooks/10_evaluation_and_comparison.ipynb`, profile `")
    assert "profile `smoke`" not in summary_md.splitlines()[0], "never commit smoke-profile results"
    assert (ROOT / urr.FIGURE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_splice_replaces_only_the_marked_section():
    readme = f"# Title\n\nbefore\n\n{urr.START}\nold\n{urr.END}\n\nafter\n"
    out = urr.splice(readme, "new table\n")
    assert out.startswith("# Title\n\nbefore\n\n") and out.endswith("\n\nafter\n")
    assert urr.current(out) == urr.section("new table") and "old" not in out
    assert urr.splice(out, "new table\n") == out  # idempotent


@pytest.mark.parametrize(
    "readme, message",
    [
        ("no markers\n", "exactly one"),
        (f"{urr.START}\n{urr.START}\n{urr.END}\n", "exactly one"),
        (f"{urr.END}\nx\n{urr.START}\n", "comes before"),
    ],
)
def test_malformed_markers_name_the_fix(readme, message):
    with pytest.raises(ValueError, match=message):
        urr.splice(readme, "table")
