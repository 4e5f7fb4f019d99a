"""Drive a real JupyterLab in a headless Chromium: what a student sees, checked.

``start_lab`` starts JupyterLab (this venv's ``jupyter lab``) on a loopback port with a random token and
throw-away Jupyter/IPython dirs; ``check_notebook`` opens one notebook in a new page and a fresh JupyterLab
workspace, runs all cells from the Run menu, waits for the kernel to finish, then checks what the front end
shows: no error output, every ipywidgets view rendered, and every interactive control (slider, dropdown, text
box) changed once with its output area redrawn, without an error -- in the page or in the kernel's log.
It returns a ``Report``; the tests assert on its ``failures``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package; Playwright's own browser download is never used
# Headless, no sandbox (CI runs as root), and no background connections: the CI network is closed.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

ERROR_MIME = "application/vnd.jupyter.error"
STDERR_MIME = "application/vnd.jupyter.stderr"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
BROKEN_WIDGET_TEXTS = ("Error displaying widget", "Loading widget", "Error rendering output")
# stderr that is an error, not a warning (UserWarning, tqdm, ... are allowed and listed in the report)
STDERR_ERROR = re.compile(r"Traceback \(most recent call last\)|^\w*(Error|Exception)\b", re.M)
KERNEL_LOG_ERROR = re.compile(r"Traceback \(most recent call last\)|Exception in comm_msg|Error in callback")

# JupyterLab user settings: every cell in the DOM (no windowing), no autosave (the served copies stay as
# they were), no news or update checks (closed network), no extension manager queries to PyPI.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/extensionmanager-extension/plugin": {"enabled": False},
}


@dataclass
class LabServer:
    """A running JupyterLab: its base URL, token, served root and process (a new session: kernels included)."""

    url: str
    token: str
    root: Path
    proc: subprocess.Popen
    log: Path

    def api(self, method: str, path: str, body: dict | None = None, timeout: float = 10):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"{self.url}{path}",
            data=data,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            text = resp.read().decode()
        return json.loads(text) if text else None

    def log_size(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def log_since(self, offset: int) -> str:
        with open(self.log, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    def kernel_cpu_seconds(self) -> float | None:
        """CPU seconds used so far by the server's child processes (its kernels); None off Linux."""
        try:
            total, tick = 0, os.sysconf("SC_CLK_TCK")
            for stat in Path("/proc").glob("[0-9]*/stat"):
                try:
                    fields = stat.read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[1]) == self.proc.pid:  # ppid; then utime, stime, cutime, cstime
                    total += sum(int(v) for v in fields[11:15])
            return total / tick
        except (OSError, ValueError, IndexError):
            return None

    def shutdown_kernels(self) -> None:
        """Shut down every session's kernel (between notebooks: one kernel at a time on a 2-core machine)."""
        try:
            for session in self.api("GET", "/api/sessions"):
                self.api("DELETE", f"/api/sessions/{session['id']}", timeout=30)
        except (OSError, urllib.error.URLError):
            pass

    def stop(self) -> None:
        """Stop the server and its kernels: the shutdown API, then SIGTERM/SIGKILL to its process group."""
        if self.proc.poll() is None:
            try:
                self.api("POST", "/api/shutdown", timeout=5)
                self.proc.wait(timeout=20)
            except (OSError, urllib.error.URLError, subprocess.TimeoutExpired):
                pass
        for sig in (signal.SIGTERM, signal.SIGKILL):  # kernels share the server's process group
            try:
                os.killpg(self.proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                break
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                continue
        self.proc.poll()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_lab(root: Path, workdir: Path, env: dict[str, str] | None = None, timeout: float = 120) -> LabServer:
    """Start ``jupyter lab`` from this interpreter's environment serving ``root``; ``workdir`` holds its state.

    ``env`` is added to the server's environment, which its kernels inherit (RECNB_SMOKE=1 reaches them so).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    dirs = {name: workdir / name for name in ("config", "data", "runtime", "ipython", "settings", "workspaces")}
    for d in dirs.values():
        d.mkdir(exist_ok=True)
    for plugin, values in LAB_SETTINGS.items():
        path = dirs["settings"] / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    token, port = secrets.token_hex(24), _free_port()
    bindir = str(Path(sys.executable).parent)
    server_env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER")}
    server_env.update(
        {
            "PATH": bindir + os.pathsep + server_env.get("PATH", ""),  # as if the venv were activated
            "JUPYTER_CONFIG_DIR": str(dirs["config"]),
            "JUPYTER_DATA_DIR": str(dirs["data"]),
            "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]),
            "IPYTHONDIR": str(dirs["ipython"]),
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
    )
    cmd = [
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--ServerApp.allow_root=True",
        "--ServerApp.terminals_enabled=False",
        "--KernelSpecManager.ensure_native_kernel=True",
        f"--LabApp.user_settings_dir={dirs['settings']}",
        f"--LabApp.workspaces_dir={dirs['workspaces']}",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
        "--LabApp.expose_app_in_browser=True",
    ]  # window.jupyterapp: the test reads the notebook model
    log = workdir / "jupyterlab.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=root,
            env=server_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    server = LabServer(f"http://127.0.0.1:{port}", token, root, proc, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            server.api("GET", "/api/status", timeout=2)
            specs = server.api("GET", "/api/kernelspecs")
            assert "python3" in specs["kernelspecs"], specs
            return server
        except (OSError, urllib.error.URLError):
            time.sleep(0.5)
    server.stop()
    raise TimeoutError(f"JupyterLab did not answer within {timeout} s:\n{log.read_text()[-3000:]}")


def launch_chromium(playwright):
    """Debian's Chromium, headless, with an empty profile (Playwright's temporary one)."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)


