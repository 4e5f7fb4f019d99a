"""The same few MovieLens records written in both source layouts (GroupLens zip and RecBole files)."""

from __future__ import annotations

import zipfile
from pathlib import Path

from recnb.data import GENRES

USERS = [(1, 24, "M", "technician", "85711"), (2, 53, "F", "other", "94043"), (3, 23, "M", "writer", "T8H1N")]
# item_id, title as GroupLens writes it, release date, genres, RecBole's title and year
ITEMS = [
    (1, "Toy Story (1995)", "01-Jan-1995", ["Animation", "Children's", "Comedy"], "Toy Story", "1995"),
    (2, "Shawshank Redemption, The (1994)", "01-Jan-1994", ["Drama"], "Shawshank Redemption, The", "1994"),
    (3, "Misérables, Les (1995)", "01-Jan-1995", ["Drama", "Musical"], "Misérables, Les", "1995"),
    (4, "Seven (Se7en) (1995)", "01-Jan-1995", ["Crime", "Thriller"], "Seven (Se7en)", "1995"),
    (5, "unknown", "", ["unknown"], "unkonwn", "unkonwn"),
]
RATINGS = [
    (1, 1, 5, 874965758),
    (1, 2, 3, 876893171),
    (2, 1, 4, 888550871),
    (2, 3, 2, 888551000),
    (3, 4, 1, 889237455),
    (3, 5, 4, 889237455),
    (3, 1, 3, 889237000),
    (1, 4, 4, 876893171),
]


def write_grouplens(folder: Path) -> Path:
    """Write u.data / u.item (latin-1) / u.user under ``folder/ml-100k``; return that folder."""
    root = folder / "ml-100k"
    root.mkdir(parents=True, exist_ok=True)
    (root / "u.data").write_text("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in RATINGS))
    lines = []
    for item_id, title, date, genres, *_ in ITEMS:
        flags = "|".join("1" if g in genres else "0" for g in GENRES)
        lines.append(f"{item_id}|{title}|{date}||http://example.org/{item_id}|{flags}\n")
    (root / "u.item").write_bytes("".join(lines).encode("latin-1"))
    (root / "u.user").write_text("".join("|".join(map(str, u)) + "\n" for u in USERS))
    return root


def grouplens_zip(folder: Path, name: str = "ml-100k.zip") -> Path:
    """A zip of the GroupLens layout, as GroupLens ships it (one top folder)."""
    src = write_grouplens(folder / "src")
    archive = folder / name
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(src.iterdir()):
            zf.write(path, f"ml-100k/{path.name}")
    return archive


def write_recbole(folder: Path) -> Path:
    """Write ml-100k.inter / .item / .user in RecBole's atomic-file layout (utf-8, typed headers)."""
    folder.mkdir(parents=True, exist_ok=True)
    inter = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    inter += [f"{u}\t{i}\t{r}\t{t}" for u, i, r, t in RATINGS]
    item = ["item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"]
    item += [f"{i}\t{title}\t{year}\t{' '.join(g)}" for i, _, _, g, title, year in ITEMS]
    user = ["user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token"]
    user += ["\t".join(map(str, u)) for u in USERS]
    for ext, rows in (("inter", inter), ("item", item), ("user", user)):
        (folder / f"ml-100k.{ext}").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder
