"""The ranker's trees compiled to native code (lleaves), checked equal to LightGBM's scores.

Why: LightGBM's ``predict`` sets up a predictor on every call, which for one request's few
hundred rows costs more than walking the trees; lleaves turns the text model into one LLVM
function and scores the same rows about ten times cheaper (docs/design.md, "Compiled ranker").

Compiling takes seconds, so the object code is cached on disk, keyed by everything it depends
on (model text, lleaves and llvmlite versions, host CPU). A cached object is native code this
process will run, so the cache is only used in a directory owned by this user that nobody else
may write to; otherwise the model is compiled in memory. Whatever its origin, a compiled model
is used only after it scored a probe matrix equal to LightGBM.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import lightgbm as lgb
import numpy as np

# Scores are float64 sums of the same leaf values; only summation order may differ.
TOLERANCE = 1e-9
PROBE_ROWS = 512
ZERO_THRESHOLD = float(np.float32(1e-35))  # LightGBM's kZeroThreshold, a float


class CompileError(RuntimeError):
    """The model could not be compiled, or its compiled scores differ from LightGBM's."""


def private_dir(path: Path) -> bool:
    """True when ``path`` is a directory owned by this user that no one else may write to:
    the only kind of place native code is loaded from."""
    try:
        st = path.stat()
    except OSError:
        return False
    return (stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid()
            and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def cache_key(model_text: str) -> str:
    import llvmlite.binding as llvm  # noqa: PLC0415  (only a server that compiles pays for it)

    try:
        features = llvm.get_host_cpu_features().flatten()
    except RuntimeError:  # LLVM cannot detect them on some hosts
        features = ""
    parts = [model_text, metadata.version("lleaves"), metadata.version("llvmlite"),
             llvm.get_host_cpu_name(), features]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def probe_matrix(booster: lgb.Booster, rows: int = PROBE_ROWS, seed: int = 0) -> np.ndarray:
    """Rows whose values sit on both sides of every threshold the trees split on (and some
    missing values), so every branch is taken by some row."""
    rng = np.random.default_rng(seed)
    n = booster.num_feature()
    thresholds: list[list[float]] = [[] for _ in range(n)]
    stack = [t["tree_structure"] for t in booster.dump_model()["tree_info"]]
    while stack:
        node = stack.pop()
        if "split_feature" in node:
            t = node["threshold"]
            if isinstance(t, (int, float)):
                thresholds[node["split_feature"]].append(float(t))
            stack += [node["left_child"], node["right_child"]]
    x = np.empty((rows, n), dtype=np.float64)
    for j, ts in enumerate(thresholds):
        if ts:
            t = np.asarray(ts)[rng.integers(len(ts), size=rows)]
            x[:, j] = t + rng.choice([-1e-6, 0.0, 1e-6], size=rows) * np.maximum(1.0, abs(t))
        else:
            x[:, j] = rng.normal(size=rows)
    x[rng.random((rows, n)) < 0.03] = np.nan
    return x


def compile_booster(booster: lgb.Booster,
                    cache_dir: Path | None) -> tuple[Callable[[np.ndarray], np.ndarray], bool]:
    """A function scoring rows like ``booster.predict`` and whether it came from the cache.

    Raises CompileError when lleaves cannot compile the model or its scores differ.
    """
    try:
        import lleaves  # noqa: PLC0415
    except ImportError as e:
        raise CompileError(f"lleaves is not installed ({e})") from e
    text = booster.model_to_string()
    cache: Path | None = None
    if cache_dir is not None:
        try:
            cache_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError:
            pass  # an unwritable or bogus cache path: compile in memory (private_dir is False)
        if private_dir(cache_dir):
            cache = cache_dir / f"ranker-{cache_key(text)}.o"
    cached = cache is not None and cache.exists()
    with tempfile.TemporaryDirectory(prefix="shortlist-lleaves-") as tmp:
        model_file = Path(tmp) / "ranker.txt"
        model_file.write_text(text)
        # A fresh object goes to a private temporary file and is renamed into place only
        # once complete, so a concurrent server never loads half of one.
        target = cache if cached else (Path(tmp) / "ranker.o" if cache is not None else None)
        try:
            model = lleaves.Model(model_file=str(model_file))
            model.compile(cache=str(target) if target is not None else None)
        except Exception as e:  # noqa: BLE001  (LLVM reports failures as assorted errors)
            raise CompileError(f"lleaves could not compile the ranker: {e}") from e

        def predict(x: np.ndarray) -> np.ndarray:
            # LightGBM reads |value| <= 1e-35 as 0 (its rows are sparse); so must we.
            x = np.asarray(x, dtype=np.float64)
            tiny = np.abs(x) <= ZERO_THRESHOLD
            if tiny.any():
                x = np.where(tiny, 0.0, x)
            return model.predict(x, n_jobs=1)

        probe = probe_matrix(booster)
        diff = np.abs(predict(probe) - booster.predict(probe, num_threads=1))
        if not np.all(diff <= TOLERANCE):
            source = f" (cached object {cache})" if cached else ""
            raise CompileError(f"compiled scores differ from LightGBM's by up to "
                               f"{np.nanmax(diff)}{source}")
        if cache is not None and not cached and target is not None and target.exists():
            try:
                os.replace(target, cache)
            except OSError:
                pass  # the cache went away or read-only meanwhile: serve the compiled model
    return predict, cached
