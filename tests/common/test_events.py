import numpy as np
import pytest

from shortlist.common.events import STANDARD, UNTYPED, EventTypes, UnknownEventType


def test_the_standard_table_knows_the_common_types_and_the_untyped_event_counts_one():
    table = EventTypes.standard()
    assert table.weight(UNTYPED) == 1.0
    for name, weight in STANDARD.items():
        assert table.weight(name) == weight
    assert table.weight(" Dislike ") == STANDARD["dislike"]  # case and blanks do not matter


def test_types_the_data_uses_join_as_positive_and_configured_weights_win():
    table = EventTypes.standard({"purchase": 8, "wishlist": 3}, seen=["share", "view"])
    assert table.weight("share") == 1.0
    assert table.weight("purchase") == 8.0 and table.weight("wishlist") == 3.0
    # codes of the standard part do not depend on what the data adds
    assert table.names[:len(STANDARD) + 1] == EventTypes.standard().names


def test_an_unknown_or_malformed_type_is_refused_naming_the_known_ones():
    table = EventTypes.standard()
    with pytest.raises(UnknownEventType, match="unknown event type 'teleport'.*dislike"):
        table.code("teleport")
    with pytest.raises(UnknownEventType, match="not a name"):
        table.code("a b")
    with pytest.raises(UnknownEventType, match="not a name"):
        EventTypes.standard(seen=["x" * 33])


def test_apply_multiplies_each_event_by_its_type_and_negative_marks_the_dislikes():
    table = EventTypes.standard()
    codes = table.codes(["view", "purchase", "dislike", ""])
    signed = table.apply(np.array([2, 1, 1, 5], np.float32), codes)
    assert signed.tolist() == [2.0, 4.0, -2.0, 5.0]
    assert table.negative(codes).tolist() == [False, False, True, False]


def test_replace_keeps_codes_and_a_table_round_trips_through_json():
    table = EventTypes.standard(seen=["share"])
    tuned = table.replace(purchase=1.0, share=0.25)
    assert tuned.names == table.names
    assert tuned.weight("purchase") == 1.0 and tuned.weight("share") == 0.25
    assert EventTypes.from_json(tuned.to_json()) == tuned
    assert EventTypes.from_json(None) == EventTypes.standard()  # an artifact from before types
