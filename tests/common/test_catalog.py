"""ItemCatalog: category masks, upserts, JSON persistence."""

from __future__ import annotations

import json

import numpy as np
import pytest

from shortlist.common.catalog import ItemCatalog


@pytest.fixture()
def catalog() -> ItemCatalog:
    return ItemCatalog(
        ["m1", "m2", "m3", "m4"],
        ["Alien (1979)", "Annie Hall (1977)", "Aliens (1986)", "Untitled"],
        [["Horror", "Sci-Fi"], ["Comedy", "Romance"], ["Sci-Fi", "Action"], []],
    )


def test_basics(catalog):
    assert len(catalog) == 4
    assert catalog.vocab.index("m3") == 2
    assert catalog.category_vocab.all_ids == ["Action", "Comedy", "Horror", "Romance", "Sci-Fi"]


def test_category_matrix(catalog):
    m = catalog.category_matrix.toarray()
    assert m.shape == (4, 5)
    cols = {c: catalog.category_vocab.index(c) for c in catalog.category_vocab.all_ids}
    np.testing.assert_array_equal(m.sum(axis=1), [2, 2, 2, 0])
    assert m[0, cols["Horror"]] == m[0, cols["Sci-Fi"]] == m[2, cols["Action"]] == 1
    assert m[1, cols["Sci-Fi"]] == 0


@pytest.mark.parametrize(("names", "expected"), [
    (["Sci-Fi"], [True, False, True, False]),
    (["Comedy", "Action"], [False, True, True, False]),
    (["Horror", "Sci-Fi"], [True, False, True, False]),
    (["Western"], [False, False, False, False]),
    (["Western", "Romance"], [False, True, False, False]),
    ([], [False, False, False, False]),
    (["sci-fi"], [False, False, False, False]),  # names are case-sensitive
])
def test_category_mask(catalog, names, expected):
    mask = catalog.category_mask(names)
    assert mask.dtype == np.bool_
    np.testing.assert_array_equal(mask, expected)


def test_add_new_item_with_new_category(catalog):
    catalog.category_mask(["Sci-Fi"])  # build and cache the matrix first
    idx = catalog.add("m5", "Nosferatu (1922)", ["Horror", "Silent"])
    assert idx == 4 and len(catalog) == 5
    assert catalog.titles[4] == "Nosferatu (1922)"
    np.testing.assert_array_equal(catalog.category_mask(["Silent"]), [0, 0, 0, 0, 1])
    np.testing.assert_array_equal(catalog.category_mask(["Horror"]), [1, 0, 0, 0, 1])
    assert catalog.category_matrix.shape == (5, 6)


def test_add_existing_item_updates_it(catalog):
    catalog.category_mask(["Comedy"])
    idx = catalog.add("m2", "Annie Hall (Director's Cut)", ["Drama"])
    assert idx == 1 and len(catalog) == 4
    assert catalog.titles[1] == "Annie Hall (Director's Cut)"
    assert catalog.categories[1] == ["Drama"]
    np.testing.assert_array_equal(catalog.category_mask(["Comedy"]), [0, 0, 0, 0])
    np.testing.assert_array_equal(catalog.category_mask(["Drama"]), [0, 1, 0, 0])


def test_categories_are_copied(catalog):
    cats = ["Thriller"]
    catalog.add("m9", "Copy", cats)
    cats.append("Mutated")
    assert catalog.categories[-1] == ["Thriller"]


def test_save_load_round_trip(tmp_path, catalog):
    catalog.add("m5", "Nosferatu (1922)", ["Horror", "Silent"])
    path = tmp_path / "catalog.json"
    catalog.save(path)
    data = json.loads(path.read_text())
    assert set(data) == {"item_ids", "titles", "categories", "texts"}
    loaded = ItemCatalog.load(path)
    assert loaded.vocab.all_ids == catalog.vocab.all_ids
    assert loaded.titles == catalog.titles
    assert loaded.categories == catalog.categories
    for names in (["Silent"], ["Sci-Fi", "Comedy"], ["Horror"]):
        np.testing.assert_array_equal(loaded.category_mask(names), catalog.category_mask(names))


def test_empty_catalog():
    catalog = ItemCatalog([], [], [])
    assert len(catalog) == 0
    assert catalog.category_mask(["Any"]).shape == (0,)
    assert catalog.add("x", "X", ["New"]) == 0
    np.testing.assert_array_equal(catalog.category_mask(["New"]), [True])