@dataclass
class Report:
    """What one notebook showed in the browser."""

    notebook: str
    seconds: dict[str, float] = field(default_factory=dict)
    cells: int = 0
    widgets: int = 0
    closed_widgets: int = 0
    controls: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    screenshots: list[str] = field(default_factory=list)

    def fail(self, message: str) -> None:
        self.failures.append(message)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


# ---------------------------------------------------------------------------------------------- page helpers

_STATE_JS = """() => {
  const nb = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook');
  if (!nb) return null;
  const prompts = [...nb.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')].map(p => p.textContent.trim());
  const ind = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator');
  return {running: prompts.filter(p => p.includes('*')).length, cells: prompts.length,
          executed: prompts.filter(p => /\\[\\d+\\]/.test(p)).length,
          status: ind ? ind.getAttribute('data-status') : null};
}"""


def _state(page) -> dict:
    return page.evaluate(_STATE_JS) or {"running": 0, "cells": 0, "executed": 0, "status": None}


def wait_idle(page, timeout: float, settle: float = 1.0) -> dict:
    """Until no cell is queued or running and the kernel is idle, ``settle`` seconds in a row."""
    deadline, quiet_since = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        s = _state(page)
        if s["running"] == 0 and s["status"] == "idle":
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= settle:
                return s
        else:
            quiet_since = None
        page.wait_for_timeout(250)
    raise TimeoutError(f"kernel still busy after {timeout:.0f} s: {_state(page)}")


_TAG_OUTPUTS_JS = """() => {
  // Tag each top-level output element with its model's MIME types (the widget renderer has no data-mime-type).
  const panel = window.jupyterapp.shell.currentWidget;
  const tags = [];
  panel.content.widgets.forEach((cell, ci) => {
    if (cell.model.type !== 'code') return;
    const area = cell.outputArea;
    area.widgets.forEach((child, oi) => {
      const out = oi < area.model.length ? area.model.get(oi).toJSON() : null;
      const el = child.node.querySelector('.jp-OutputArea-output');
      if (!out || !el) return;
      const mimes = out.output_type === 'error' ? ['error'] : Object.keys(out.data || {});
      el.setAttribute('data-browser-test', mimes.join(' '));
      el.setAttribute('data-browser-test-cell', String(ci));
      tags.push([ci, oi, mimes]);
    });
  });
  return tags;
}"""


