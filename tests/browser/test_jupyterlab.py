"""The workbook in a real JupyterLab, in a headless Chromium (``make browser-test``; README, "Browser test").

For each notebook with interactive widgets: open it in a fresh workspace, clear its outputs, Run > Run All Cells
in the smoke profile (RECNB_SMOKE=1), then check what the front end shows -- no error output, every ipywidgets
view rendered, every slider / dropdown / text box changed once with its output area redrawn and no error shown
in the page or reported by the kernel. A deliberately broken notebook checks that the checker catches a raising
callback. Screenshots of each notebook's first interactive widget, before and after the change, and
report.json (per-notebook times) are written to build/browser/.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
import pytest

from .lab_driver import check_notebook

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"
ALL = sorted(p.name for p in NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
# The notebooks with a control a student moves (sliders, dropdowns, a text box); 02, 03 and 07 show tqdm
# progress bars (ipywidgets in JupyterLab) too. 06, 08, 09 and 10 display only such progress bars and 00 and 01
# no widget: they would add minutes and no new kind of widget; nbval runs them all (`make test`), and
# RECNB_BROWSER_NOTEBOOKS=all runs them here too.
INTERACTIVE = ["02", "03", "04", "05", "07"]
SHOWS_WIDGETS = INTERACTIVE + ["06", "08", "09", "10"]


def _selected() -> list[str]:
    """RECNB_BROWSER_NOTEBOOKS: "all", or numbers ("04 07"); default: the interactive notebooks."""
    wanted = os.environ.get("RECNB_BROWSER_NOTEBOOKS", "").split() or INTERACTIVE
    return ALL if wanted == ["all"] else [n for n in ALL if n[:2] in wanted]


def _imports_ipywidgets(path: Path) -> bool:
    nb = nbformat.read(path, as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    return any(re.search(r"^\s*(import|from)\s+ipywidgets\b", src, re.M) for src in code)


def test_every_interactive_notebook_is_covered():
    """Runs in `make test` too (no browser): a new notebook with ipywidgets controls joins the browser test."""
    assert sorted(p.name[:2] for p in NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb") if _imports_ipywidgets(p)) == INTERACTIVE


def _fail_message(report) -> str:
    return f"{report.notebook}: {len(report.failures)} failure(s)\n" + "\n\n".join(report.failures)


@pytest.mark.browser
@pytest.mark.parametrize("notebook", _selected(), ids=lambda n: n[:2])
def test_notebook_in_jupyterlab(notebook, browser, lab, shots, record):
    report = check_notebook(browser, lab, notebook, screenshot_dir=shots)
    record(report.as_dict())
    assert not report.failures, _fail_message(report)
    if notebook[:2] in SHOWS_WIDGETS:
        assert report.widgets > 0, f"{notebook}: no widget displayed"
    if notebook[:2] in INTERACTIVE:
        assert report.controls, f"{notebook}: no interactive control found"
        assert any(p.endswith("-widget-after.png") for p in report.screenshots)


def _broken_notebook() -> nbformat.NotebookNode:
    """A working slider, a slider whose interact() callback raises, a slider whose observer raises."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nb.cells = [
        nbformat.v4.new_markdown_cell("# A deliberately broken widget (tests/browser: a test of the test)"),
        nbformat.v4.new_code_cell("import ipywidgets as widgets\nfrom IPython.display import display"),
        nbformat.v4.new_code_cell(
            "def fine(x):\n    print('x squared is', x * x)\n\n"
            "widgets.interact(fine, x=widgets.IntSlider(value=3, min=0, max=10));"
        ),
        nbformat.v4.new_code_cell(
            "def broken(x):\n"
            "    if x != 5:\n"
            "        raise RuntimeError('deliberately broken callback')\n"
            "    print('x =', x)\n\n"
            "widgets.interact(broken, x=widgets.IntSlider(value=5, min=0, max=10));"
        ),
        nbformat.v4.new_code_cell(
            "out = widgets.Output()\n"
            "slider = widgets.FloatSlider(value=0.5, min=0, max=1, description='observed')\n\n"
            "def on_change(change):\n"
            "    raise ValueError('deliberately broken observer')\n\n"
            "slider.observe(on_change, names='value')\n"
            "with out:\n    print('nothing has moved yet')\n"
            "display(widgets.VBox([slider, out]))"
        ),
    ]
    return nb


@pytest.mark.browser
def test_checker_catches_a_raising_widget_callback(browser, lab, shots):
    """The test of the test: the same check fails a notebook whose widget callbacks raise, and only for them."""
    nbformat.write(_broken_notebook(), lab.root / "zz_broken_widget.ipynb")
    selftest = shots / "selftest"
    selftest.mkdir(exist_ok=True)
    report = check_notebook(browser, lab, "zz_broken_widget.ipynb", screenshot_dir=selftest, widget_timeout=5)
    text = "\n".join(report.failures)
    assert report.widgets == 3 and len(report.controls) == 3, report.as_dict()
    assert len(report.failures) == 2, text
    interact_failure, observer_failure = report.failures
    # interact() shows the traceback in the widget's output area
    assert interact_failure.startswith("cell 4, slider 'x': error output after the change"), text
    assert "deliberately broken callback" in interact_failure, text
    # an observer's exception shows nowhere on the page: its output does not change, and the kernel reports it
    assert observer_failure.startswith("cell 5, slider 'observed': output area did not change"), text
    assert "deliberately broken observer" in observer_failure, text
