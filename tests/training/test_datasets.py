"""Dataset loaders: generic, MovieLens 100K (tiny fixture and real), bundled latest-small."""

from __future__ import annotations

import numpy as np
import pytest

from shortlist.training.datasets import DATASET_NAMES, DatasetError, load, resolve_path
from tests.conftest import shared_dataset


def write(path, text: str, encoding: str = "utf-8") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))


# ---------------------------------------------------------------- generic format

def test_generic_with_weight_and_timestamp(tmp_path):
    write(tmp_path / "interactions.csv",
          "user_id,item_id,weight,timestamp\n"
          "alice,x,2.5,100\n"
          "bob,y,,200\n"  # empty weight -> 1
          "alice,z,4,50.0\n")
    write(tmp_path / "items.csv",
          "item_id,title,categories,text\n"
          "x,Film X,Drama|Comedy,a long story\n"
          "y,,Horror,\n"  # empty title -> the id
          "z,Film Z,,\n"
          "w,Unused,Action,\n")
    ds = load(str(tmp_path))
    assert ds.name == tmp_path.name
    assert len(ds) == 3
    assert ds.user_ids.tolist() == ["alice", "bob", "alice"]
    assert ds.item_ids.tolist() == ["x", "y", "z"]
    np.testing.assert_array_equal(ds.weights, np.float32([2.5, 1.0, 4.0]))
    np.testing.assert_array_equal(ds.timestamps, [100, 200, 50])
    assert ds.weights.dtype == np.float32 and ds.timestamps.dtype == np.int64
    assert ds.has_timestamps
    assert ds.items.item_ids == ["x", "y", "z", "w"]
    assert ds.items.titles == ["Film X", "y", "Film Z", "Unused"]
    assert ds.items.categories == [["Drama", "Comedy"], ["Horror"], [], ["Action"]]
    assert ds.items.texts == ["a long story", "", "", ""]


def test_generic_without_weight_and_timestamp(tmp_path):
    write(tmp_path / "interactions.csv", "user_id,item_id\nu1,a\nu2,b\nu1,b\nu3,a\n")
    ds = load(str(tmp_path))
    np.testing.assert_array_equal(ds.weights, np.ones(4, np.float32))
    # no clock: nothing is assumed about time, not even that rows are in time order
    np.testing.assert_array_equal(ds.timestamps, [0, 0, 0, 0])
    assert not ds.has_timestamps
    # no items.csv: every interacted item gets a catalog row, in first-seen order
    assert ds.items.item_ids == ["a", "b"]
    assert ds.items.titles == ["a", "b"]
    assert ds.items.categories == [[], []]
    assert ds.items.texts == ["", ""]


def test_generic_weight_only(tmp_path):
    write(tmp_path / "interactions.csv", "user_id,item_id,weight\nu1,a,3\nu2,b,0.5\n")
    ds = load(str(tmp_path))
    np.testing.assert_array_equal(ds.weights, np.float32([3, 0.5]))
    np.testing.assert_array_equal(ds.timestamps, [0, 0])
    assert not ds.has_timestamps


def test_row_order_as_time_is_an_explicit_opt_in(tmp_path):
    write(tmp_path / "interactions.csv", "user_id,item_id\nu1,a\nu2,b\nu1,b\n")
    ds = load(str(tmp_path), row_order_time=True)
    np.testing.assert_array_equal(ds.timestamps, [0, 1, 2])
    assert ds.has_timestamps


