"""import-dataset: a hand-made .deb in r-cran-lme4's layout (an R lazy-load database of
InstEval written in R's XDR serialisation) converts to the generic format, and loads."""

from __future__ import annotations

import gzip
import io
import lzma
import struct
import tarfile
import zlib

import numpy as np
import pytest

from shortlist.training.__main__ import main
from shortlist.training.datasets import DatasetError, load
from shortlist.training.registry_datasets import RReader, import_dataset, read_lazyload

# ---- a minimal writer of R's XDR serialisation (format 3), as R's serialize() lays it out --


def _int(n: int) -> bytes:
    return struct.pack(">i", n)


def _flags(kind: int, attr: bool = False, tag: bool = False, obj: bool = False,
           levels: int = 0) -> bytes:
    return _int(kind | obj << 8 | attr << 9 | tag << 10 | levels << 12)


def _char(s: str | None) -> bytes:
    if s is None:
        return _flags(9) + _int(-1)
    raw = s.encode()
    return _flags(9, levels=1 << 3) + _int(len(raw)) + raw  # UTF-8


def _attrs(attrs: dict[str, bytes]) -> bytes:
    out = b""
    for name, value in attrs.items():
        out += _flags(2, tag=True) + _flags(1) + _char(name) + value
    return out + _flags(254)


def _vector(kind: int, n: int, body: bytes, attrs: dict | None = None) -> bytes:
    obj = bool(attrs and "class" in attrs)
    return _flags(kind, attr=bool(attrs), obj=obj) + _int(n) + body + (
        _attrs(attrs) if attrs else b"")


def _strings(values, attrs=None) -> bytes:
    return _vector(16, len(values), b"".join(_char(v) for v in values), attrs)


def _ints(values, attrs=None, kind=13) -> bytes:
    return _vector(kind, len(values), b"".join(_int(v) for v in values), attrs)


def _list(items, attrs=None) -> bytes:
    return _vector(19, len(items), b"".join(items), attrs)


def _factor(labels: list[str | None]) -> bytes:
    levels = sorted({x for x in labels if x is not None}, key=int)
    codes = [-(1 << 31) if x is None else levels.index(x) + 1 for x in labels]
    return _ints(codes, {"levels": _strings(levels), "class": _strings(["factor"])})


def _frame(columns: dict[str, bytes], n: int) -> bytes:
    return _list(list(columns.values()), {
        "names": _strings(list(columns)), "class": _strings(["data.frame"]),
        "row.names": _ints([-(1 << 31), -n])})


def _stream(item: bytes) -> bytes:
    return b"X\n" + _int(3) + _int(0x040202) + _int(0x030500) + _int(5) + b"UTF-8" + item


def _lazyload(name: str, item: bytes, method: int) -> tuple[bytes, bytes]:
    """(.rdx, .rdb) holding one object, compressed as R does: 1 zlib, 3 xz with a type byte."""
    raw = _stream(item)
    body = zlib.compress(raw) if method == 1 else b"X" + lzma.compress(raw, lzma.FORMAT_XZ)
    rdb = b"\0" * 7 + struct.pack(">I", len(raw)) + body  # another object's bytes first
    key = _ints([7, len(rdb) - 7])
    index = _list([_list([key], {"names": _strings([name])}), _list([]),
                   _ints([method], kind=10 if method == 1 else 13)],
                  {"names": _strings(["variables", "references", "compressed"])})
    return gzip.compress(_stream(index)), rdb


def _ar_member(name: str, data: bytes) -> bytes:
    header = (f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}".encode()
              + b"`\n")
    return header + data + (b"\n" if len(data) % 2 else b"")


def _tar_xz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:xz") as tar:
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


# Students s rate lecturers d: s1 rated d10 twice (mean 4), s3's NA rating is dropped.
ROWS = [("1", "10", "2", 5), ("1", "10", "2", 3), ("1", "20", "6", 2), ("2", "10", "2", 4),
        ("2", "30", "6", 1), ("3", "20", "6", None), ("3", "30", "6", 5)]


def _insteval() -> bytes:
    s, d, dept, y = zip(*ROWS, strict=True)
    return _frame({"s": _factor(list(s)), "d": _factor(list(d)),
                   "service": _factor(["0", "1", "0", "0", "1", "0", "1"]),
                   "dept": _factor(list(dept)),
                   "y": _ints([-(1 << 31) if v is None else v for v in y])}, len(ROWS))


