"""The shared log of online writes: one Redis Stream that every retrieval replica tails.

With ``SHORTLIST_RETRIEVAL_STATE_BACKEND=redis`` a write (interaction, item upsert) is appended
here and acknowledged once Redis has answered; every replica, the writer's included, applies
the stream in order (``retrieval.shared``), and training folds it into the data
(``training.eventlog_data``). It plays the part of the embedded SQLite log
(``retrieval.eventlog``) and stores the same checked values (``eventlog.Entry``).

Durability is Redis's: the server must run with ``appendonly yes`` and ``appendfsync always``,
under which a command's reply is sent only after its AOF record is fsynced, so an acknowledged
write survives ``kill -9`` of Redis. ``durability()`` reports both settings; the retrieval
server refuses to start on a Redis that would acknowledge before syncing (a setting can waive
that for throwaway setups).

Ids. Each entry's id is the stream id Redis assigns ("<ms>-<n>"), strictly increasing in append
order; ``StreamId`` compares them numerically. "Everything after id X" misses nothing: Redis
appends under its single command thread and never inserts before the last id.

Compaction. The stream would grow with every write forever; ``shortlist-train compact-events``
moves the entries no serving version needs into files (``training.stream_archive``), records
how far in the marker key ``<stream>:archive``, and only then trims them (``XTRIM MINID``).
Training reads the archive and then the stream after the marker, so trimming loses nothing;
a replica whose version was trained before the marker refuses to start rather than replay a
stream with a hole in it.

Retried writes. A write may carry a client event id. The append and the record of that id are
one Lua script (Redis runs a script atomically, and with ``appendfsync always`` its effects
reach the AOF before the reply), so a retry of an acknowledged write returns the first write's
id instead of appending again, for ``dedup_ttl_s`` seconds after the first. (Redis-side
scripting; nothing is evaluated in this process.)
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from shortlist.common.eventid import StreamId
from shortlist.retrieval.eventlog import INTERACTIONS, Entry, Interaction, ItemRecord

STREAM = "shortlist:events"
DEDUP_TTL_S = 7 * 86400
PAGE = 1000

# KEYS[1] the stream, KEYS[2] the client event id's key ('' when none); ARGV[1] its ttl, the
# rest the entry's field/value pairs. Returns {id, 1} when appended, {first id, 0} for a retry.
_APPEND = """
if KEYS[2] ~= '' then
  local first = redis.call('GET', KEYS[2])
  if first then return {first, 0} end
end
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
if KEYS[2] ~= '' then redis.call('SET', KEYS[2], id, 'EX', ARGV[1]) end
return {id, 1}
"""


class StreamError(Exception):
    """Redis could not be reached or refused a command; for an append, the write was not
    acknowledged (it may or may not be in the stream: retry it with its client event id)."""




def _fields(entry: Entry) -> list[str]:
    if entry.table == INTERACTIONS:
        user_id, item_id, weight, timestamp, event = entry.values
        fields = ["t", "i", "u", user_id, "it", item_id, "w", repr(weight), "ts", str(timestamp)]
        # Only when typed: an untyped entry stays exactly what it was before types existed.
        return [*fields, "e", event] if event else fields
    item_id, title, categories, text = entry.values
    return ["t", "c", "it", item_id, "ti", title, "cat", categories, "tx", text]


def record_from_fields(entry_id: str, f: dict[str, str]) -> Interaction | ItemRecord:
    """The record of one stream entry; ``seq`` is the entry's id, ``received_at`` its time."""
    received_at = StreamId.parse(entry_id).ms / 1000
    if f["t"] == "i":
        return Interaction(entry_id, f["u"], f["it"], float(f["w"]), int(f["ts"]), received_at,
                           f.get("e", ""))
    return ItemRecord(entry_id, f["it"], f["ti"], json.loads(f["cat"]), f["tx"], received_at)


