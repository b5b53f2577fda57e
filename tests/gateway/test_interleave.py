"""Team-draft interleaving's invariants, for any two lists."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from shortlist.gateway.interleave import team_draft

ids = st.lists(st.sampled_from([f"i{n}" for n in range(30)]), unique=True, max_size=20)


@given(a=ids, b=ids, k=st.integers(0, 25), seed=st.text(max_size=8))
def test_team_draft_invariants(a, b, k, seed):
    out = team_draft(a, b, k, seed)
    items = [item for item, _ in out]
    assert len(items) == len(set(items)) == min(k, len(set(a) | set(b)))
    for arm, source in ((0, a), (1, b)):
        mine = [item for item, team in out if team == arm]
        assert all(item in source for item in mine)
        assert mine == sorted(mine, key=source.index)  # each arm's own order is kept
    # while both arms still have items to give, neither gets two picks ahead
    counts = [0, 0]
    for n, (_item, arm) in enumerate(out):
        counts[arm] += 1
        rest = set(items[:n + 1])
        both_left = any(x not in rest for x in a) and any(x not in rest for x in b)
        if both_left:
            assert abs(counts[0] - counts[1]) <= 1
    assert team_draft(a, b, k, seed) == out  # reproducible from the seed


def test_each_arm_leads_about_half_of_the_time():
    a, b = [f"a{n}" for n in range(10)], [f"b{n}" for n in range(10)]
    firsts = [team_draft(a, b, 10, f"r{n}")[0][1] for n in range(2000)]
    assert 0.45 < sum(firsts) / 2000 < 0.55


def test_identical_lists_interleave_to_the_same_list():
    a = [f"i{n}" for n in range(10)]
    assert [item for item, _ in team_draft(a, a, 10, "x")] == a
