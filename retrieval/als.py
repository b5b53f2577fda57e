"""Implicit-feedback ALS (the ``implicit`` library) plus exact least-squares fold-in.

Fold-in solves the same per-user problem implicit solves during training, against the fixed
item factors, so a user seen only at serving time (onboarding picks, fresh feedback) gets a
vector in the same space as trained users.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

from shortlist.common.artifacts import read_json, write_json


class AlsModel:
    def __init__(self, factors: int = 64, regularization: float = 0.05, alpha: float = 1.0,
                 iterations: int = 15, seed: int = 42, num_threads: int = 0) -> None:
        self.factors = factors
        # 0: every core. implicit solves each user (item) independently within a half-step,
        # so the factors do not depend on the thread count (checked: identical to the bit).
        self.num_threads = num_threads
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.seed = seed
        self.user_factors = np.zeros((0, factors), dtype=np.float32)
        self.item_factors = np.zeros((0, factors), dtype=np.float32)
        self._gram: np.ndarray | None = None

    def fit(self, user_items: sp.csr_matrix, show_progress: bool = False,
            init: AlsModel | None = None) -> AlsModel:
        """Fit on a users x items matrix of interaction strengths (confidence = alpha * r).

        ``init``: start from another model's factors instead of random ones (a warm start,
        e.g. from a fit on a subset of the same events), so fewer iterations suffice.
        """
        from implicit.cpu.als import AlternatingLeastSquares

        model = AlternatingLeastSquares(
            factors=self.factors, regularization=self.regularization, alpha=self.alpha,
            iterations=self.iterations, random_state=self.seed, calculate_training_loss=False,
            num_threads=self.num_threads,
        )
        if init is not None:
            if init.factors != self.factors or init.user_factors.shape[0] != user_items.shape[0] \
                    or init.item_factors.shape[0] != user_items.shape[1]:
                raise ValueError("warm start needs a model of the same shape")
            model.user_factors = init.user_factors.copy()
            model.item_factors = init.item_factors.copy()
        model.fit(sp.csr_matrix(user_items, dtype=np.float32), show_progress=show_progress)
        self.user_factors = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        self._gram = None
        return self

    def set_factors(self, user_factors: np.ndarray, item_factors: np.ndarray) -> AlsModel:
        """Factors of this configuration fitted by another solver of the same problem."""
        self.user_factors = np.ascontiguousarray(user_factors, dtype=np.float32)
        self.item_factors = np.ascontiguousarray(item_factors, dtype=np.float32)
        self._gram = None
        return self

    @property
    def gram(self) -> np.ndarray:
        if self._gram is None:
            y = self.item_factors.astype(np.float64)
            self._gram = y.T @ y
        return self._gram

    def fold_in(self, item_idx: np.ndarray, strengths: np.ndarray) -> np.ndarray:
        """User vector minimising implicit's weighted least-squares loss for these items.

        A negative strength is implicit's negative feedback: preference 0 held with
        confidence alpha * |strength| (instead of the 1 every unseen item gets), which pulls the
        vector away from the item and from what resembles it."""
        if len(item_idx) == 0:
            return np.zeros(self.item_factors.shape[1], dtype=np.float32)
        y = self.item_factors[item_idx].astype(np.float64)
        s = np.asarray(strengths, dtype=np.float64)
        conf = self.alpha * np.abs(s)
        a = self.gram + (y.T * (conf - 1.0)) @ y
        a[np.diag_indices_from(a)] += self.regularization
        b = ((conf * (s > 0))[:, None] * y).sum(axis=0)
        return np.linalg.solve(a, b).astype(np.float32)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / "user_factors.npy", self.user_factors, allow_pickle=False)
        np.save(directory / "item_factors.npy", self.item_factors, allow_pickle=False)
        write_json(directory / "params.json", {
            "factors": self.factors, "regularization": self.regularization,
            "alpha": self.alpha, "iterations": self.iterations, "seed": self.seed,
        })

    @classmethod
    def load(cls, directory: Path) -> AlsModel:
        model = cls(**read_json(directory / "params.json"))
        model.user_factors = np.load(directory / "user_factors.npy", allow_pickle=False)
        model.item_factors = np.load(directory / "item_factors.npy", allow_pickle=False)
        return model
