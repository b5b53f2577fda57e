"""Which artifact version to serve: a pin shared through the artifact root, and a hot-swap watcher.

Pinning writes ``<root>/CURRENT`` (JSON ``{"version": ..., "pinned_at": ...}``), so every server
sharing the root follows it; without a pin the newest published version is served. A server's
own ``*_VERSION`` setting (``pinned_version`` below) overrides the root's pin.

``VersionWatcher`` polls for the target version in a daemon thread; when it changes it verifies
and loads the new version with no lock that requests could wait on, then hands the loaded object
to ``on_swap``, which is expected to be a plain reference assignment. A version that fails is
logged once and not retried until its manifest changes; the old version keeps serving.
"""

from __future__ import annotations

import gc
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

from shortlist.common import artifacts, validation
from shortlist.common.artifacts import MANIFEST, ArtifactError
from shortlist.common.durable import fsync_dir, replace_file
from shortlist.common.errors import InvalidArgument

logger = logging.getLogger(__name__)

PIN_FILE = "CURRENT"

T = TypeVar("T")


def _check_name(version: str) -> str:
    """A version is a plain directory name under the root (``validation.check_version_name``:
    the same rule the admin RPCs apply), so a pin can never point outside the root."""
    try:
        return validation.check_version_name(version)
    except InvalidArgument:
        raise ArtifactError(f"invalid version name: {version!r}") from None


