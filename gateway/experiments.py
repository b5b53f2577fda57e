"""Experiments: which variant serves a user, and what each variant changes.

A variant is an artifact version (the retrieval and ranking servers that serve it) plus the
serving settings that matter: ranking's order, the MMR trade-off, the candidate count and
business rules. Users are assigned by a stable hash of (salt, user id) over the variants'
shares, so a user keeps their variant across requests, gateways and restarts for as long as
the experiment's name, salt and shares stay the same; a new salt reshuffles everyone, which is
how one experiment's assignment is kept independent of the previous one's.

The running experiment is one immutable ``Plan``, replaced by a single reference assignment
(``Experiments.set``): a request reads the plan once and sees one consistent experiment.
``ExperimentFile`` keeps it across restarts and lets several gateways follow one file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import json_format

from shortlist.client.channel import channel_target
from shortlist.common.durable import replace_file
from shortlist.common.errors import InvalidArgument
from shortlist.common.rules import Rule, read_rules
from shortlist.v1 import common_pb2, experiment_pb2

logger = logging.getLogger(__name__)

DEFAULT = "default"  # the variant name of every request served with no experiment running
MAX_VARIANTS = 16
MAX_CANDIDATES = 10_000
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_ORDER = re.compile(r"ranker|retrieval|generator:[A-Za-z0-9_.-]{1,64}")


class InvalidExperiment(InvalidArgument):
    """An experiment that cannot run as written; the message names the field and why."""


@dataclass(frozen=True)
class Variant:
    """What one variant changes; empty fields keep the gateway's own settings."""

    name: str
    share: float = 1.0
    retrieval_target: str = ""
    ranking_target: str = ""
    version: str = ""
    order: str = ""
    mmr_lambda: float | None = None
    candidates: int = 0
    rules: tuple[Rule, ...] = ()
    # The same rules as messages, forwarded to ranking ahead of the request's own.
    rule_messages: tuple[common_pb2.Rule, ...] = ()
    interleave: bool = False
    arms: tuple[str, ...] = ()

    @property
    def own_upstream(self) -> bool:
        return bool(self.retrieval_target or self.ranking_target)


DEFAULT_VARIANT = Variant(DEFAULT)


def bucket(salt: str, user_id: str) -> float:
    """The user's point in [0, 1) for ``salt``: uniform, stable across processes and Python
    versions (a keyed hash, not ``hash()``, which is salted per process)."""
    digest = hashlib.blake2b(user_id.encode(), digest_size=8, key=salt.encode()[:64]).digest()
    return int.from_bytes(digest, "big") / 2.0 ** 64


@dataclass(frozen=True)
class Plan:
    """One running experiment (or none: ``Plan()`` serves everyone with ``DEFAULT_VARIANT``)."""

    name: str = ""
    salt: str = ""
    variants: tuple[Variant, ...] = ()
    shadow: Variant | None = None
    shadow_fraction: float = 1.0
    message: experiment_pb2.Experiment = field(default_factory=experiment_pb2.Experiment)
    set_at: str = ""
    # Upper bounds of each assigned variant's slice of [0, 1), in ``variants`` order.
    _bounds: tuple[tuple[float, Variant], ...] = ()

    @property
    def running(self) -> bool:
        return bool(self.variants)

    def assign(self, user_id: str) -> Variant:
        if not self._bounds:
            return DEFAULT_VARIANT
        point = bucket(self.salt, user_id)
        for upper, variant in self._bounds:
            if point < upper:
                return variant
        return self._bounds[-1][1]  # rounding at the top of the last slice

    def variant(self, name: str) -> Variant:
        """A variant by name (RecommendRequest.variant), or InvalidExperiment."""
        for v in self.variants:
            if v.name == name:
                return v
        known = ", ".join(v.name for v in self.variants) or "none: no experiment is running"
        raise InvalidExperiment(f"variant: no variant {name[:64]!r} (variants: {known})")

    def shadowed(self, request_id: str) -> bool:
        """Whether this request is shadowed: a hash of its id, so the sample is uniform and a
        retried request id is sampled the same way."""
        if self.shadow is None:
            return False
        return self.shadow_fraction >= 1.0 or bucket("shadow", request_id) < self.shadow_fraction

    def targets(self) -> set[tuple[str, str]]:
        """The (retrieval, ranking) upstream pairs this plan's variants use."""
        every = [*self.variants, *([self.shadow] if self.shadow else [])]
        return {(v.retrieval_target, v.ranking_target) for v in every if v.own_upstream}


def _check_name(what: str, value: str) -> str:
    if not _NAME.fullmatch(value):
        raise InvalidExperiment(f"{what}: {value[:80]!r} is not 1 to 64 of A-Z a-z 0-9 _ . -")
    return value