def test_untimed_variant_drops_time_and_shuffles_rows(tmp_path):
    write(tmp_path / "interactions.csv",
          "user_id,item_id,weight,timestamp\n" + "".join(f"u{i % 7},i{i},{i % 5 + 1},{1000 + i}\n"
                                                        for i in range(60)))
    timed = load(str(tmp_path))
    ds = load(f"{tmp_path}~untimed")
    assert not ds.has_timestamps and (ds.timestamps == 0).all()
    assert ds.name.endswith("~untimed") and ds.fingerprint != timed.fingerprint
    pairs = sorted(zip(timed.user_ids.tolist(), timed.item_ids.tolist(), timed.weights.tolist(),
                       strict=True))
    assert sorted(zip(ds.user_ids.tolist(), ds.item_ids.tolist(), ds.weights.tolist(),
                      strict=True)) == pairs  # the same interactions, weights kept
    assert ds.user_ids.tolist() != timed.user_ids.tolist()  # in another order
    with pytest.raises(DatasetError, match="unknown dataset variant"):
        load(f"{tmp_path}~nope")


def test_generic_items_missing_from_items_csv_get_rows(tmp_path):
    write(tmp_path / "interactions.csv", "user_id,item_id\nu1,a\nu1,new2\nu2,new1\nu2,new2\n")
    write(tmp_path / "items.csv", "item_id,title,categories\na,Alpha,Cat\n")
    ds = load(str(tmp_path))
    assert ds.items.item_ids == ["a", "new2", "new1"]
    assert ds.items.titles == ["Alpha", "new2", "new1"]
    assert ds.items.categories == [["Cat"], [], []]
    assert ds.items.texts == ["", "", ""]  # items.csv without a text column


def test_generic_quoting_missing_values_and_extra_columns(tmp_path):
    write(tmp_path / "interactions.csv",
          "session,user_id,item_id,timestamp\n"
          's1,"smith, j",x,10\n'  # a quoted id holding the delimiter
          's2,007,"",\n'  # an id that looks numeric stays a string; empty timestamp: row
          's3,"smith, j",007,12.9\n')
    ds = load(str(tmp_path))
    assert ds.user_ids.tolist() == ["smith, j", "007", "smith, j"]
    assert ds.item_ids.tolist() == ["x", "", "007"]
    np.testing.assert_array_equal(ds.timestamps, [10, 1, 12])  # missing: the row number
    np.testing.assert_array_equal(ds.weights, np.ones(3, np.float32))
    assert ds.user_values == ["smith, j", "007"] and ds.user_codes.tolist() == [0, 1, 0]


def test_generic_bad_number_is_a_dataset_error(tmp_path):
    write(tmp_path / "interactions.csv", "user_id,item_id,weight\nu,i,lots\n")
    with pytest.raises(DatasetError, match="interactions.csv"):
        load(str(tmp_path))


def test_generic_bad_header_and_empty(tmp_path):
    write(tmp_path / "a" / "interactions.csv", "user,item\n1,2\n")
    with pytest.raises(DatasetError, match="user_id,item_id"):
        load(str(tmp_path / "a"))
    write(tmp_path / "b" / "interactions.csv", "user_id,item_id\n")
    with pytest.raises(DatasetError, match="no interactions"):
        load(str(tmp_path / "b"))
    (tmp_path / "c").mkdir()
    with pytest.raises(DatasetError, match="interactions.csv"):
        load(str(tmp_path / "c"))


# ---------------------------------------------------------------- MovieLens 100K

def ml100k_item(item: int, title: str, genres: set[int]) -> str:
    flags = "|".join("1" if g in genres else "0" for g in range(19))
    return f"{item}|{title}|01-Jan-1995||http://example.org/{item}|{flags}\n"


