"""Item text: one documented template that turns a catalogue row into a sentence (notebook 03).

The template is ``"{title} ({year}). Genres: {genre}, {genre}."``, for example
``"Toy Story (1995). Genres: Animation, Children's, Comedy."``. A missing year is left out
(``"Title. Genres: ..."``) and an item whose only genre is MovieLens' ``unknown`` gets
``"Genres: unknown."``, so every item has text and no text invents facts.
"""

from __future__ import annotations

import pandas as pd

from ._checks import check_columns, need

TEMPLATE = "{title}{year}. Genres: {genres}."


def item_text(title: str, year=None, genres=()) -> str:
    """One item's text from its title, year and genres (notebook 03)."""
    need(isinstance(title, str) and title.strip(), f"title must be a non-empty string, got {title!r}")
    has_year = year is not None and not pd.isna(year)
    genre_list = [str(g) for g in genres] if genres is not None else []
    return TEMPLATE.format(
        title=title.strip(),
        year=f" ({int(year)})" if has_year else "",
        genres=", ".join(genre_list) if genre_list else "unknown",
    )


def item_texts(items: pd.DataFrame) -> list[str]:
    """Texts for every row of a catalogue frame with ``title``, ``year``, ``genres`` (notebook 03)."""
    check_columns("items frame", items, ("title", "year", "genres"), "pass MovieLens.items")
    return [item_text(t, y, g) for t, y, g in zip(items["title"], items["year"], items["genres"])]
