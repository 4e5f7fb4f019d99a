"""Fixtures of the browser test: one JupyterLab server and one headless Chromium for the session.

The browser test runs only when asked for -- ``make browser-test``, ``pytest tests/browser`` or ``-m browser``
-- so ``make test`` and ``make unit`` (``pytest tests``) skip it. When asked for, a missing Chromium or
Playwright skips it on a developer's machine and fails it in CI (``CI=true``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from .lab_driver import CHROMIUM, copy_notebooks, launch_chromium, new_context, start_lab

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SHOTS = ROOT / "build" / "browser"
_RESULTS: list[dict] = []
_TIMES: dict[str, float] = {}


def _requested(config) -> bool:
    """Asked for by path (tests/browser, or a file in it) or by ``-m browser``; ``pytest tests`` is not asking."""
    markexpr = config.getoption("markexpr", "") or ""
    if "browser" in markexpr and "not browser" not in markexpr:
        return True
    for arg in config.args:
        path = Path(arg.split("::")[0])
        path = (path if path.is_absolute() else Path(config.invocation_params.dir) / path).resolve()
        if path == HERE or HERE in path.parents:
            return True
    return False


def pytest_collection_modifyitems(config, items):
    if _requested(config):
        return
    skip = pytest.mark.skip(reason="browser test: run it with `make browser-test` (or pytest tests/browser)")
    for item in items:
        if item.get_closest_marker("browser"):
            item.add_marker(skip)


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (`pip install -e .[browser]`; `make browser-test` does it)"
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (Debian: `apt-get install -y chromium`; .ci/run does it)"
    return None


@pytest.fixture(scope="session")
def browser():
    """A browser context in Debian's Chromium (headless, empty profile)."""
    missing = _missing()
    if missing:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true: the browser test must run, but {missing}", pytrace=False)
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = launch_chromium(pw)
        try:
            context = new_context(chromium)
            yield context
        finally:
            chromium.close()


@pytest.fixture(scope="session")
def lab(browser):
    """JupyterLab serving copies of notebooks/ in the smoke profile; stopped with its kernels, on failure too."""
    start = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="recnb-browser-"))
    root = tmp / "notebooks"
    copy_notebooks(ROOT / "notebooks", root)
    server = start_lab(root, tmp / "lab", env={"RECNB_SMOKE": "1"})
    _TIMES["server_start"] = time.monotonic() - start
    try:
        yield server
    finally:
        server.stop()  # the shutdown API, then SIGTERM/SIGKILL to the server's process group (its kernels)
        _TIMES["total"] = time.monotonic() - start
        SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(server.log, SHOTS / "jupyterlab.log")
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def shots():
    """build/browser/: screenshots, report.json and the server's log, for a person to look at."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob("**/*.png"):
        old.unlink()
    return SHOTS


@pytest.fixture(scope="session")
def record():
    """Collects each notebook's report; written to build/browser/report.json at the end."""
    return _RESULTS.append


def pytest_terminal_summary(terminalreporter):
    if not _RESULTS:
        return
    tr = terminalreporter
    tr.section("browser test (JupyterLab in headless Chromium, RECNB_SMOKE=1)")
    if "server_start" in _TIMES:
        tr.write_line(f"JupyterLab start: {_TIMES['server_start']:.1f} s")
    for r in _RESULTS:
        s = r["seconds"]
        tr.write_line(
            f"{r['notebook']:<44} {s.get('total', 0):6.1f} s (open {s.get('open', 0):.1f}, run all "
            f"{s.get('run_all', 0):.1f}, widgets {s.get('widgets', 0):.1f}; kernel CPU "
            f"{s.get('kernel_cpu', 0):.0f} s); {r['widgets']} widget views "
            f"({r['closed_widgets']} closed), {len(r['controls'])} controls changed, "
            f"{len(r['failures'])} failures"
        )
    if "total" in _TIMES:
        tr.write_line(f"total, server start to stop: {_TIMES['total']:.1f} s")
    SHOTS.mkdir(parents=True, exist_ok=True)
    (SHOTS / "report.json").write_text(json.dumps({"times": _TIMES, "notebooks": _RESULTS}, indent=1))
    tr.write_line(f"screenshots and report.json: {SHOTS.relative_to(ROOT)}/")
