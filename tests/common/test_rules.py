import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shortlist.common.rules import (
    MAX_RULES,
    InvalidRule,
    Rule,
    check_rules,
    pins,
    place_pins,
    read_rules,
    score_rules,
)
from shortlist.v1 import common_pb2


@pytest.mark.parametrize("rule, why", [
    (Rule("BOOST", item_id="a", factor=0.5), "factor must be greater than 1"),
    (Rule("BURY", category="c", factor=float("nan")), "factor must be greater than 1"),
    (Rule("BOOST", item_id="a"), "factor must be greater than 1"),
    (Rule("PIN", item_id="a"), "position must be 1 to 1000"),
    (Rule("PIN", category="c", position=1), "a pin names one item"),
    (Rule("EXCLUDE", item_id="a", category="c"), "exactly one of item_id and category"),
    (Rule("EXCLUDE"), "exactly one of item_id and category"),
    (Rule("EXCLUDE", item_id="a", factor=2), "factor is for BOOST and BURY only"),
    (Rule("BOOST", item_id="a", factor=2, position=3), "position is for PIN only"),
    (Rule("", item_id="a"), "action must be one of"),
    (Rule("EXCLUDE", item_id="x" * 300), "at most 256 characters"),
])
def test_a_malformed_rule_is_refused_saying_which_and_why(rule, why):
    with pytest.raises(InvalidRule, match=why) as info:
        check_rules([Rule("EXCLUDE", item_id="ok"), rule])
    assert str(info.value).startswith("rule 2")
    assert info.value.status == "INVALID_ARGUMENT"


def test_contradicting_pins_and_a_pinned_exclusion_are_refused():
    with pytest.raises(InvalidRule, match="rule 1 pins the same position"):
        check_rules([Rule("PIN", item_id="a", position=1), Rule("PIN", item_id="b", position=1)])
    with pytest.raises(InvalidRule, match="rule 1 pins the same item"):
        check_rules([Rule("PIN", item_id="a", position=1), Rule("PIN", item_id="a", position=2)])
    with pytest.raises(InvalidRule, match="pins item 'a', which another rule excludes"):
        check_rules([Rule("PIN", item_id="a", position=1), Rule("EXCLUDE", item_id="a")])
    with pytest.raises(InvalidRule, match=f"at most {MAX_RULES} rules"):
        check_rules([Rule("EXCLUDE", item_id=str(i)) for i in range(MAX_RULES + 1)])


def test_rules_read_from_the_contract():
    msgs = [common_pb2.Rule(action=common_pb2.Rule.BOOST, category="Comedy", factor=2),
            common_pb2.Rule(action=common_pb2.Rule.PIN, item_id="i5", position=1)]
    assert read_rules(msgs) == [Rule("BOOST", category="Comedy", factor=2.0),
                                Rule("PIN", item_id="i5", position=1)]
    with pytest.raises(InvalidRule, match="action must be one of"):
        read_rules([common_pb2.Rule(item_id="i5")])  # ACTION_UNSPECIFIED


def test_boosts_add_log_odds_exclusions_drop_and_each_match_is_noted():
    rules = [Rule("BOOST", category="Comedy", factor=4), Rule("BURY", item_id="b", factor=2),
             Rule("EXCLUDE", category="Horror"), Rule("PIN", item_id="z", position=1)]
    scored = score_rules(rules, ["a", "b", "c"], [["Comedy"], ["Comedy", "Drama"], ["Horror"]])
    assert scored.keep.tolist() == [True, True, False]
    np.testing.assert_allclose(scored.shift, [math.log(4), math.log(4) - math.log(2), 0])
    assert scored.notes == [["boost category=Comedy x4"],
                            ["boost category=Comedy x4", "bury item=b x2"],
                            ["exclude category=Horror"]]
    assert [r.describe() for r in pins(rules)] == ["pin item=z at 1"]


def test_pins_land_where_asked_whether_present_or_not():
    assert place_pins(list("abcdef"), [("e", 1), ("z", 3)], 5) == list("eazbc")
    assert place_pins(list("ab"), [("z", 10)], 5) == list("abz")  # past the end: appended
    assert place_pins(list("abc"), [("c", 3)], 3) == list("abc")


@given(order=st.lists(st.integers(0, 50), unique=True, max_size=30),
       pinned=st.dictionaries(st.integers(0, 60), st.integers(1, 40), max_size=5),
       k=st.integers(1, 30))
def test_place_pins_keeps_every_pin_at_its_position_and_the_rest_in_order(order, pinned, k):
    positions = list(pinned.values())
    if len(set(positions)) != len(positions):
        return  # check_rules refuses two pins at one position
    out = place_pins(order, list(pinned.items()), k)
    assert len(out) == len(set(out)) <= k
    rest = [v for v in order if v not in pinned]
    # each pin at its position, or as near as the list's length allows
    for value, position in pinned.items():
        earlier = sum(p < position for p in pinned.values())
        expected = min(position - 1, len(rest) + earlier)
        if expected < k:
            assert out.index(value) == expected
        else:
            assert value not in out
    kept = [v for v in out if v not in pinned]
    assert kept == rest[:len(kept)]


def test_an_action_number_the_contract_does_not_name_is_refused():
    with pytest.raises(InvalidRule, match="rule 1 \\(action 99\\): action must be one of"):
        read_rules([common_pb2.Rule(action=99, item_id="i5")])