def test_ml100k_tiny_fixture(tmp_path):
    write(tmp_path / "u.data", "1\t10\t5\t881250949\n2\t10\t3\t891717742\n1\t20\t4\t878887116\n"
          "2\t30\t1\t880606923\n")
    header = "ID|MOVIE NAME (YEAR)|DOR|X|LINK|" + "|".join(f"G{g}" for g in range(19)) + "\n"
    write(tmp_path / "u.item",
          header
          + ml100k_item(10, "Toy Story (1995)", {3, 4, 5})  # Animation, Children, Comedy
          + ml100k_item(20, "Café Noir (1996)", {0, 10, 18})  # unknown, Film-Noir, Western
          + ml100k_item(40, "Unrated (1997)", set()),
          encoding="latin-1")
    ds = load(str(tmp_path))
    assert len(ds) == 4
    assert ds.user_ids.tolist() == ["1", "2", "1", "2"]
    assert ds.item_ids.tolist() == ["10", "10", "20", "30"]
    np.testing.assert_array_equal(ds.weights, np.float32([5, 3, 4, 1]))
    np.testing.assert_array_equal(ds.timestamps, [881250949, 891717742, 878887116, 880606923])
    # the header row is skipped; item 30 is not in u.item and gets a bare catalog row
    assert ds.items.item_ids == ["10", "20", "40", "30"]
    assert ds.items.titles == ["Toy Story (1995)", "Café Noir (1996)", "Unrated (1997)", "30"]
    assert ds.items.categories == [["Animation", "Children", "Comedy"],
                                   ["Film-Noir", "Western"], [], []]  # "unknown" is dropped


def test_ml100k_users_become_attributes_without_the_zip_code(tmp_path):
    write(tmp_path / "u.data", "1\t10\t5\t881250949\n2\t10\t3\t891717742\n")
    write(tmp_path / "u.user", "1|24|M|technician|85711\n2|53|F|other|94043\n")
    ds = load(str(tmp_path))
    assert ds.users.columns == ["age", "gender", "occupation"]
    assert ds.users.user_ids == ["1", "2"]
    assert ds.users.rows == [["24", "M", "technician"], ["53", "F", "other"]]
    without = tmp_path / "no-users"
    write(without / "u.data", "1\t10\t5\t881250949\n2\t10\t3\t891717742\n")
    bare = load(str(without))
    assert bare.users is None and bare.fingerprint != ds.fingerprint
    write(tmp_path / "u.user", "1|24|M\n")
    with pytest.raises(DatasetError, match=r"u.user, line 1: expected id\|age"):
        load(str(tmp_path))


def test_generic_users_csv(tmp_path):
    write(tmp_path / "interactions.csv", "user_id,item_id\na,x\nb,y\n")
    write(tmp_path / "users.csv", "user_id,age,country\na,31,FR\nb,,\nghost,40,DE\n")
    ds = load(str(tmp_path))
    assert ds.users.columns == ["age", "country"]
    assert ds.users.rows == [["31", "FR"], ["", ""], ["40", "DE"]]
    from shortlist.common.catalog import ItemCatalog
    from shortlist.training.split import encode, user_data

    catalog = ItemCatalog(ds.items.item_ids, ds.items.titles, ds.items.categories)
    users, ev = encode(ds, catalog.vocab)
    table = user_data(ds, users).attributes
    # aligned to the user vocabulary; "ghost" has no event but an index after those who do:
    # a known user with no history, whom their attributes speak for
    assert users.all_ids == ["a", "b", "ghost"] and set(ev.users.tolist()) == {0, 1}
    assert table.of(users.index("a")) == {"age": "31", "country": "FR"}
    assert table.of(users.index("b")) == {} and len(table) == 3
    assert table.of(users.index("ghost")) == {"age": "40", "country": "DE"}
    write(tmp_path / "users.csv", "user_id,age\na,31\na,32\n")
    with pytest.raises(DatasetError, match="line 3: user_id 'a' is listed twice"):
        load(str(tmp_path))
    write(tmp_path / "users.csv", "user_id\na\n")
    with pytest.raises(DatasetError, match="no attribute column"):
        load(str(tmp_path))
    write(tmp_path / "users.csv", "age\n31\n")
    with pytest.raises(DatasetError, match="user_id"):
        load(str(tmp_path))


