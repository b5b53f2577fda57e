"""How strongly an interaction counts: the confidence transform every model applies to weights.

Ratings, play counts and plain clicks all arrive as one ``weight`` per event. A heavy-tailed
count (one user played a song 900 times) must not drown everything else, and a dataset of
plain clicks has weight 1 everywhere; which transform suits a dataset is chosen on validation,
not assumed. Weights at or below zero count as nothing here.
"""

from __future__ import annotations

import numpy as np

TRANSFORMS = ("binary", "log1p", "linear")


def confidence(weights: np.ndarray, transform: str) -> np.ndarray:
    """Non-negative float32 strengths: 1 for any positive weight ("binary"), log(1 + w)
    ("log1p", for counts), or w itself ("linear", for ratings on a small scale)."""
    w = np.asarray(weights, dtype=np.float32)
    positive = w > 0
    if transform == "binary":
        return positive.astype(np.float32)
    if transform == "log1p":
        return np.where(positive, np.log1p(np.maximum(w, 0)), 0).astype(np.float32)
    if transform == "linear":
        return np.where(positive, w, 0).astype(np.float32)
    raise ValueError(f"unknown confidence transform {transform!r} (one of "
                     f"{', '.join(TRANSFORMS)})")
