"""Point every badge, install cell and link at another repository (a fork, a course's copy).

    python scripts/retarget_repository.py https://github.com/<owner>/<name>

The address is declared once, as ``[project.urls] Repository`` in pyproject.toml; this script
rewrites that line, then replaces the old address in the notebooks' Colab badges and install cells
and in the Markdown files, and regenerates the README's chapter table. tests/test_repository_url.py
checks that everything agrees with the declared address. The install cells keep their release tag
(``v<version>``): tag your fork's release the same way, or edit ``recnb.__version__``.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GITHUB = re.compile(r"https://github\.com/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
DECLARATION = re.compile(r'^Repository = "([^"]+)"$', re.MULTILINE)


def declared(root: Path) -> str:
    """The address pyproject.toml declares."""
    match = DECLARATION.search((root / "pyproject.toml").read_text(encoding="utf-8"))
    if not match:
        raise SystemExit('pyproject.toml has no `Repository = "..."` line under [project.urls]; add one')
    return match.group(1)


def files_to_rewrite(root: Path) -> list[Path]:
    """Everything that may quote the address: notebooks, Markdown docs, the README."""
    return sorted(
        [
            *root.glob("notebooks/*.ipynb"),
            *root.glob("notebooks/*.md"),
            *root.glob("docs/**/*.md"),
            root / "README.md",
            root / "data" / "README.md",
        ]
    )


def colab_path(url: str) -> str:
    return "colab.research.google.com/github/" + url.removeprefix("https://github.com/")


def retarget(root: Path, new: str) -> list[Path]:
    """Rewrite ``root`` to ``new``; returns the files changed."""
    if not GITHUB.fullmatch(new):
        raise SystemExit(f"{new!r} is not a GitHub repository address like https://github.com/owner/name")
    old = declared(root)
    changed = []
    pyproject = root / "pyproject.toml"
    text = pyproject.read_text(encoding="utf-8")
    pyproject.write_text(DECLARATION.sub(f'Repository = "{new}"', text), encoding="utf-8")
    changed.append(pyproject)
    for path in files_to_rewrite(root):
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8")
        updated = text.replace(colab_path(old) + "/", colab_path(new) + "/").replace(f"git+{old}@", f"git+{new}@")
        if updated != text:
            path.write_text(updated, encoding="utf-8")
            changed.append(path)
    return changed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", help="the new repository address, https://github.com/owner/name")
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)  # tests retarget a copy
    args = parser.parse_args(argv)
    changed = retarget(args.root, args.url.rstrip("/"))
    for path in changed:
        print(f"rewrote {path.relative_to(args.root)}")
    if args.root == ROOT:
        import subprocess

        subprocess.run([sys.executable, str(ROOT / "scripts" / "update_readme_results.py")], check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