def test_generic_social_csv(tmp_path):
    write(tmp_path / "interactions.csv", "user_id,item_id\na,x\nb,y\n")
    write(tmp_path / "social.csv", "user_id,friend_id,weight\na,b,2\nc,a,\na,b,1\n")
    ds = load(str(tmp_path))
    assert ds.social.user_ids == ["a", "c", "a"] and ds.social.weights == [2.0, 1.0, 1.0]
    from shortlist.common.catalog import ItemCatalog
    from shortlist.training.split import encode, user_data

    catalog = ItemCatalog(ds.items.item_ids, ds.items.titles, ds.items.categories)
    users, _ = encode(ds, catalog.vocab)
    friends = user_data(ds, users).friends.toarray()
    a, b, c = (users.index(x) for x in "abc")
    assert c == 2  # known by a tie only
    assert friends[a, b] == 3.0 and friends[c, a] == 1.0 and friends.sum() == 4.0
    for bad, message in (("a,a,1\n", "tied to itself"), ("a,b,-1\n", "positive number"),
                         ("a,b,x\n", r"column 3 \(weight\)"), (",b,1\n", "empty user_id")):
        write(tmp_path / "social.csv", "user_id,friend_id,weight\n" + bad)
        with pytest.raises(DatasetError, match=message):
            load(str(tmp_path))


def test_ml100k_real():
    path = shared_dataset("ml-100k")
    ds = load(str(path))
    assert ds.users.columns == ["age", "gender", "occupation"] and len(ds.users.rows) == 943
    assert len(ds) == 100_000
    assert len(np.unique(ds.user_ids)) == 943
    assert len(ds.items) == 1682
    toy = ds.items.item_ids.index("1")
    assert ds.items.titles[toy] == "Toy Story (1995)"
    assert ds.items.categories[toy] == ["Animation", "Children", "Comedy"]
    assert set(np.unique(ds.weights)) == {1, 2, 3, 4, 5}


# ---------------------------------------------------------------- MovieLens latest-small

def test_bundled_ml_latest_small(monkeypatch):
    monkeypatch.delenv("SHORTLIST_DATA_DIR", raising=False)
    ds = load("ml-latest-small")
    assert ds.name == "ml-latest-small"
    assert len(ds) == 100_836
    assert len(np.unique(ds.user_ids)) == 610
    assert len(ds.items) == 9742
    assert len(np.unique(ds.item_ids)) == 9724  # 18 catalog movies were never rated
    assert ds.has_timestamps
    toy = ds.items.item_ids.index("1")
    assert ds.items.titles[toy] == "Toy Story (1995)"
    assert ds.items.categories[toy] == ["Adventure", "Animation", "Children", "Comedy",
                                        "Fantasy"]
    assert "pixar" in ds.items.texts[toy].split()  # tags become item text
    assert sum(1 for t in ds.items.texts if t) > 1000
    # "(no genres listed)" becomes no categories
    assert not any("(no genres listed)" in c for c in ds.items.categories)
    assert any(c == [] for c in ds.items.categories)
    assert set(np.unique(ds.weights).tolist()) <= {x / 2 for x in range(1, 11)}


# ---------------------------------------------------------------- names and fingerprints

def test_unknown_dataset_name(monkeypatch):
    monkeypatch.delenv("SHORTLIST_DATA_DIR", raising=False)
    with pytest.raises(DatasetError) as err:
        load("no-such-dataset")
    message = str(err.value)
    assert "no-such-dataset" in message
    for name in DATASET_NAMES:
        assert name in message
    assert "SHORTLIST_DATA_DIR" in message


def test_data_dir_environment_variable(tmp_path, monkeypatch):
    write(tmp_path / "ml-100k" / "u.data", "1\t10\t5\t100\n")
    monkeypatch.setenv("SHORTLIST_DATA_DIR", f"{tmp_path / 'nowhere'}:{tmp_path}")
    assert resolve_path("ml-100k") == tmp_path / "ml-100k"
    assert len(load("ml-100k")) == 1


