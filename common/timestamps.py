"""Event times held compactly: offsets from the earliest, in 4 bytes when they fit.

Servers and fits hold one time per event (17.6M at 1M users): as unix seconds in int64 that is
140 MB per copy. Seconds after the data's earliest fit a uint32 for 136 years, which is any real
data; data spanning more (milliseconds over months, before the loader converted them) keeps 8.
"""

from __future__ import annotations

import numpy as np


def time_offsets(times: np.ndarray) -> tuple[np.ndarray, int]:
    """(times - base, base): base is the earliest time (0 when there is none), the offsets
    uint32 when they all fit, else int64. ``offsets + np.int64(base)`` gives the times back."""
    times = np.asarray(times, dtype=np.int64)
    if not len(times):
        return np.zeros(0, np.uint32), 0
    base = int(times.min())
    kind = np.uint32 if int(times.max()) - base <= np.iinfo(np.uint32).max else np.int64
    return (times - base).astype(kind, copy=False), base