class StreamLog:
    """Append to and read the shared stream; see the module docstring. Thread-safe (redis-py's
    connection pool); ``timeout_s`` bounds every command but a blocking read's wait."""

    def __init__(self, url: str, stream: str = STREAM, dedup_ttl_s: int = DEDUP_TTL_S,
                 timeout_s: float = 1.0) -> None:
        import redis  # only this backend needs it

        self.url = url
        self.stream = stream
        self.dedup_ttl_s = int(dedup_ttl_s)
        self._errors = (redis.RedisError, OSError)
        self._redis = redis.Redis.from_url(
            url, decode_responses=True, socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s, health_check_interval=0)
        self._append = self._redis.register_script(_APPEND)

    @classmethod
    def from_source(cls, source: str, timeout_s: float = 30.0) -> StreamLog:
        """The stream a command line names: ``redis://HOST:PORT/DB[#STREAM]``."""
        url, _, stream = source.partition("#")
        return cls(url, stream or STREAM, timeout_s=timeout_s)

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except self._errors as exc:
            raise StreamError(f"redis at {self.where}: {what} failed: {exc}") from exc

    @property
    def where(self) -> str:
        """The server's address without credentials, for messages."""
        return self.url.split("@")[-1].split("://")[-1]

    def close(self) -> None:
        self._redis.close()

    # -- writes ----------------------------------------------------------------------------

    def append(self, entry: Entry, client_event_id: str = "") -> tuple[str, bool]:
        """Append ``entry`` (once per ``client_event_id``); (its id, whether it was appended
        now) once Redis has it durably. Raises StreamError: then it was not acknowledged."""
        dedup = f"{self.stream}:client:{client_event_id}" if client_event_id else ""
        entry_id, appended = self._call("append", self._append, keys=[self.stream, dedup],
                                        args=[self.dedup_ttl_s, *_fields(entry)])
        return entry_id, bool(appended)

    # -- reads -----------------------------------------------------------------------------

    def read(self, after: StreamId, count: int = PAGE,
             block_ms: int | None = None) -> list[tuple[StreamId, Interaction | ItemRecord]]:
        """Up to ``count`` entries after ``after``, in order; with ``block_ms``, waits that long
        for the first one (an empty list when none came)."""
        reply = self._call("read", self._redis.xread, {self.stream: str(after)}, count=count,
                           block=block_ms)
        if not reply:
            return []
        return [(StreamId.parse(i), record_from_fields(i, f)) for i, f in reply[0][1]]

    def entries(self, after: StreamId = StreamId.ZERO,
                through: StreamId | None = None) -> Iterator[tuple[StreamId, object]]:
        """Every entry after ``after`` (and up to ``through``), in order, paged."""
        for entry_id, f in self.raw_entries(after, through):
            yield entry_id, record_from_fields(str(entry_id), f)

    def raw_entries(self, after: StreamId = StreamId.ZERO, through: StreamId | None = None
                    ) -> Iterator[tuple[StreamId, dict[str, str]]]:
        """As ``entries``, but each entry's stored fields (what an archive keeps verbatim)."""
        while True:
            page = self._call("range", self._redis.xrange, self.stream, f"({after}",
                              str(through) if through is not None else "+", count=PAGE)
            for entry_id, f in page:
                yield StreamId.parse(entry_id), f
            if len(page) < PAGE:
                return
            after = StreamId.parse(page[-1][0])

    def archive_marker(self) -> dict[str, str] | None:
        """``{"archive": DIR, "through": ID}`` once entries through ID were moved to DIR and
        may be trimmed from the stream; None when nothing was ever archived."""
        raw = self._call("archive marker", self._redis.get, f"{self.stream}:archive")
        return json.loads(raw) if raw else None

    def set_archive_marker(self, archive: str, through: StreamId) -> None:
        self._call("archive marker", self._redis.set, f"{self.stream}:archive",
                   json.dumps({"archive": archive, "through": str(through)}))

    def trim_through(self, through: StreamId) -> int:
        """Drop every entry up to and including ``through``; how many were dropped."""
        minid = StreamId(through.ms, through.n + 1)
        return int(self._call("trim", self._redis.xtrim, self.stream, minid=str(minid),
                              approximate=False))

    def length(self) -> int:
        return int(self._call("length", self._redis.xlen, self.stream))

    def last_id(self) -> StreamId:
        """The id of the last entry ever appended (ZERO for a missing stream). Redis keeps it
        when a trim empties the stream, so "through the last id" stays exact after one."""
        if not self._call("last id", self._redis.exists, self.stream):
            return StreamId.ZERO
        info = self._call("last id", self._redis.xinfo_stream, self.stream)
        return StreamId.parse(info["last-generated-id"])

    def durability(self) -> dict[str, str]:
        """Redis's ``appendonly`` and ``appendfsync`` settings."""
        return {name: str(self._call("config", self._redis.config_get, name).get(name, ""))
                for name in ("appendonly", "appendfsync")}