def _variant(msg: experiment_pb2.Variant, what: str, max_candidates: int) -> Variant:
    name = _check_name(f"{what}.name", msg.name)
    what = f"variant {name}"
    if not (math.isfinite(msg.share) and msg.share >= 0):
        raise InvalidExperiment(f"{what}: share must be a finite number >= 0, got {msg.share}")
    for target_name in ("retrieval_target", "ranking_target"):
        target = getattr(msg, target_name)
        try:
            channel_target(target)
        except ValueError as exc:
            raise InvalidExperiment(f"{what}: {target_name}: {exc}") from None
    if bool(msg.retrieval_target) != bool(msg.ranking_target):
        raise InvalidExperiment(f"{what}: retrieval_target and ranking_target go together "
                                "(a version's candidates are ranked by the same version)")
    if msg.version and not _NAME.fullmatch(msg.version):
        raise InvalidExperiment(f"{what}: version {msg.version[:80]!r} is not a version name")
    if msg.order and not _ORDER.fullmatch(msg.order):
        raise InvalidExperiment(f"{what}: order {msg.order[:80]!r} must be 'ranker', "
                                "'retrieval' or 'generator:NAME'")
    lam = msg.mmr_lambda if msg.HasField("mmr_lambda") else None
    if lam is not None and not (0.0 <= lam <= 1.0):
        raise InvalidExperiment(f"{what}: mmr_lambda must be in [0, 1], got {lam}")
    if not 0 <= msg.candidates <= max_candidates:
        raise InvalidExperiment(f"{what}: candidates must be in [0, {max_candidates}], got "
                                f"{msg.candidates}")
    try:
        rules = tuple(read_rules(msg.rules))
    except InvalidArgument as exc:
        raise InvalidExperiment(f"{what}: {exc}") from None
    interleave = msg.mode == experiment_pb2.Variant.INTERLEAVE
    if msg.mode not in (experiment_pb2.Variant.SERVE, experiment_pb2.Variant.INTERLEAVE):
        raise InvalidExperiment(f"{what}: unknown mode {msg.mode}")
    if interleave:
        changed = [f for f, v in (
            ("retrieval_target", msg.retrieval_target), ("version", msg.version),
            ("order", msg.order), ("candidates", msg.candidates), ("rules", len(msg.rules)),
            ("mmr_lambda", lam is not None)) if v]
        if changed:
            raise InvalidExperiment(f"{what}: an INTERLEAVE variant serves its arms' settings; "
                                    f"it cannot set {', '.join(changed)}")
        if len(msg.arms) != 2 or msg.arms[0] == msg.arms[1]:
            raise InvalidExperiment(f"{what}: INTERLEAVE needs two different arms, got "
                                    f"{list(msg.arms)[:4]}")
    elif msg.arms:
        raise InvalidExperiment(f"{what}: arms are for INTERLEAVE variants only")
    return Variant(name, float(msg.share), msg.retrieval_target, msg.ranking_target,
                   msg.version, msg.order, lam, int(msg.candidates), rules, tuple(msg.rules),
                   interleave, tuple(msg.arms))