# Kernel messages no cell shows: what a widget callback prints or raises while handling a comm message
# (ipywidgets logs an observer's exception, so it never reaches the page). Recorded from the session's iopub.
_LISTEN_JS = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  window.__browserTestKernel = [];
  panel.sessionContext.iopubMessage.connect((_, msg) => {
    const type = msg.header.msg_type, parent = (msg.parent_header || {}).msg_type || '';
    if (type === 'error')
      window.__browserTestKernel.push({parent, text: msg.content.traceback.join('\\n') || msg.content.ename});
    else if (type === 'stream' && msg.content.name === 'stderr')
      window.__browserTestKernel.push({parent, text: msg.content.text});
  });
}"""


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _kernel_messages(page) -> list[dict]:
    return [{**m, "text": ANSI.sub("", m["text"])} for m in page.evaluate("() => window.__browserTestKernel || []")]


_ERRORS_JS = """([scope, errorMime, stderrMime, pattern]) => {
  // Error outputs: JupyterLab renders a traceback as stderr text, so an error is either the error MIME type,
  // an output whose model says output_type 'error' (tagged), or stderr text that reads as a traceback.
  const re = new RegExp(pattern, 'm');
  return [...scope.querySelectorAll('.jp-OutputArea-output')].filter(e => {
    const mime = e.getAttribute('data-mime-type');
    return mime === errorMime || e.getAttribute('data-browser-test') === 'error'
        || (mime === stderrMime && re.test(e.innerText));
  }).map(e => e.innerText.slice(-1500));
}"""


def _error_texts(scope) -> list[str]:
    return scope.evaluate(
        "(el, a) => (" + _ERRORS_JS + ")([el, ...a])", [ERROR_MIME, STDERR_MIME, STDERR_ERROR.pattern]
    )


def _stderr_texts(scope) -> list[str]:
    return [e.inner_text() for e in scope.locator(f'.jp-RenderedText[data-mime-type="{STDERR_MIME}"]').all()]


def _output_signature(area) -> str:
    """What the widget's output area shows: its Output widgets (tables, text, plots), not the controls."""
    return area.evaluate("""(el) => {
      let outs = [...el.querySelectorAll('.widget-output')];
      if (!outs.length) {   // no Output widget: whatever the view shows besides its control rows
        const copy = el.cloneNode(true);
        copy.querySelectorAll('.widget-inline-hbox').forEach(c => c.remove());
        outs = [copy];
      }
      const parts = outs.map(o => {
        const imgs = [...o.querySelectorAll('img')].map(i => i.getAttribute('src') || '').join('|');
        return o.innerText + '#' + imgs;
      });
      return parts.join('\\n---\\n');
    }""")


CONTROLS = {
    "slider": ".widget-slider .noUi-handle",
    "dropdown": ".widget-dropdown select",
    "text": ".widget-text input",
    "checkbox": ".widget-checkbox input",
}


def _controls(area) -> list[tuple[str, object]]:
    """The interactive controls inside one widget view: (kind, locator), in DOM order."""
    found = area.locator(", ".join(CONTROLS.values())).all()
    kinds = [next(k for k, sel in CONTROLS.items() if loc.evaluate("(e, s) => e.matches(s)", sel)) for loc in found]
    return list(zip(kinds, found))


def _label(kind: str, loc) -> str:
    row = loc.locator("xpath=ancestor::*[contains(@class,'widget-inline-hbox')][1]")
    text = row.locator(".widget-label").first.inner_text() if row.count() else ""
    return f"{kind} '{text.strip()}'" if text.strip() else kind


def _screenshot(view, path: Path) -> str:
    view.scroll_into_view_if_needed()
    view.screenshot(path=str(path))
    return str(path)


def control_value(kind: str, loc) -> str:
    """What the control shows now: a slider's readout, the selected entry, the text, the tick."""
    if kind == "slider":
        return loc.get_attribute("aria-valuenow") or ""
    if kind == "checkbox":
        return str(loc.is_checked())
    return loc.input_value()


def change_control(page, kind: str, loc) -> None:
    """Change a control once, as a person would: drag a slider, pick another entry, type and press Enter."""
    loc.scroll_into_view_if_needed()
    if kind == "slider":
        handle = loc.bounding_box()
        track = loc.locator("xpath=ancestor::*[contains(@class,'noUi-target')][1]").bounding_box()
        x, y = handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2
        right_room = track["x"] + track["width"] - x
        dx = min(40, right_room - 2) if right_room > 10 else -min(40, x - track["x"] - 2)  # move right, else left
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.move(x + dx / 2, y, steps=4)
        page.mouse.move(x + dx, y, steps=4)
        page.mouse.up()
    elif kind == "dropdown":
        options = loc.locator("option").all()
        current = loc.evaluate("(s) => s.selectedIndex")
        loc.select_option(index=(current + 1) % len(options) if len(options) > 1 else 0)
    elif kind == "text":
        loc.fill("a quiet romantic comedy set in paris")
        loc.press("Enter")
    elif kind == "checkbox":
        loc.click()


