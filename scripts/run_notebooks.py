"""Execute the workbook's notebooks headless, each from a fresh kernel, in reading order.

    python scripts/run_notebooks.py --out build/executed      # `make run`: copies, committed files untouched
    python scripts/run_notebooks.py --in-place [NAMES...]     # `make notebooks`: refresh committed outputs

Prints one line a notebook with its wall time; stops at the first failure and names the cell. With --in-place,
notebook 10 also refreshes the committed results (RECNB_RESULTS_DIR=docs/results) that
scripts/update_readme_results.py copies into the README, and each notebook's wall time (with the date,
the machine and its load) goes to recnb/runtimes.json, the one source of the run times that the README
and notebook 00 show; notebook 00, which prints that table, is executed once more at the end when
other notebooks ran after it. Other runs leave all of these untouched.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
sys.path.insert(0, str(ROOT))
from recnb import chapters, config  # noqa: E402  (the checkout's package, whichever venv runs this)


def machine() -> str:
    """The CPU model and core count, e.g. "2-core Intel(R) Xeon(R) ..." (what the minutes depend on)."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()}-core {model}"


def execute(path: Path, out: Path, timeout: int) -> float:
    """Run ``path`` top to bottom in a fresh kernel (cwd = notebooks/) and write it to ``out``."""
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    try:
        client.execute()
    finally:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".ipynb.part")
        nbformat.write(nb, tmp)
        tmp.replace(out)
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="notebook names or prefixes (default: all)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--out", type=Path, default=ROOT / "build" / "executed", help="folder for executed copies")
    where.add_argument("--in-place", action="store_true", help="overwrite the committed notebooks")
    parser.add_argument("--timeout", type=int, default=900, help="seconds allowed per cell")
    args = parser.parse_args(argv)

    try:
        paths = [NOTEBOOKS / c.file for c in chapters.select(args.names)]
    except ValueError as exc:
        parser.error(str(exc))
    if args.in_place:  # refreshing the committed notebooks refreshes notebook 10's committed results too
        if config.results_dir() is None:  # the kernels inherit it
            os.environ[config.RESULTS_DIR_ENV] = str(ROOT / "docs" / "results")
    measured = {}
    for i, path in enumerate(paths, 1):
        out = path if args.in_place else Path(args.out).resolve() / path.name
        print(f"[{i}/{len(paths)}] {path.name}", flush=True)
        load = os.getloadavg()[0]
        try:
            seconds = execute(path, out, args.timeout)
        except CellExecutionError as exc:
            print(f"FAILED\n{exc}\nThe partly executed copy is {out}", file=sys.stderr)
            return 1
        measured[path.name] = (seconds, load)
        where = out.relative_to(ROOT) if out.is_relative_to(ROOT) else out
        print(f"      done in {seconds:.1f} s (load {load:.1f}) -> {where}", flush=True)
    print(f"{len(paths)} notebooks executed in {sum(s for s, _ in measured.values()):.1f} s")
    if args.in_place:
        today = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
        chapters.record_runtimes(measured, date=today, machine=machine())
        print(f"run times recorded in {chapters.RUNTIMES_FILE.relative_to(ROOT)}")
        first = paths[0]
        if first.name == chapters.CHAPTERS[0].file and len(paths) > 1:  # notebook 00 shows the new table
            print(f"[again] {first.name}: its chapter table reads the times just recorded", flush=True)
            execute(first, first, args.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