def read_experiment(msg: experiment_pb2.Experiment, set_at: str = "",
                    max_candidates: int = MAX_CANDIDATES) -> Plan:
    """Check ``msg`` and build its plan; InvalidExperiment names the first problem. An
    experiment with no variants ends the experiment (``Plan()``)."""
    if not msg.variants:
        if msg.HasField("shadow"):
            raise InvalidExperiment("shadow: a shadow needs an experiment with variants")
        return Plan(set_at=set_at)
    name = _check_name("name", msg.name)
    if len(msg.variants) > MAX_VARIANTS:
        raise InvalidExperiment(f"at most {MAX_VARIANTS} variants, got {len(msg.variants)}")
    variants = tuple(_variant(v, f"variants[{i}]", max_candidates)
                     for i, v in enumerate(msg.variants))
    names = [v.name for v in variants]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise InvalidExperiment(f"variant {dup}: the name is used twice")
    by_name = {v.name: v for v in variants}
    for v in variants:
        for arm in v.arms:
            target = by_name.get(arm)
            if target is None or target.interleave:
                raise InvalidExperiment(f"variant {v.name}: arm {arm[:64]!r} must name a SERVE "
                                        "variant of this experiment")
    total = sum(v.share for v in variants)
    if total <= 0:
        raise InvalidExperiment("at least one variant needs a positive share")
    bounds, upper = [], 0.0
    for v in variants:
        if v.share > 0:
            upper += v.share / total
            bounds.append((upper, v))
    shadow = None
    if msg.HasField("shadow"):
        shadow = _variant(msg.shadow, "shadow", max_candidates)
        if shadow.interleave:
            raise InvalidExperiment("shadow: a shadow variant cannot interleave")
        if shadow.name in by_name:
            raise InvalidExperiment(f"shadow: the name {shadow.name} is a served variant's")
    fraction = msg.shadow_fraction or 1.0
    if not (0.0 < fraction <= 1.0):
        raise InvalidExperiment(f"shadow_fraction must be in (0, 1], got {msg.shadow_fraction}")
    copy = experiment_pb2.Experiment()
    copy.CopyFrom(msg)
    return Plan(name, msg.salt or name, variants, shadow, fraction, copy, set_at,
                tuple(bounds))


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class ExperimentFile:
    """The running experiment on disk (JSON, protobuf's own mapping): written atomically by
    SetExperiment, read at start, and polled, so every gateway sharing the file follows a
    change within ``poll_s`` and a restarted gateway resumes the same split."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def load(self) -> tuple[experiment_pb2.Experiment, str] | None:
        """(experiment, set_at), or None without a file; ValueError if it is malformed."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        try:
            body = json.loads(text)
            msg = json_format.ParseDict(body.get("experiment", {}),
                                        experiment_pb2.Experiment())
        except (ValueError, json_format.ParseError, AttributeError) as exc:
            raise ValueError(f"{self.path}: not an experiment file: {exc}") from None
        return msg, str(body.get("set_at", ""))

    def save(self, msg: experiment_pb2.Experiment, set_at: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = {"experiment": json_format.MessageToDict(msg), "set_at": set_at}
        replace_file(self.path, json.dumps(body, indent=1, sort_keys=True).encode())

    def stamp(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_size


class Experiments:
    """The gateway's running plan: read by requests, replaced by SetExperiment or a change of
    the experiment file. ``on_change`` (e.g. opening the variants' upstream channels) runs
    before a new plan is visible, so no request meets a variant whose channel is missing."""

    def __init__(self, file: ExperimentFile | None = None, poll_s: float = 2.0,
                 max_candidates: int = MAX_CANDIDATES,
                 on_change: Callable[[Plan], None] | None = None) -> None:
        self.plan = Plan()
        self._file = file
        self._poll_s = poll_s
        self._max_candidates = max_candidates
        self._on_change = on_change or (lambda plan: None)
        self._lock = threading.Lock()  # writers only; readers take ``plan`` as is
        self._stamp: tuple[int, int] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._bad_stamp: tuple[int, int] | None = None

    def start(self) -> None:
        """Load the file (a malformed one is logged and ignored: the gateway serves its own
        settings rather than not at all) and follow it."""
        if self._file is None:
            return
        self.reload()
        self._thread = threading.Thread(target=self._watch, name="experiment-file",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def set(self, msg: experiment_pb2.Experiment,
            check: Callable[[Plan], None] | None = None) -> Plan:
        """Check, persist and install ``msg``; InvalidExperiment (or what ``check`` raises)
        leaves the running plan as it was."""
        plan = read_experiment(msg, now_iso(), self._max_candidates)
        if check is not None:
            check(plan)
        with self._lock:
            self._install(plan)
            if self._file is not None:
                self._file.save(plan.message, plan.set_at)
                self._stamp = self._file.stamp()
        logger.info("experiment set", extra={"fields": self._describe(plan)})
        return plan

    def reload(self) -> None:
        """Install the file's experiment if the file changed since it was last read."""
        assert self._file is not None
        with self._lock:
            stamp = self._file.stamp()
            if stamp == self._stamp or (stamp is not None and stamp == self._bad_stamp):
                return
            try:
                loaded = self._file.load()
                plan = (Plan() if loaded is None
                        else read_experiment(loaded[0], loaded[1], self._max_candidates))
            except (ValueError, InvalidArgument) as exc:
                self._bad_stamp = stamp
                logger.error("experiment file ignored: the running experiment stays",
                             extra={"fields": {"path": str(self._file.path),
                                               "error": str(exc)}})
                return
            self._install(plan)
            self._stamp = stamp
        logger.info("experiment loaded", extra={"fields": self._describe(plan)})

    def _install(self, plan: Plan) -> None:
        self._on_change(plan)
        self.plan = plan  # one reference swap: requests see the old plan or the new one

    def _watch(self) -> None:
        while not self._stop.wait(self._poll_s):
            try:
                self.reload()
            except Exception:  # the watcher must outlive any one bad read
                logger.exception("experiment file watch failed")

    @staticmethod
    def _describe(plan: Plan) -> dict:
        return {"experiment": plan.name, "set_at": plan.set_at,
                "variants": {v.name: v.share for v in plan.variants},
                "shadow": plan.shadow.name if plan.shadow else ""}