def test_fingerprint_stable_and_sensitive(tmp_path):
    write(tmp_path / "interactions.csv", "user_id,item_id\nu1,a\nu2,b\n")
    write(tmp_path / "items.csv", "item_id,title,categories\na,A,X\nb,B,Y\n")
    first = load(str(tmp_path)).fingerprint
    assert len(first) == 64
    assert load(str(tmp_path)).fingerprint == first

    write(tmp_path / "items.csv", "item_id,title,categories\na,A,X\nb,B,Z\n")
    changed_items = load(str(tmp_path)).fingerprint
    assert changed_items != first

    write(tmp_path / "interactions.csv", "user_id,item_id\nu1,a\nu2,a\n")
    assert load(str(tmp_path)).fingerprint not in (first, changed_items)

    # the same files somewhere else fingerprint the same
    copy = tmp_path / "copy"
    for name in ("interactions.csv", "items.csv"):
        write(copy / name, (tmp_path / name).read_text())
    assert load(str(copy)).fingerprint == load(str(tmp_path)).fingerprint


# ---------------------------------------------------------------- where a bad value is

def test_generic_bad_weight_names_file_line_column_and_value(tmp_path):
    write(tmp_path / "interactions.csv",
          "user_id,item_id,weight\nu1,a,1\nu2,b,2.5\nu3,c,lots\nu4,d,1\n")
    with pytest.raises(DatasetError) as err:
        load(str(tmp_path))
    assert str(err.value) == (f"{tmp_path / 'interactions.csv'}, line 4, column 3 (weight): "
                              "'lots' is not a number")


def test_generic_bad_timestamp_line_counts_the_header_and_multiline_records(tmp_path):
    write(tmp_path / "interactions.csv",
          "session,user_id,item_id,timestamp\n"
          's1,"two\nlines",x,10\n'  # one record on lines 2-3
          "\n"  # a blank line is still a line in an editor
          "s2,u,y,yesterday\n")  # line 5
    with pytest.raises(DatasetError) as err:
        load(str(tmp_path))
    assert str(err.value) == (f"{tmp_path / 'interactions.csv'}, line 5, column 4 "
                              "(timestamp): 'yesterday' is not unix seconds (a number)")


def test_generic_missing_and_extra_fields(tmp_path):
    write(tmp_path / "a" / "interactions.csv",
          "user_id,item_id,weight,timestamp\nu,i,1,100\nu,j,2\n")
    with pytest.raises(DatasetError) as err:
        load(str(tmp_path / "a"))
    assert str(err.value) == (f"{tmp_path / 'a' / 'interactions.csv'}, line 3, column 4 "
                              "(timestamp) is missing: the row has only 3 of 4 fields")
    write(tmp_path / "b" / "interactions.csv", "user_id,item_id\nu,i\nu,j\nsmith, j,k\n")
    with pytest.raises(DatasetError, match=r"interactions.csv, line 4: 3 fields where the "
                                           r"header has 2 \(column 3 and on are extra"):
        load(str(tmp_path / "b"))


def test_generic_missing_header_column_and_bad_utf8(tmp_path):
    write(tmp_path / "a" / "interactions.csv", "user_id,item,weight\nu,i,1\n")
    with pytest.raises(DatasetError) as err:
        load(str(tmp_path / "a"))
    assert str(err.value) == (f"{tmp_path / 'a' / 'interactions.csv'}, line 1 (the header): "
                              "no column item_id; it needs user_id,item_id and has "
                              "user_id,item,weight")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "interactions.csv").write_bytes(
        b"user_id,item_id\nu,i\nu,caf\xe9\n")  # latin-1, not UTF-8
    with pytest.raises(DatasetError, match=r"interactions.csv, line 3, column 2 \(item_id\): "
                                           r"'caf\ufffd' is not valid UTF-8"):
        load(str(tmp_path / "b"))


