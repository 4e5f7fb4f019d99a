"""One repository address (pyproject.toml's [project.urls] Repository) behind every badge and install cell."""

import importlib.util
import shutil
from pathlib import Path

import nbformat

from recnb import chapters

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("retarget", ROOT / "scripts" / "retarget_repository.py")
retarget = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(retarget)


def test_every_notebook_installs_the_pinned_release_and_links_its_own_colab_page():
    assert chapters.repository_url() == retarget.declared(ROOT)
    for c in chapters.CHAPTERS:
        nb = nbformat.read(ROOT / "notebooks" / c.file, as_version=4)
        first_code = next(cell for cell in nb.cells if cell.cell_type == "code")
        assert chapters.install_command() in first_code.source, (
            f"{c.file}: install cell is not {chapters.install_command()}"
        )
        assert "@v" in chapters.install_command()
        assert f"]({chapters.colab_url(c)})" in nb.cells[0].source, (
            f"{c.file}: Colab badge is not {chapters.colab_url(c)}"
        )


def test_no_file_quotes_another_repository():
    for path in retarget.files_to_rewrite(ROOT):
        if path.is_file():
            for found in retarget.GITHUB.findall(path.read_text(encoding="utf-8")):
                assert found == retarget.declared(ROOT), f"{path.relative_to(ROOT)} quotes {found}"


def test_retarget_script_moves_every_address_to_a_fork(tmp_path):
    for path in [ROOT / "pyproject.toml", *retarget.files_to_rewrite(ROOT)]:
        if path.is_file():
            target = tmp_path / path.relative_to(ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    old, fork = retarget.declared(ROOT), "https://github.com/some-course/recnb-fork"
    changed = retarget.retarget(tmp_path, fork)
    assert retarget.declared(tmp_path) == fork and len(changed) >= 1 + len(chapters.CHAPTERS)
    for path in retarget.files_to_rewrite(tmp_path):
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            assert old not in text, f"{path.name} still quotes {old}"
    nb00 = (tmp_path / "notebooks" / chapters.CHAPTERS[0].file).read_text(encoding="utf-8")
    assert (
        f"git+{fork}@{chapters.release_tag()}" in nb00
        and "colab.research.google.com/github/some-course/recnb-fork/" in nb00
    )