def menu(page, menu_name: str, item: str) -> None:
    """Click ``item`` in the menu bar's ``menu_name`` menu, as a person would."""
    page.locator(".lm-MenuBar-item", has_text=re.compile(f"^{re.escape(menu_name)}$")).click()
    page.locator(".lm-Menu-item .lm-Menu-itemLabel", has_text=re.compile(f"^{re.escape(item)}$")).click()


def wait_kernel_ready(page, server: LabServer, path: str, timeout: float) -> None:
    """Until the server holds an idle kernel for ``path`` and the page shows it connected and idle."""
    deadline, ready_since = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        sessions = server.api("GET", "/api/sessions")
        on_server = any(
            s["path"] == path and s["kernel"] and s["kernel"]["execution_state"] == "idle" for s in sessions
        )
        if on_server and _state(page)["status"] == "idle":
            ready_since = ready_since or time.monotonic()
            if time.monotonic() - ready_since >= 1.0:
                return
        else:
            ready_since = None
        page.wait_for_timeout(250)
    raise TimeoutError(f"no idle kernel for {path} after {timeout:.0f} s: page {_state(page)}")


def run_all_cells(page, timeout: float) -> dict:
    """Edit > Clear Outputs of All Cells, then Run > Run All Cells; wait until the kernel is done."""
    menu(page, "Edit", "Clear Outputs of All Cells")
    page.wait_for_timeout(300)
    cleared = _state(page)
    if cleared["executed"]:
        raise AssertionError(f"outputs not cleared before the run: {cleared}")
    menu(page, "Run", "Run All Cells")
    deadline = time.monotonic() + 30
    while _state(page)["running"] == 0 and _state(page)["executed"] == 0:
        if time.monotonic() > deadline:
            raise TimeoutError(f"Run All Cells started nothing within 30 s: {_state(page)}")
        page.wait_for_timeout(100)
    return wait_idle(page, timeout=timeout)


# ---------------------------------------------------------------------------------------------- the check


def new_context(browser):
    """One browser context for a session: a new page per notebook, each in a fresh JupyterLab workspace."""
    return browser.new_context(viewport={"width": 1400, "height": 1000})