def pin(root: Path, version: str) -> None:
    """Pin ``version`` for every server sharing ``root``; raises ArtifactError if it is bad.

    The version must be published and pass ``artifacts.verify`` (the error names the bad file).
    The pin file is replaced atomically, so readers see the old pin or the new one, never half.
    """
    root = Path(root)
    path = root / _check_name(version)
    if not (path / MANIFEST).is_file():
        raise ArtifactError(f"{path}: version not found (no {MANIFEST})")
    artifacts.verify(path)
    body = {"version": version,
            "pinned_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    replace_file(root / PIN_FILE, json.dumps(body, indent=1, sort_keys=True).encode())


def unpin(root: Path) -> None:
    """Remove the pin (if any): servers follow the newest published version again."""
    root = Path(root)
    try:
        (root / PIN_FILE).unlink()
    except FileNotFoundError:
        return
    fsync_dir(root)


def pinned(root: Path) -> str | None:
    """The version pinned in ``root``, or None; raises ArtifactError if the pin file is bad."""
    path = Path(root) / PIN_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ArtifactError(f"{path}: unreadable pin file: {exc}") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ArtifactError(f"{path}: unreadable pin file: {exc}") from exc
    version = data.get("version") if isinstance(data, dict) else None
    if not isinstance(version, str) or not version:
        raise ArtifactError(f"{path}: pin file has no \"version\" string")
    try:
        return _check_name(version)
    except ArtifactError as exc:
        raise ArtifactError(f"{path}: {exc}") from None


def target_version(root: Path) -> Path:
    """The version directory to serve: the pinned one if any, else the newest published one.

    Like ``artifacts.resolve``, a ``root`` that is itself a version directory is returned as is.
    Raises ArtifactError when the pin file is bad, the pinned version is missing, or nothing is
    published.
    """
    root = Path(root)
    if (root / MANIFEST).is_file():
        return root
    version = pinned(root)
    if version is not None:
        path = root / version
        if not (path / MANIFEST).is_file():
            raise ArtifactError(f"{path}: pinned version not found (pin file {root / PIN_FILE})")
        return path
    versions = artifacts.list_versions(root)
    if not versions:
        raise ArtifactError(f"{root}: no published artifact version (run shortlist-train fit)")
    return versions[-1]


def describe_versions(root: Path, serving: str) -> list[dict[str, Any]]:
    """One dict per published version, oldest first, for an admin listing.

    Keys: ``version``, ``created_at`` (from the manifest; "" if absent or unreadable),
    ``serving`` (it is ``serving``), ``pinned`` (the root's pin file names it). A bad pin file
    counts as no pin.
    """
    root = Path(root)
    try:
        pin_version = pinned(root)
    except ArtifactError:
        pin_version = None
    rows = []
    for path in artifacts.list_versions(root):
        try:
            created_at = str(artifacts.read_manifest(path).data.get("created_at", ""))
        except ArtifactError:
            created_at = ""
        rows.append({
            "version": path.name,
            "created_at": created_at,
            "serving": path.name == serving,
            "pinned": path.name == pin_version,
        })
    return rows


def _signature(version_dir: Path) -> tuple[int, int] | None:
    """(mtime_ns, size) of the manifest: a refused version is retried only when it changes."""
    try:
        st = (version_dir / MANIFEST).stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


class VersionWatcher(Generic[T]):
    """Follow the target version of an artifact root and hot-swap to it.

    ``load(dir)`` builds the served object from a verified version directory (it may be slow;
    no lock the request path could wait on is held meanwhile). ``on_swap(obj, version)`` installs
    it, typically ``service.model = obj``: requests keep using whichever object they grabbed.

    Polls run in a daemon thread (``start``/``stop``) every ``interval_s`` seconds, or
    synchronously via ``check_now``; polls are serialised with each other only. A non-empty
    ``pinned_version`` (the server's own setting) overrides the root's pin file.

    A failing version (bad checksum, load or on_swap error) is logged once as an error naming
    the version and the cause, recorded in ``last_error``, and not retried while its manifest's
    mtime and size stay the same (``check_now(force=True)`` retries it anyway); the previous
    version keeps serving and a newer version is still picked up. Nothing raised by a poll
    escapes the thread.
    """

    def __init__(self, root: Path, load: Callable[[Path], T], on_swap: Callable[[T, str], None],
                 interval_s: float = 1.0, pinned_version: str = "") -> None:
        self._root = Path(root)
        self._load = load
        self._on_swap = on_swap
        self._interval = max(float(interval_s), 0.001)
        self._pinned_version = pinned_version
        self._serving = ""
        self._serving_dir: Path | None = None
        self._last_error: str | None = None
        self._resolve_error: str | None = None
        self._failed: dict[Path, tuple[int, int] | None] = {}
        self._poll_lock = threading.Lock()  # pollers only; never taken on the request path
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def serving(self) -> str:
        """The version currently installed through ``on_swap`` ("" before the first load)."""
        return self._serving

    @property
    def last_error(self) -> str | None:
        """Why the target version is not serving, or None when it is."""
        return self._last_error

    @property
    def root(self) -> Path:
        return self._root

    def target(self) -> Path:
        """The version directory this watcher wants to serve; raises ArtifactError."""
        if self._pinned_version:
            return artifacts.resolve(self._root, self._pinned_version)
        return target_version(self._root)

    def check_now(self, force: bool = False) -> bool:
        """Run one poll synchronously; True if it swapped to a new version. Does not raise
        for a bad version (see ``last_error``). ``force`` retries a previously refused one."""
        with self._poll_lock:
            return self._poll(force)

    def start(self) -> None:
        """Start the polling thread (the first poll runs at once); no-op if already running."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(self._stop,),
                                        name="version-watcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop the polling thread, waiting up to ``timeout`` for a load in progress."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.check_now()
            except BaseException:  # never let the thread die, whatever load() did
                logger.exception("version watcher poll failed under %s", self._root)
            stop.wait(self._interval)

    def _poll(self, force: bool) -> bool:
        try:
            target = self.target()
        except Exception as exc:
            message = f"no version to serve under {self._root}: {exc}"
            self._last_error = message
            if message != self._resolve_error:  # log each distinct problem once
                self._resolve_error = message
                logger.error("%s; still serving %s", message, self._serving or "nothing",
                             extra={"fields": {"serving": self._serving, "error": str(exc)}})
            return False
        self._resolve_error = None
        if target == self._serving_dir:
            self._last_error = None
            return False
        version = target.name
        signature = _signature(target)
        if not force and target in self._failed and self._failed[target] == signature:
            return False  # already refused and logged; unchanged since
        start = time.perf_counter()
        try:
            manifest = artifacts.verify(target)
            if target == self._root:  # the root is itself a version directory
                version = manifest.version
            obj = self._load(target)
            self._on_swap(obj, version)
        except Exception as exc:
            self._failed = {p: s for p, s in self._failed.items() if p.is_dir()}
            self._failed[target] = signature
            self._last_error = f"{version}: {exc}"
            logger.error(
                "artifact version %s refused, still serving %s: %s: %s",
                version, self._serving or "nothing", type(exc).__name__, exc,
                extra={"fields": {"version": version, "serving": self._serving,
                                  "error": str(exc)}})
            return False
        # The models are long-lived: millions of objects the cyclic collector would otherwise
        # walk on every full collection, pausing every request thread for tens of ms (the p99
        # at scale). Freezing moves them out of its reach; refcounting still frees them.
        gc.collect()
        gc.freeze()
        previous = self._serving
        self._failed.pop(target, None)
        self._serving_dir = target
        self._serving = version
        self._last_error = None
        logger.info("artifact version %s now serving (was %s)", version, previous or "nothing",
                    extra={"fields": {"version": version, "previous": previous,
                                      "seconds": round(time.perf_counter() - start, 2)}})
        return True
