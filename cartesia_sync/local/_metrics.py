"""Word error rate, for measuring engines against known text (tests, benchmarks, your own evaluations)."""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["normalise_words", "edit_distance", "word_error_rate"]


def normalise_words(text: str) -> list[str]:
    """Lower-case words of ``text``, keeping only letters and apostrophes."""
    return re.sub(r"[^a-z' ]", " ", text.lower()).split()


def edit_distance(reference: Sequence[str], hypothesis: Sequence[str]) -> int:
    """Substitutions, deletions and insertions that turn ``reference`` into ``hypothesis``."""
    row = list(range(len(hypothesis) + 1))
    for i, ref_word in enumerate(reference, 1):
        previous, row[0] = row[0], i
        for j, hyp_word in enumerate(hypothesis, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (ref_word != hyp_word))
    return row[-1]


def word_error_rate(references: str | Sequence[str], hypotheses: str | Sequence[str]) -> float:
    """Word errors over reference words, pooled over pairs of texts (or one pair of strings).

    Both sides are normalised with :func:`normalise_words` first.
    """
    if isinstance(references, str):
        references, hypotheses = [references], [hypotheses]  # type: ignore[list-item]
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    errors = words = 0
    for reference, hypothesis in zip(references, hypotheses, strict=False):
        ref = normalise_words(reference)
        errors += edit_distance(ref, normalise_words(hypothesis))
        words += len(ref)
    return errors / max(1, words)
