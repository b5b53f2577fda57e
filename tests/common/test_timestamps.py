"""time_offsets: the times back exactly, in 4 bytes whenever they span less than 2**32."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from shortlist.common.timestamps import time_offsets

INT64 = st.integers(-(2**62), 2**62)


@given(st.lists(INT64, max_size=30), st.booleans())
def test_offsets_plus_base_are_the_times(values, narrow):
    times = np.array(values, dtype=np.int64)
    if narrow and len(times):  # within a uint32 of the earliest
        times = times.min() + (times - times.min()) % (2**32)
    offsets, base = time_offsets(times)
    np.testing.assert_array_equal(offsets + np.int64(base), times)
    span = int(times.max()) - int(times.min()) if len(times) else 0
    assert offsets.dtype == (np.uint32 if span < 2**32 else np.int64)
    assert base == (int(times.min()) if len(times) else 0)