def check_notebook(
    context,
    server: LabServer,
    path: str,
    screenshot_dir: Path | None = None,
    run_timeout: float = 300,
    widget_timeout: float = 60,
) -> Report:
    """Open ``path`` (relative to the server root) in a new page and a fresh workspace, run all cells, and
    check what the front end shows. ``context``: a Playwright browser context (``new_context``)."""
    report = Report(path)
    name = Path(path).stem
    t0 = time.monotonic()
    page = context.new_page()
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: console_errors.append(str(e)))
    try:
        workspace = f"browser-test-{name}-{secrets.token_hex(4)}"
        page.goto(f"{server.url}/lab/workspaces/{workspace}/tree/{path}?reset&token={server.token}")
        page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell").first.wait_for(timeout=90_000)
        wait_kernel_ready(page, server, path, timeout=120)
        page.evaluate(_LISTEN_JS)
        report.seconds["open"] = time.monotonic() - t0

        t1 = time.monotonic()
        state = run_all_cells(page, timeout=run_timeout)
        report.seconds["run_all"] = time.monotonic() - t1
        report.cells = state["cells"]
        notebook = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook")
        page.evaluate(_TAG_OUTPUTS_JS)
        if state["executed"] < state["cells"]:
            report.fail(f"run all stopped: {state['executed']} of {state['cells']} code cells executed")
        for text in _error_texts(notebook):
            report.fail(f"error output:\n{text}")
        report.warnings += [f"stderr: {t[:500]}" for t in _stderr_texts(notebook) if not STDERR_ERROR.search(t)]
        for msg in _kernel_messages(page):
            if msg["parent"] != "execute_request" and STDERR_ERROR.search(msg["text"]):
                report.fail(f"the kernel reported an error outside any cell ({msg['parent']}):\n{msg['text'][-1500:]}")

        # every widget view the notebook displays is rendered by the front end
        t2 = time.monotonic()
        views = notebook.locator(f'.jp-OutputArea-output[data-browser-test~="{WIDGET_MIME}"]').all()
        report.widgets = len(views)
        live = []
        for view in views:
            where = f"cell {int(view.get_attribute('data-browser-test-cell')) + 1}"  # 1-based, as Lab counts
            text = view.inner_text()
            if any(bad in text for bad in BROKEN_WIDGET_TEXTS):
                report.fail(f"{where}: widget not rendered: {text[:300]!r}")
            elif "lm-mod-hidden" in (view.get_attribute("class") or ""):
                report.closed_widgets += 1  # closed by the kernel (a finished tqdm bar with leave=False)
            elif view.locator(".jupyter-widgets").count() == 0:
                report.fail(f"{where}: widget not rendered: no .jupyter-widgets element ({text[:200]!r})")
            else:
                live.append((where, view))

        # every interactive control: change it once, its output area must redraw without an error
        shot_taken = False
        for where, view in live:
            controls = _controls(view)
            if not controls:
                continue
            if screenshot_dir is not None and not shot_taken:
                report.screenshots.append(_screenshot(view, screenshot_dir / f"{name}-widget-before.png"))
            for kind, loc in controls:
                label = _label(kind, loc)
                report.controls.append(label)
                before, errors_before = _output_signature(view), len(_error_texts(notebook))
                log_offset, value = server.log_size(), control_value(kind, loc)
                seen = len(_kernel_messages(page))
                change_control(page, kind, loc)
                if control_value(kind, loc) == value:
                    report.fail(f"{where}, {label}: could not change its value ({value!r})")
                    continue
                deadline, changed = time.monotonic() + widget_timeout, False
                while time.monotonic() < deadline:
                    page.wait_for_timeout(250)
                    if _output_signature(view) != before:
                        changed = True
                        break
                problems = []
                try:
                    wait_idle(page, timeout=widget_timeout, settle=1.0)
                except TimeoutError as exc:
                    problems.append(str(exc))
                errors = _error_texts(notebook)
                if len(errors) > errors_before:
                    problems.append(f"error output after the change:\n{errors[-1]}")
                elif not changed:
                    problems.append(f"output area did not change within {widget_timeout:.0f} s")
                reported = [m for m in _kernel_messages(page)[seen:] if STDERR_ERROR.search(m["text"])]
                if reported and not len(errors) > errors_before:  # an error no output area shows
                    problems.append(
                        f"the kernel reported an error ({reported[0]['parent']}):\n{reported[0]['text'][-1500:]}"
                    )
                kernel_log = server.log_since(log_offset)
                if KERNEL_LOG_ERROR.search(kernel_log):
                    problems.append(f"the kernel logged an error:\n{kernel_log[-1500:]}")
                if problems:
                    report.fail(f"{where}, {label}: " + "\n".join(problems))
                    if screenshot_dir is not None:  # what the student would see
                        shot = screenshot_dir / f"{name}-{where.replace(' ', '')}-failed.png"
                        report.screenshots.append(_screenshot(view, shot))
            if screenshot_dir is not None and not shot_taken:
                report.screenshots.append(_screenshot(view, screenshot_dir / f"{name}-widget-after.png"))
                shot_taken = True
        if screenshot_dir is not None and not shot_taken and live:  # no control: the first widget as it is
            report.screenshots.append(_screenshot(live[0][1], screenshot_dir / f"{name}-widget.png"))
        report.seconds["widgets"] = time.monotonic() - t2
        widget_errors = [m for m in console_errors if "widget" in m.lower() or "comm" in m.lower()]
        report.warnings += [f"console: {m[:300]}" for m in widget_errors]
    except Exception as exc:  # noqa: BLE001 -- a timeout or a missing element is a failure of this notebook
        report.fail(f"{type(exc).__name__}: {str(exc)[:1500]}")
        if screenshot_dir is not None:
            shot = screenshot_dir / f"{name}-failure.png"
            try:
                page.screenshot(path=str(shot), full_page=True)
                report.screenshots.append(str(shot))
            except Exception:  # noqa: BLE001
                pass
    finally:
        report.seconds["total"] = time.monotonic() - t0
        cpu = server.kernel_cpu_seconds()
        if cpu is not None:
            report.seconds["kernel_cpu"] = cpu
        page.close()  # no beforeunload prompt: the served copy is left unsaved
        server.shutdown_kernels()
    return report


def copy_notebooks(src: Path, dst: Path) -> None:
    """The served copies (the committed notebooks are never opened, so never saved over)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
