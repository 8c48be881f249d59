"""The language a text is written in, for the file's metadata (py3langid: its model ships
in the wheel, so nothing is downloaded at run time)."""

from __future__ import annotations

import functools
from typing import Any

MIN_LETTERS = 40  # below this a guess is noise
SAMPLE_CHARS = 4_000  # plenty to tell; the model's cost grows with the text (0.9 ms at 10k)
MIN_PROBABILITY = 0.8


@functools.cache
def _identifier() -> Any:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def load_model() -> None:
    """Loads the model now (a third of a second), so a worker's first text does not wait."""
    _identifier()


def detect_language(text: str) -> str | None:
    """An ISO 639-1 code ("en", "de", ...) when the text says so clearly, else None."""
    sample = text[:SAMPLE_CHARS]
    if sum(c.isalpha() for c in sample) < MIN_LETTERS:
        return None
    language, probability = _identifier().classify(sample)
    return str(language) if probability >= MIN_PROBABILITY else None