def _deb(path, method: int = 1):
    rdx, rdb = _lazyload("InstEval", _insteval(), method)
    base = "./usr/lib/R/site-library/lme4/"
    data = _tar_xz({base + "DESCRIPTION": b"Package: lme4\nVersion: 1.1-31\nLicense: GPL (>= 2)\n",
                    base + "data/Rdata.rdx": rdx, base + "data/Rdata.rdb": rdb,
                    "./usr/share/doc/r-cran-lme4/copyright": b"GPL\n"})
    path.write_bytes(b"!<arch>\n" + _ar_member("debian-binary", b"2.0\n")
                     + _ar_member("control.tar.xz", _tar_xz({"./control": b"Package: x\n"}))
                     + _ar_member("data.tar.xz", data))
    return path


@pytest.mark.parametrize("method", [1, 3])
def test_insteval_from_a_deb_loads_as_a_generic_dataset(tmp_path, method):
    stats = import_dataset("insteval", _deb(tmp_path / "r-cran-lme4.deb", method),
                           tmp_path / "insteval")
    assert stats == {"rows": 6, "interactions": 5, "users": 3, "items": 3}
    ds = load(str(tmp_path / "insteval"))
    assert not ds.has_timestamps and len(ds) == 5
    got = {(u, i): w for u, i, w in zip(ds.user_ids, ds.item_ids, ds.weights, strict=True)}
    assert got == {("1", "10"): 4.0, ("1", "20"): 2.0, ("2", "10"): 4.0, ("2", "30"): 1.0,
                   ("3", "30"): 5.0}
    cats = dict(zip(ds.items.item_ids, ds.items.categories, strict=True))
    assert cats == {"10": ["dept 2"], "20": ["dept 6"], "30": ["dept 6"]}
    source = (tmp_path / "insteval" / "SOURCE.txt").read_text()
    assert "lme4 1.1-31" in source and "GPL (>= 2)" in source


def test_insteval_from_an_rda_file(tmp_path):
    rda = tmp_path / "InstEval.rda"  # as in lme4's source: save(InstEval, file=...)
    top = _flags(2, tag=True) + _flags(1) + _char("InstEval") + _insteval() + _flags(254)
    rda.write_bytes(gzip.compress(b"RDX3\n" + _stream(top)))
    assert import_dataset("insteval", rda, tmp_path / "out")["interactions"] == 5
    assert len(load(str(tmp_path / "out"))) == 5


def test_the_command_writes_the_dataset(tmp_path, capsys):
    deb = _deb(tmp_path / "pkg.deb")
    assert main(["import-dataset", "insteval", "--from", str(deb),
                 "--out", str(tmp_path / "out")]) == 0
    assert "5 interactions, 3 users, 3 items" in capsys.readouterr().out
    assert main(["import-dataset", "insteval", "--from", str(tmp_path / "missing.deb"),
                 "--out", str(tmp_path / "o2")]) == 2
    assert "apt-get download r-cran-lme4" in capsys.readouterr().err


def test_values_come_back_and_code_is_refused():
    rdx, rdb = _lazyload("x", _strings(["a", None, "é"]), 1)
    assert read_lazyload(rdx, rdb, "x").value == ["a", None, "é"]
    with pytest.raises(DatasetError, match="no object 'y'.*holds x"):
        read_lazyload(rdx, rdb, "y")
    ints = RReader(_stream(_ints([1, -(1 << 31)]))).read()
    assert ints.kind == "integer" and np.array_equal(ints.value, [1, -(1 << 31)])
    # ALTREP vectors as R >= 3.5 writes them: a compact 3:6, and a wrapped c(7L, 8L)
    def altrep(cls: str, state: bytes) -> bytes:
        info = (_flags(2) + _flags(1) + _char(cls) + _flags(2) + _flags(1) + _char("base")
                + _flags(2) + _ints([13]) + _flags(254))
        return _flags(238) + info + state + _flags(254)

    seq = RReader(_stream(altrep("compact_intseq",
                                 _vector(14, 3, struct.pack(">3d", 4, 3, 1))))).read()
    assert seq.kind == "integer" and seq.value.tolist() == [3, 4, 5, 6]
    wrapped = altrep("wrap_integer", _flags(2) + _ints([7, 8]) + _ints([0, 0]))
    assert RReader(_stream(wrapped)).read().value.tolist() == [7, 8]
    closure = _flags(3) + _flags(254) + _flags(254) + _flags(254)
    with pytest.raises(DatasetError, match="closure"):
        RReader(_stream(closure)).read()
    with pytest.raises(DatasetError, match="environment"):
        RReader(_stream(_list([_flags(4) + _int(0)]))).read()


def test_not_a_deb_is_one_clear_error(tmp_path):
    bad = tmp_path / "x.deb"
    bad.write_bytes(b"hello")
    with pytest.raises(DatasetError, match="not a Debian package"):
        import_dataset("insteval", bad, tmp_path / "out")