def test_generic_header_repeated_further_down(tmp_path):
    write(tmp_path / "interactions.csv",
          "user_id,item_id,weight\nu1,a,1\nu2,b,2\nuser_id,item_id,weight\nu3,c,1\n")
    with pytest.raises(DatasetError) as err:
        load(str(tmp_path))
    assert str(err.value) == (f"{tmp_path / 'interactions.csv'}, line 4, column 3 (weight): "
                              "'weight' is not a number")


def test_generic_bad_value_far_into_a_large_file(tmp_path):
    """pyarrow parses blocks in parallel and reports no row: the line is still exact."""
    rows = [f"user{n},item{n % 977},{n % 5 + 1},{1_600_000_000 + n}\n" for n in range(120_000)]
    rows[98_765] = "user98765,item1,2,soon\n"
    write(tmp_path / "interactions.csv", "user_id,item_id,weight,timestamp\n" + "".join(rows))
    with pytest.raises(DatasetError) as err:
        load(str(tmp_path))
    assert str(err.value) == (f"{tmp_path / 'interactions.csv'}, line 98767, column 4 "
                              "(timestamp): 'soon' is not unix seconds (a number)")


def test_generic_header_with_a_byte_order_mark(tmp_path):
    write(tmp_path / "interactions.csv", "\ufeffuser_id,item_id\nu1,a\n")
    assert load(str(tmp_path)).user_values == ["u1"]


def test_items_csv_without_item_id(tmp_path):
    write(tmp_path / "interactions.csv", "user_id,item_id\nu1,a\n")
    write(tmp_path / "items.csv", "id,title\na,A\n")
    with pytest.raises(DatasetError, match=r"items.csv, line 1 \(the header\): no column "
                                           "item_id"):
        load(str(tmp_path))


def test_movielens_latest_bad_values(tmp_path):
    movies = "movieId,title,genres\n10,A (1999),Drama\n"
    cases = {
        "1,10,4.0,100\n1,11,four,101\n": "line 3, column 3 (rating): 'four' is not a number",
        "1,10,4.0,100\n1,11,4.5\n": "line 3, column 4 (timestamp) is missing: the row has "
                                    "only 3 of 4 fields",
        "1,10,4.0,1.5e9\n": "line 2, column 4 (timestamp): '1.5e9' is not an integer",
    }
    for n, (ratings, expected) in enumerate(cases.items()):
        write(tmp_path / str(n) / "ratings.csv", "userId,movieId,rating,timestamp\n" + ratings)
        write(tmp_path / str(n) / "movies.csv", movies)
        with pytest.raises(DatasetError) as err:
            load(str(tmp_path / str(n)))
        assert str(err.value) == f"{tmp_path / str(n) / 'ratings.csv'}, {expected}"
    write(tmp_path / "m" / "ratings.csv", "userId,movieId,rating,timestamp\n1,10,4,100\n")
    write(tmp_path / "m" / "movies.csv", "movieId,name\n10,A\n")
    with pytest.raises(DatasetError, match=r"movies.csv, line 1 \(the header\): no column "
                                           "title, genres"):
        load(str(tmp_path / "m"))


def test_ml100k_bad_values(tmp_path):
    cases = {
        "1\t10\t5\t881250949\n2\t10\tx\t891717742\n": "line 2, column 3 (rating): 'x' is not "
                                                       "a number",
        "1\t10\t5\t881250949\n2\t10\t3\n": "line 2, column 4 (timestamp) is missing: the row "
                                           "has only 3 of 4 fields",
    }
    for n, (data, expected) in enumerate(cases.items()):
        write(tmp_path / str(n) / "u.data", data)
        with pytest.raises(DatasetError) as err:
            load(str(tmp_path / str(n)))
        assert str(err.value) == f"{tmp_path / str(n) / 'u.data'}, {expected}"


# ---------------------------------------------------------------- what was looked for

