"""MovieLens item text and features: "Title (year). Genres: a, b." through the text encoder."""

from __future__ import annotations

import numpy as np

from ..data import Interactions

__all__ = ["item_texts", "item_titles", "text_features"]


def item_titles(data: Interactions) -> list[str]:
    """Display label per item code: ``"Title (year)"``, or the raw id where the side file has no row."""
    raw = data.item_map.decode(np.arange(data.n_items))
    frame = data.item_features
    out = []
    for code in range(data.n_items):
        if frame is None or code not in frame.index or not isinstance(frame.at[code, "title"], str):
            out.append(f"item {raw[code]}")
            continue
        year = frame.at[code, "year"] if "year" in frame.columns else None
        has_year = year is not None and not (isinstance(year, float) and np.isnan(year)) and str(year) != "<NA>"
        out.append(f"{frame.at[code, 'title']} ({year})" if has_year else str(frame.at[code, "title"]))
    return out


def item_texts(data: Interactions) -> list[str]:
    """The text each item is embedded from: title, year and genres (empty string if undescribed).

    An undescribed item's empty text gets a zero vector under the encoder's ``on_error="zero"``
    policy, so it contributes nothing to content scores rather than a made-up meaning.
    """
    frame = data.item_features
    titles = item_titles(data)
    texts = []
    for code in range(data.n_items):
        if frame is None or code not in frame.index:
            texts.append("")
            continue
        genres = frame.at[code, "genres"] if "genres" in frame.columns else None
        genre_list = (
            list(genres)
            if isinstance(genres, (list, tuple, np.ndarray))
            else (str(genres).split() if isinstance(genres, str) else [])
        )
        text = titles[code] + "."
        if genre_list:
            text += " Genres: " + ", ".join(genre_list) + "."
        texts.append(text)
    return texts


def text_features(texts: list[str], *, cache_dir=None, device: str = "cpu", progress: bool = True) -> np.ndarray:
    """MiniLM (all-MiniLM-L6-v2, packaged) embeddings of ``texts``: float32 (n, 384), unit rows.

    Empty texts become zero rows (reported by the encoder, never silent NaN); ``cache_dir`` makes a
    re-run on an unchanged catalogue free.
    """
    from ..encoders import TextEncoder

    encoder = TextEncoder(device=device, cache_dir=cache_dir, progress=progress, on_error="zero")
    return encoder.encode(texts)
