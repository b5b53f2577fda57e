"""Math-library thread limits: the one place they are set, first thing in each entry point.

OpenBLAS (behind numpy, scipy and implicit) reads ``OPENBLAS_NUM_THREADS`` once, when it loads
at numpy's first import, and starts a thread per core otherwise; setting the variable later
changes nothing. One thread is faster per request on a busy box (docs/performance.md), since
parallelism comes from concurrent requests. hnswlib, LightGBM and implicit get their thread
counts as explicit arguments, so nothing else is limited here.

This module imports only the standard library, so an entry point can import it, call
``limit_math_threads()``, and only then import what loads numpy. A value already in the
environment (the Makefile's, the image's, an operator's) is kept.
"""

from __future__ import annotations

import os
import sys

MATH_THREADS = {"OPENBLAS_NUM_THREADS": "1"}


def limit_math_threads() -> bool:
    """Set the limits unless the environment already has them; False when numpy had already
    loaded (too late for them to apply in this process)."""
    for name, value in MATH_THREADS.items():
        os.environ.setdefault(name, value)
    return "numpy" not in sys.modules


# Threads a fit uses where its work splits into independent parts: LightGBM's training, blocks
# of items' neighbour lists (``itemitem.pruned_each``) and users' candidates and features
# (``training.fit.build_examples``). Two: the cores of the machine class Shortlist is built
# for, where a fit runs alone. A constant, not the machine's core count, so that a fit gives
# the same artifact wherever it runs (LightGBM's sums are ordered per thread).
FIT_THREADS = 2