def test_a_missing_path_is_a_missing_directory(tmp_path, monkeypatch):
    with pytest.raises(DatasetError) as err:
        resolve_path("/nonexistent")
    assert str(err.value) == ("no such directory /nonexistent (--dataset takes a directory, "
                              "or one of the names ml-latest-small, ml-100k)")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetError, match=f"^no such directory {tmp_path / 'nope'} "):
        resolve_path("./nope")
    write(tmp_path / "file.csv", "x\n")
    with pytest.raises(DatasetError, match=f"^{tmp_path / 'file.csv'} is not a directory"):
        resolve_path(str(tmp_path / "file.csv"))


def test_a_missing_name_lists_every_place_searched(tmp_path, monkeypatch):
    from shortlist.training import datasets

    monkeypatch.setattr(datasets, "BUNDLED", tmp_path / "bundled")
    monkeypatch.setattr(datasets, "SHARED", tmp_path / "shared")
    monkeypatch.setenv("SHORTLIST_DATA_DIR", f"{tmp_path / 'one'}:{tmp_path / 'two'}")
    with pytest.raises(DatasetError) as err:
        resolve_path("ml-100k")
    assert str(err.value) == (
        f"dataset 'ml-100k' not found; looked for {tmp_path}/one/ml-100k ($SHORTLIST_DATA_DIR), "
        f"{tmp_path}/two/ml-100k ($SHORTLIST_DATA_DIR), {tmp_path}/bundled/ml-100k (bundled), "
        f"{tmp_path}/shared/ml-100k (shared). Put it in one of those, or point "
        "$SHORTLIST_DATA_DIR at a directory holding ml-100k/")
    monkeypatch.delenv("SHORTLIST_DATA_DIR")
    with pytest.raises(DatasetError) as err:
        resolve_path("my-data")
    assert str(err.value) == (
        "no dataset 'my-data': not a directory, and not a known name (ml-latest-small, "
        "ml-100k); known names are looked up in $SHORTLIST_DATA_DIR (not set), "
        f"{tmp_path}/bundled (bundled), {tmp_path}/shared (shared)")


# ---------------------------------------------------------------- event types

def test_generic_event_column_is_read_as_normalised_type_codes(tmp_path):
    write(tmp_path / "interactions.csv",
          "user_id,item_id,weight,timestamp,event\n"
          "alice,x,1,100,view\n"
          "bob,y,2,200, Purchase \n"  # case and surrounding blanks do not make another type
          "alice,z,1,300,\n"  # an empty cell names no type
          "carol,x,1,400,VIEW\n"
          "bob,x,5,500,dis_like.v2\n"
          "carol,y,1,600,purchase\n")
    ds = load(str(tmp_path))
    assert ds.event_codes.dtype == np.int16
    assert ds.event_names == ["view", "purchase", "", "dis_like.v2"]
    assert [ds.event_names[c] for c in ds.event_codes] == [
        "view", "purchase", "", "view", "dis_like.v2", "purchase"]
    # the other columns are read as without the event column
    np.testing.assert_array_equal(ds.weights, np.float32([1, 2, 1, 1, 5, 1]))
    np.testing.assert_array_equal(ds.timestamps, [100, 200, 300, 400, 500, 600])


def test_generic_event_column_without_a_named_type(tmp_path):
    write(tmp_path / "interactions.csv", "user_id,item_id,event\nu1,a,\nu2,b,\"\"\n")
    ds = load(str(tmp_path))
    assert ds.event_names == [""]
    np.testing.assert_array_equal(ds.event_codes, [0, 0])


