"""`shortlist-train` as a user meets it: the help, and one-line errors about datasets."""

from __future__ import annotations

import pytest

from shortlist.training.__main__ import main
from shortlist.training.datasets import DATASET_HELP


def help_of(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as done:
        main([*argv, "--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


def test_top_level_help_is_for_users(capsys):
    out = help_of(capsys)
    assert "register(subparsers)" not in out and "``" not in out
    for command in ("fit", "evaluate", "recommend", "synth"):
        assert f"\n  {command} " in out, f"{command} is not described"
    assert "$SHORTLIST_DATA_DIR" in out


def test_dataset_commands_explain_where_names_are_looked_up(capsys):
    assert "SHORTLIST_DATA_DIR" in DATASET_HELP
    for command in ("fit", "evaluate"):
        assert DATASET_HELP in help_of(capsys, command), command
    for command in ("synth", "recommend"):
        assert "SHORTLIST_DATA_DIR" not in help_of(capsys, command), command


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err.strip()


def test_fit_on_a_missing_directory(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["fit", "--dataset", "/nonexistent", "--out", str(tmp_path / "out")]) == 2
    assert one_line_error(capsys) == ("error: no such directory /nonexistent (--dataset takes "
                                      "a directory, or one of the names ml-latest-small, "
                                      "ml-100k)")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_evaluate_on_a_bad_csv_value(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    (data / "interactions.csv").write_text("user_id,item_id,weight\nu,i,1\nu,j,lots\n")
    assert main(["evaluate", "--dataset", str(data), "--quiet", "--no-tune"]) == 2
    assert one_line_error(capsys) == (f"error: {data / 'interactions.csv'}, line 3, column 3 "
                                      "(weight): 'lots' is not a number")