def test_generic_malformed_event_type_names_file_line_column_and_value(tmp_path):
    write(tmp_path / "interactions.csv",
          "user_id,item_id,event\nu1,a,view\nu2,b,\"add to cart\"\nu3,c,view\n")
    with pytest.raises(DatasetError) as err:
        load(str(tmp_path))
    assert str(err.value).startswith(
        f"{tmp_path / 'interactions.csv'}, line 3, column 3 (event): 'add to cart' is not an "
        "event type (1-32 characters of a-z, 0-9")
    write(tmp_path / "interactions.csv", "event,user_id,item_id\nview,u1,a\n-x,u2,b\n")
    with pytest.raises(DatasetError, match=r"line 3, column 1 \(event\): '-x' is not"):
        load(str(tmp_path))
    write(tmp_path / "interactions.csv", f"user_id,item_id,event\nu1,a,{'v' * 33}\n")
    with pytest.raises(DatasetError, match="line 2, column 3"):
        load(str(tmp_path))


def test_generic_without_an_event_column_is_untyped_and_fingerprinted_as_before(tmp_path):
    import hashlib

    plain, typed = tmp_path / "plain", tmp_path / "typed"
    rows = ["u1,a,1,100", "u2,b,2,200", "u1,b,1,300"]
    write(plain / "interactions.csv", "user_id,item_id,weight,timestamp\n" + "\n".join(rows))
    write(typed / "interactions.csv", "user_id,item_id,weight,timestamp,event\n"
          + "\n".join(f"{r},view" for r in rows))
    ds, ts = load(str(plain)), load(str(typed))
    assert ds.event_codes is None and ds.event_names == []
    # the fingerprint is the files' own, computed as before types existed
    digest = hashlib.sha256()
    digest.update(b"interactions.csv")
    digest.update((plain / "interactions.csv").read_bytes())
    assert ds.fingerprint == digest.hexdigest()
    assert ts.fingerprint != ds.fingerprint
    for name in ("user_codes", "item_codes", "weights", "timestamps"):
        np.testing.assert_array_equal(getattr(ds, name), getattr(ts, name))
    assert load(f"{plain}~untimed").event_codes is None


def test_untimed_variant_keeps_each_row_with_its_event_type(tmp_path):
    lines = [f"u{k % 7},i{k},{k % 4 + 1},{1000 + k},{('view', 'purchase', 'skip')[k % 3]}"
             for k in range(40)]
    write(tmp_path / "interactions.csv",
          "user_id,item_id,weight,timestamp,event\n" + "\n".join(lines) + "\n")
    ds, shuffled = load(str(tmp_path)), load(f"{tmp_path}~untimed")

    def rows(d):
        return [(u, i, float(w), d.event_names[c]) for u, i, w, c in
                zip(d.user_ids, d.item_ids, d.weights, d.event_codes, strict=True)]

    assert rows(shuffled) != rows(ds)  # shuffled
    assert sorted(rows(shuffled)) == sorted(rows(ds))  # every row keeps its type
    assert shuffled.event_codes.dtype == np.int16


@pytest.mark.parametrize("scale", [1, 10**3, 10**6, 10**9])
def test_generic_timestamps_in_ms_us_or_ns_are_read_as_seconds(tmp_path, scale, caplog):
    """Event logs often write milliseconds; read as seconds, every window and decay would be
    1,000 times too short."""
    seconds = [1_700_000_000, 1_700_086_400, 1_600_000_000]
    write(tmp_path / "interactions.csv", "user_id,item_id,timestamp\n" + "".join(
        f"u{i},x{i},{t * scale + scale // 2}\n"  # half a second in: floored to its second
        for i, t in enumerate(seconds)))
    with caplog.at_level("WARNING"):
        ds = load(str(tmp_path))
    np.testing.assert_array_equal(ds.timestamps, seconds)
    assert ("converted to unix seconds" in caplog.text) == (scale > 1)


def test_seconds_far_in_the_past_or_future_stay_seconds():
    from shortlist.training.datasets import to_seconds

    stamps = np.array([-2_000_000_000, 0, 99_999_999_999])  # 1906 .. the year 5138
    out, unit = to_seconds(stamps)
    assert unit == 1 and out is stamps
    assert to_seconds(np.zeros(0, np.int64))[1] == 1
