"""The versioned leaderboard store.

Layout (one directory per entry = model × attack suite × ε under one protocol version)::

    leaderboards/<protocol>/<entry>/r0001.json          the entry, revision 1 (pretty JSON, sorted keys)
    leaderboards/<protocol>/<entry>/r0001/<dataset>.json         copies of the runner's result records
    leaderboards/<protocol>/<entry>/r0001/<dataset>.flags.npz    and their per-sample flags
    leaderboards/<protocol>/<entry>/r0002.json          a later measurement: a new revision, r0001 untouched

Entry slugs: ``<model-slug>__<suite>__eps<k>__v<protocol version>`` for measured entries and
``reported__<method>__<suite>__eps<k>__<source>__v<protocol version>`` for published numbers.

Files are written once and never edited: a revision's files are complete before its ``rNNNN.json`` appears
(written last, atomically; if it cannot be written the revision's folder is removed again, so both appear or
neither, see ``zsrbench.leaderboard.atomic``), each revision carries the sha256 of the previous one, and a
``digest`` of its own content, so edits after the fact are detected by ``zsrbench validate``. Revision numbers
are taken under an exclusive lock on the entry's directory (``fcntl.flock``; an ``O_CREAT|O_EXCL`` lock file
where fcntl is missing), so concurrent writers never lose a revision.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from pydantic import ValidationError

import zsrbench
from zsrbench.errors import ZsrError
from zsrbench.leaderboard import atomic
from zsrbench.leaderboard.migrate import migrate
from zsrbench.leaderboard.records import (
    eps_dir, flags_from_bytes, metrics_from_flags, parse_record, slug, validation_message,
)
from zsrbench.leaderboard.schema import (
    AttackConfig, DatasetMeasurement, EntryModel, EntryProtocol, FileRef, LeaderboardEntry, MeasuredData, PreviousRevision, ResultRecord,
)

REV_FILE_RE = re.compile(r"^r(\d{4,})\.json$")
REV_DIR_RE = re.compile(r"^r(\d{4,})$")
METRIC_TOL = 1e-9


# ---------------------------------------------------------------------------------------------------- names
def rev_name(n: int) -> str:
    return f"r{n:04d}"


def eps_part(eps_text: str | None) -> str:
    return eps_dir(eps_text) if eps_text else "clean"


def measured_slug(model_id: str, suite: str, eps_text: str, protocol_version: int, subset: str | None = None) -> str:
    tail = f"__{slug(subset)}" if subset else ""
    return f"{slug(model_id)}__{slug(suite)}__{eps_part(eps_text)}__v{protocol_version}{tail}"


def reported_slug(method: str, suite: str, eps_text: str | None, source_id: str, protocol_version: int) -> str:
    method = method.replace("β", "beta").replace(" = ", "").replace("=", "")
    return f"reported__{slug(method)}__{slug(suite)}__{eps_part(eps_text)}__{slug(source_id)}__v{protocol_version}"


def now_utc() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def sha256_hex(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


# ---------------------------------------------------------------------------------------------------- JSON
def content_digest(data: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of ``data`` without its ``digest`` field."""
    body = {k: v for k, v in data.items() if k != "digest"}
    blob = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return "sha256:" + hashlib.sha256(blob).hexdigest()


def with_digest(entry: LeaderboardEntry) -> LeaderboardEntry:
    data = entry.model_dump(mode="json")
    return entry.model_copy(update={"digest": content_digest(data)})


def entry_json(entry: LeaderboardEntry) -> str:
    """Pretty JSON, readable in a diff: fields in schema order (stable), datasets in the protocol's column order."""
    return json.dumps(entry.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"


def parse_entry(data: Any, path: str | Path = "<entry>", *, check_location: bool = True) -> LeaderboardEntry:
    """A parsed entry file, migrated and validated; its digest and its place in the store are checked."""
    path = Path(path)
    try:
        version_data = migrate(data, "entry")
    except ZsrError as exc:
        raise ZsrError(f"{path}: {exc}") from exc
    try:
        entry = LeaderboardEntry.model_validate(version_data)
    except ValidationError as exc:
        raise ZsrError(f"{path}: invalid leaderboard entry: {validation_message(exc)}.") from exc
    if isinstance(data, dict) and data.get("schema_version") == entry.schema_version:
        digest = content_digest(data)
        if data.get("digest") != digest:
            raise ZsrError(
                f"{path}: content does not match its digest: the file was edited after it was written. Entries "
                "are immutable; restore it from version control and record a change as a new revision."
            )
    if check_location:
        m = REV_FILE_RE.match(path.name)
        if m and int(m.group(1)) != entry.revision:
            raise ZsrError(f"{path}: says revision {entry.revision} but is named {path.name}.")
        if m and path.parent.name != entry.entry:
            raise ZsrError(f"{path}: belongs to entry '{entry.entry}' but lies in directory '{path.parent.name}'.")
        if m and path.parent.parent.name != entry.protocol.name:
            raise ZsrError(
                f"{path}: is an entry of protocol '{entry.protocol.name}' but lies under '{path.parent.parent.name}/'."
            )
    return entry


def read_entry(path: str | Path, *, check_location: bool = True) -> LeaderboardEntry:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ZsrError(f"{path}: not a readable JSON leaderboard entry ({exc}).") from exc
    return parse_entry(data, path, check_location=check_location)


# ---------------------------------------------------------------------------------------------------- layout
def revision_files(entry_dir: Path) -> list[tuple[int, Path]]:
    out = []
    if entry_dir.is_dir():
        for p in entry_dir.iterdir():
            m = REV_FILE_RE.match(p.name)
            if m and p.is_file():
                out.append((int(m.group(1)), p))
    return sorted(out)


def _taken_numbers(entry_dir: Path) -> list[int]:
    nums = [n for n, _ in revision_files(entry_dir)]
    for p in entry_dir.iterdir():
        m = REV_DIR_RE.match(p.name)
        if m and p.is_dir():
            nums.append(int(m.group(1)))
    return nums


def entry_dirs(root: str | Path, protocol: str | None = None) -> list[Path]:
    """Directories holding at least one revision file, under ``root/<protocol>/``."""
    root = Path(root)
    protos = [root / protocol] if protocol else sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    out = []
    for pd in protos:
        if not pd.is_dir():
            continue
        for ed in sorted(pd.iterdir()):
            if ed.is_dir() and not ed.name.startswith(".") and revision_files(ed):
                out.append(ed)
    return out


@contextlib.contextmanager
def locked(directory: Path, timeout: float = 120.0) -> Iterator[None]:
    """An exclusive lock on ``directory`` (held while a revision number is taken and its files written)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        fcntl = None  # type: ignore[assignment]
    if fcntl is not None:
        try:
            fd = os.open(directory, os.O_RDONLY)
        except OSError as exc:
            raise write_failed(directory, exc) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
        return
    lock = directory / ".lock"  # pragma: no cover - Windows
    deadline = time.monotonic() + timeout
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            os.close(fd)
            break
        except FileExistsError:
            if time.monotonic() > deadline:
                raise ZsrError(f"{lock} has been held for {timeout:.0f} s; if no zsrbench is writing, delete it.")
            time.sleep(0.05)
    try:
        yield
    finally:
        os.unlink(lock)


LEADERBOARD_KEPT = "Nothing of this revision was written: its entry is as it was"


def write_failed(path: Path, exc: OSError) -> ZsrError:
    """The :class:`ZsrError` for a leaderboard write that failed (and was cleaned up)."""
    return atomic.user_error(path, exc, kept=LEADERBOARD_KEPT, option="--leaderboard-dir")


def _write_revision(entry_dir: Path, entry: LeaderboardEntry, files: dict[str, bytes]) -> Path:
    """Write the revision's files (into ``rNNNN/``) and then its entry file; both appear or neither (an OSError
    becomes a :class:`ZsrError`). Caller holds the lock."""
    rev = rev_name(entry.revision)
    path = entry_dir / f"{rev}.json"
    if path.exists() or (files and (entry_dir / rev).exists()):  # pragma: no cover - guarded by the lock
        raise ZsrError(f"{path} already exists; entries are never overwritten.")
    try:
        atomic.write_revision(entry_dir / rev, files, path, entry_json(with_digest(entry)).encode())
    except OSError as exc:
        raise write_failed(path, exc) from exc
    return path


@contextlib.contextmanager
def writing_entry(edir: Path) -> Iterator[None]:
    """Create the entry directory ``edir`` if needed and hold its lock; the folders made here are removed again
    when the block fails (a failed first revision leaves no empty entry directory behind)."""
    try:
        created = atomic.make_dirs(edir)
    except OSError as exc:
        raise write_failed(edir, exc) from exc
    try:
        with locked(edir):
            yield
    except BaseException:
        atomic.remove_empty(created)
        raise


@dataclass
class Previous:
    number: int  # of the newest revision file (0: none)
    path: Path | None
    entry: LeaderboardEntry | None  # the newest *valid* revision
    note: str | None = None  # why the newest file could not be used

    def ref(self) -> PreviousRevision | None:
        if self.path is None:
            return None
        return PreviousRevision(revision=self.number, file=self.path.name, sha256=sha256_hex(self.path.read_bytes()))


def _previous(entry_dir: Path) -> Previous:
    revs = revision_files(entry_dir)
    if not revs:
        return Previous(0, None, None)
    n, path = revs[-1]
    note = None
    for k, p in reversed(revs):
        try:
            return Previous(n, path, read_entry(p), note)
        except ZsrError as exc:
            note = note or f"{rev_name(k)} is invalid ({exc}); compared with the newest valid revision"
    return Previous(n, path, None, "no valid previous revision")


# ---------------------------------------------------------------------------------------------------- measured
def check_flags(record: ResultRecord, flags: dict[str, np.ndarray]) -> list[str]:
    """Reasons the per-sample flags do not back the record's numbers (empty when they do)."""
    attacks = [a.name for a in record.protocol.attacks]
    need = ["labels", "clean_pred", "clean_correct", "robust", *[f"robust__{a}" for a in attacks]]
    missing = [k for k in need if k not in flags]
    if missing:
        return [f"flags lack the arrays {', '.join(missing)}"]
    n = int(flags["labels"].shape[0])
    bad = [k for k in need if flags[k].shape != (n,)]
    if bad:
        return [f"flags arrays {', '.join(bad)} do not all have shape ({n},)"]
    out = []
    m = record.metrics
    if n != m.n:
        out.append(f"flags hold {n} samples but metrics.n is {m.n}")
    if n != record.protocol.n_samples:
        out.append(f"flags hold {n} samples but protocol.n_samples is {record.protocol.n_samples}")
    if not np.array_equal(flags["clean_correct"].astype(bool), flags["clean_pred"] == flags["labels"]):
        out.append("flags: clean_correct is not clean_pred == labels")
    worst = flags["clean_correct"].astype(bool)
    for a in attacks:
        worst = worst & flags[f"robust__{a}"].astype(bool)
    if not np.array_equal(worst, flags["robust"].astype(bool)):
        out.append("flags: robust is not clean_correct ∧ every robust__<attack>")
    if out:
        return out
    again = metrics_from_flags(flags, m.num_classes, attacks)
    for name in ("clean_accuracy", "robust_accuracy", "clean_normalised", "robust_normalised", "chance"):
        a, b = getattr(m, name), getattr(again, name)
        if abs(a - b) > METRIC_TOL:
            out.append(f"metrics.{name} is {a:.6g} but the flags give {b:.6g}")
    for a in sorted(set(m.per_attack) | set(again.per_attack)):
        x, y = m.per_attack.get(a), again.per_attack.get(a)
        if x is None or y is None or abs(x - y) > METRIC_TOL:
            out.append(f"metrics.per_attack.{a} is {x} but the flags give {y}")
    return out


def deviations(record: ResultRecord) -> list[str]:
    """How the record's settings differ from its protocol's (a table marks such numbers)."""
    p = record.protocol
    s = p.settings or {}
    out = []
    defaults = s.get("attack_defaults") or {}
    for att in p.attacks:
        for k, v in (defaults.get(att.name) or {}).items():
            if k in att.params and att.params[k] != v:
                out.append(f"{att.name}.{k} = {att.params[k]} (protocol: {v})")
    if "n_samples" in s:
        want = (s.get("subsets") or {}).get(p.subset, s["n_samples"]) if p.subset else s["n_samples"]
        expected = p.n_total if want is None else min(int(want), p.n_total)
        if p.n_samples != expected:
            out.append(f"n = {p.n_samples} of {p.n_total} (protocol: {'all' if want is None else want})")
    if "seed" in s and s["seed"] != p.seed:
        out.append(f"seed = {p.seed} (protocol: {s['seed']})")
    if "eps" in s:
        allowed = {float(s["eps"]), *[float(e) for e in s.get("eps_sweep") or []]}
        k = round(p.eps * 255.0, 6)
        if all(abs(k - e) > 1e-6 for e in allowed):
            out.append(f"ε = {p.eps_text} (protocol: {', '.join(f'{e:g}/255' for e in sorted(allowed))})")
    return out


def protocol_of(record: ResultRecord) -> EntryProtocol:
    s = record.protocol.settings or {}
    datasets = [str(d) for d in s.get("datasets") or [record.protocol.dataset]]
    return EntryProtocol(name=record.protocol.name, version=record.protocol.version, datasets=datasets,
                         train_dataset=s.get("train_dataset"), normalised_average=bool(s.get("normalised_average", False)),
                         subset=record.protocol.subset)


def measurement(record: ResultRecord, record_ref: FileRef, sidecar_ref: FileRef) -> DatasetMeasurement:
    return DatasetMeasurement(
        record=record_ref, sidecar=sidecar_ref, measured_at=record.created_at, zsrbench_version=record.zsrbench_version,
        git_sha=record.git_sha, n_samples=record.protocol.n_samples, indices_digest=record.protocol.indices_digest,
        metrics=record.metrics, flags=record.flags, deviations=deviations(record))


EntryKey = tuple[str, int, str, str, str, "str | None"]


def entry_key(record: ResultRecord) -> EntryKey:
    """(protocol, version, model id, suite, ε text, subset): the records of one leaderboard entry."""
    p = record.protocol
    return (p.name, p.version, record.model.id, p.suite, p.eps_text, p.subset)


def _settings(record: ResultRecord) -> tuple[Any, ...]:
    p = record.protocol
    return (json.dumps([a.model_dump(mode="json") for a in p.attacks], sort_keys=True), p.precision, p.seed)


@dataclass
class _Loaded:
    path: Path
    record: ResultRecord
    blob: bytes
    sidecar_name: str
    sidecar_blob: bytes


def _load_result(path: Path, given: ResultRecord | None) -> _Loaded:
    """Read a runner's record from disk (the file wins over ``given``) and check its flags back its numbers."""
    try:
        blob = path.read_bytes()
        data = json.loads(blob)
    except (OSError, ValueError) as exc:
        raise ZsrError(f"{path}: cannot read the result record ({exc}).") from exc
    record = parse_record(data, path)
    if given is not None and entry_key(given) + (given.protocol.dataset,) != entry_key(record) + (record.protocol.dataset,):
        raise ZsrError(f"{path}: the file on disk is not the record given for it (model, suite, ε or dataset differ).")
    if record.sidecar is None:
        raise ZsrError(f"{path}: the record names no flags sidecar; only records written by write_result can be added.")
    name = record.sidecar.file
    if "/" in name or "\\" in name or name.startswith("."):
        raise ZsrError(f"{path}: sidecar name {name!r} must be a plain file name next to the record.")
    try:
        side = (path.parent / name).read_bytes()
    except OSError as exc:
        raise ZsrError(f"{path}: its flags sidecar {name} cannot be read ({exc.strerror}).") from exc
    if sha256_hex(side) != record.sidecar.sha256:
        raise ZsrError(f"{path.parent / name}: sha256 differs from the one its record names.")
    problems = check_flags(record, flags_from_bytes(side, path.parent / name))
    if problems:
        raise ZsrError(f"{path}: refusing to add it to the leaderboard: {'; '.join(problems)}.")
    return _Loaded(path, record, blob, name, side)


OUTCOMES = ("added", "unchanged", "reproduced")


class AddedRevisions(list):
    """The revision files :func:`add_measured` returns (a ``list[Path]``, one per entry) and, in the parallel list
    ``outcomes``, what happened to each entry: ``"added"`` (a new revision), ``"unchanged"`` (the very records of
    the newest revision again) or ``"reproduced"`` (new records whose per-sample flags equal the newest
    revision's: nothing new was measured, so no revision is added)."""

    def __init__(self, paths: Sequence[Path] = (), outcomes: Sequence[str] = ()) -> None:
        super().__init__(paths)
        self.outcomes: list[str] = list(outcomes)

    def append_outcome(self, path: Path, outcome: str) -> None:
        assert outcome in OUTCOMES
        self.append(path)
        self.outcomes.append(outcome)


def add_measured(leaderboard_root: str | Path, results: Sequence[tuple[Path, ResultRecord]], *,
                 now: str | None = None) -> AddedRevisions:
    """Add the runner's results as new revisions of their leaderboard entries; returns the revision files.

    ``results`` are ``(record_path, record)`` pairs as returned by :func:`zsrbench.runner.run`
    (``[(r.path, r.record) for r in run(cfg)]``). Records are grouped into entries (model × suite × ε × protocol
    version); each entry gets one new revision holding copies of the records and their flags. Datasets measured
    before with the same attack settings and not in ``results`` are carried over (referenced, not copied).
    Adding exactly the records of the newest revision again adds nothing and returns that revision; so does a
    run that reproduces it (every new record's per-sample flags equal the newest revision's for the same
    dataset, attack settings, precision, seed and sample set). The returned list's ``outcomes`` say which.
    """
    root = Path(leaderboard_root)
    groups: dict[EntryKey, dict[str, _Loaded]] = {}
    for path, rec in results:
        item = _load_result(Path(path), rec)
        key = entry_key(item.record)
        ds = item.record.protocol.dataset
        if ds in groups.setdefault(key, {}):
            raise ZsrError(f"Two records for dataset {ds} of the same entry: {groups[key][ds].path} and {path}.")
        groups[key][ds] = item
    out = AddedRevisions()
    for key, items in groups.items():
        out.append_outcome(*_add_measured_entry(root, key, items, now=now))
    return out


FLAG_ARRAYS = ("labels", "clean_pred", "clean_correct", "robust")


def _same_flags(new: dict[str, np.ndarray], old: dict[str, np.ndarray], attacks: Sequence[str]) -> bool:
    """Per-sample flags equal array-wise: labels, predictions, clean and worst-case robustness, every attack's
    robustness, and the non-finite marks (a sidecar without them has none)."""
    for k in (*FLAG_ARRAYS, *(f"robust__{a}" for a in attacks)):
        if k not in new or k not in old or not np.array_equal(new[k], old[k]):
            return False
    for k in sorted({k for k in (*new, *old) if k.startswith("nonfinite")}):
        a, b = new.get(k), old.get(k)
        a = np.zeros_like(b) if a is None else a
        b = np.zeros_like(a) if b is None else b
        if not np.array_equal(a, b):
            return False
    return True


def _reproduces(edir: Path, pm: MeasuredData, new: dict[str, DatasetMeasurement], items: dict[str, _Loaded],
                attacks: Sequence[str]) -> bool:
    """Whether the new records measure exactly what the newest revision holds (same samples, same flags)."""
    for ds, m in new.items():
        old = pm.datasets.get(ds)
        if old is None or old.indices_digest != m.indices_digest or old.n_samples != m.n_samples:
            return False
        path = _inside(edir, old.sidecar.path)
        try:
            blob = path.read_bytes() if path is not None else None
        except OSError:
            blob = None
        if blob is None or sha256_hex(blob) != old.sidecar.sha256:
            return False  # the old flags are gone or changed: record the new measurement
        if not _same_flags(flags_from_bytes(items[ds].sidecar_blob, items[ds].path), flags_from_bytes(blob, path),
                           attacks):
            return False
    return True


def _inside(base: Path, rel: str) -> Path | None:
    """``base/rel`` for a relative path that stays inside ``base`` (None otherwise)."""
    parts = Path(rel).parts
    if Path(rel).is_absolute() or ".." in parts:
        return None
    return base.joinpath(*parts)


def _add_measured_entry(root: Path, key: EntryKey, items: dict[str, _Loaded], *,
                        now: str | None) -> tuple[Path, str]:
    proto_name, version, model_id, suite, eps_text_, subset = key
    first = next(iter(items.values())).record
    settings = {_settings(i.record) for i in items.values()}
    if len(settings) > 1:
        raise ZsrError(f"The records of {model_id} · {suite} · ε={eps_text_} were measured with different attack "
                       "settings, precision or seed; add them separately.")
    entry_slug = measured_slug(model_id, suite, eps_text_, version, subset)
    edir = root / proto_name / entry_slug
    newest = max(items.values(), key=lambda i: i.record.created_at).record
    with writing_entry(edir):
        prev = _previous(edir)
        n = max(_taken_numbers(edir), default=0) + 1
        rev = rev_name(n)
        new: dict[str, DatasetMeasurement] = {}
        files: dict[str, bytes] = {}
        for ds, it in items.items():
            files[f"{ds}.json"] = it.blob
            files[it.sidecar_name] = it.sidecar_blob
            new[ds] = measurement(it.record, FileRef(path=f"{rev}/{ds}.json", sha256=sha256_hex(it.blob)),
                                  FileRef(path=f"{rev}/{it.sidecar_name}", sha256=sha256_hex(it.sidecar_blob)))
        pm = prev.entry.measured if prev.entry is not None and prev.entry.kind == "measured" else None
        carried, dropped = [], []
        attacks = list(first.protocol.attacks)
        same_settings = pm is not None and (
            [a.model_dump(mode="json") for a in pm.attacks] == [a.model_dump(mode="json") for a in attacks]
            and pm.precision == first.protocol.precision and pm.seed == first.protocol.seed)
        merged: dict[str, DatasetMeasurement] = {}
        if pm is not None:
            for ds, m in pm.datasets.items():
                if ds in new:
                    continue
                (carried if same_settings else dropped).append(ds)
                if same_settings:
                    merged[ds] = m
        merged.update(new)
        newest_valid = prev.path is not None and prev.note is None and prev.path == revision_files(edir)[-1][1]
        if pm is not None and same_settings and newest_valid and set(new) <= set(pm.datasets) and not dropped:
            assert prev.path is not None
            if all(pm.datasets[ds].record.sha256 == m.record.sha256
                   and pm.datasets[ds].sidecar.sha256 == m.sidecar.sha256 for ds, m in new.items()):
                return prev.path, "unchanged"  # the same records again: nothing new to record
            if _reproduces(edir, pm, new, items, [a.name for a in attacks]):
                return prev.path, "reproduced"  # a re-run that measured exactly the same: nothing new either
        order = protocol_of(newest).datasets
        merged = dict(sorted(merged.items(), key=lambda kv: (order.index(kv[0]) if kv[0] in order else len(order), kv[0])))
        changes = measured_changes(prev, new, carried, dropped, attacks, first.protocol.precision, first.protocol.seed,
                                   newest)
        entry = LeaderboardEntry(
            kind="measured", entry=entry_slug, revision=n, created_at=now or now_utc(), previous=prev.ref(),
            changes=changes, protocol=protocol_of(newest),
            model=EntryModel(id=model_id, name=model_id, defense=newest.model.defense,
                             architecture=newest.model.architecture,
                             checkpoint_sha256=newest.model.checkpoint_sha256 or newest.model.weights_sha256,
                             tensors_sha256=newest.model.tensors_sha256),
            suite=suite, eps=newest.protocol.eps, eps_text=eps_text_, zsrbench_version=zsrbench.__version__,
            measured=MeasuredData(attacks=attacks, precision=first.protocol.precision, seed=first.protocol.seed,
                                  datasets=merged),
        )
        return _write_revision(edir, entry, files), "added"


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _attacks_text(attacks: Sequence[AttackConfig]) -> str:
    return ", ".join(f"{a.name}({', '.join(f'{k}={v}' for k, v in sorted(a.params.items()))})" for a in attacks)


def measured_changes(prev: Previous, new: dict[str, DatasetMeasurement], carried: list[str], dropped: list[str],
                     attacks: list[AttackConfig], precision: str, seed: int, newest: ResultRecord) -> list[str]:
    """What this revision changes, in lines a reviewer reads in ``zsrbench history``."""
    lines: list[str] = []
    if prev.note:
        lines.append(prev.note)
    pe = prev.entry
    if pe is None or pe.measured is None:
        lines.append(f"first measurement: {', '.join(new)} ({len(new)} dataset(s))")
        return lines
    pm = pe.measured
    if [a.model_dump() for a in pm.attacks] != [a.model_dump() for a in attacks]:
        lines.append(f"attack settings: {_attacks_text(pm.attacks)} -> {_attacks_text(attacks)}")
    if pm.precision != precision:
        lines.append(f"precision: {pm.precision} -> {precision}")
    if pm.seed != seed:
        lines.append(f"seed: {pm.seed} -> {seed}")
    if pe.model.checkpoint_sha256 != (newest.model.checkpoint_sha256 or newest.model.weights_sha256):
        lines.append(f"checkpoint sha256: {pe.model.checkpoint_sha256} -> "
                     f"{newest.model.checkpoint_sha256 or newest.model.weights_sha256}")
    old_git = {m.git_sha for ds, m in pm.datasets.items() if ds in new}
    new_git = {m.git_sha for m in new.values()}
    if old_git and old_git != new_git:
        lines.append(f"git_sha: {', '.join(sorted(str(g)[:12] for g in old_git))} -> "
                     f"{', '.join(sorted(str(g)[:12] for g in new_git))}")
    old_ver = {m.zsrbench_version for ds, m in pm.datasets.items() if ds in new}
    new_ver = {m.zsrbench_version for m in new.values()}
    if old_ver and old_ver != new_ver:
        lines.append(f"zsrbench version: {', '.join(sorted(old_ver))} -> {', '.join(sorted(new_ver))}")
    for ds, m in new.items():
        old = pm.datasets.get(ds)
        if old is None:
            lines.append(f"{ds}: added (clean {_pct(m.metrics.clean_accuracy)}, robust {_pct(m.metrics.robust_accuracy)})")
            continue
        if old.record.sha256 == m.record.sha256:
            lines.append(f"{ds}: same record as before")
            continue
        parts = []
        if old.indices_digest != m.indices_digest:
            parts.append(f"sample set changed (n {old.n_samples} -> {m.n_samples})")
        for name in ("clean_accuracy", "robust_accuracy"):
            a, b = getattr(old.metrics, name), getattr(m.metrics, name)
            if abs(a - b) > METRIC_TOL:
                parts.append(f"{name.split('_')[0]} {_pct(a)} -> {_pct(b)} ({100 * (b - a):+.2f})")
        for att in sorted(set(old.metrics.per_attack) | set(m.metrics.per_attack)):
            a, b = old.metrics.per_attack.get(att), m.metrics.per_attack.get(att)
            if a is None or b is None or abs(a - b) > METRIC_TOL:
                parts.append(f"{att} {'-' if a is None else _pct(a)} -> {'-' if b is None else _pct(b)}")
        if old.flags != m.flags:
            parts.append("warnings/fallbacks changed")
        lines.append(f"{ds}: " + ("; ".join(parts) if parts else "re-measured, numbers unchanged"))
    if carried:
        lines.append(f"carried over unchanged from {rev_name(pe.revision)}: {', '.join(carried)}")
    if dropped:
        lines.append(f"not carried over from {rev_name(pe.revision)} (different attack settings, precision or seed): "
                     f"{', '.join(dropped)}")
    return lines


# ---------------------------------------------------------------------------------------------------- reported
def add_reported(leaderboard_root: str | Path, drafts: Sequence[LeaderboardEntry], *, now: str | None = None) -> list[Path]:
    """Add reported (published) entries. A draft equal to the newest revision adds nothing (re-imports are no-ops).

    ``revision``, ``created_at``, ``previous``, ``changes`` and ``digest`` of the drafts are filled in here.
    """
    root = Path(leaderboard_root)
    out = []
    for draft in drafts:
        if draft.kind != "reported" or draft.reported is None:
            raise ZsrError(f"add_reported takes reported entries; '{draft.entry}' is {draft.kind}.")
        edir = root / draft.protocol.name / draft.entry
        with writing_entry(edir):
            prev = _previous(edir)
            pe = prev.entry
            same = pe is not None and prev.note is None and all(
                getattr(pe, f) == getattr(draft, f) for f in ("kind", "protocol", "model", "suite", "eps", "eps_text",
                                                             "reported"))
            if same:
                assert prev.path is not None
                out.append(prev.path)
                continue
            n = max(_taken_numbers(edir), default=0) + 1
            entry = draft.model_copy(update={
                "revision": n, "created_at": now or now_utc(), "previous": prev.ref(),
                "changes": reported_changes(prev, draft), "zsrbench_version": zsrbench.__version__, "digest": ""})
            entry = LeaderboardEntry.model_validate(entry.model_dump())
            out.append(_write_revision(edir, entry, {}))
    return out


def reported_changes(prev: Previous, new: LeaderboardEntry) -> list[str]:
    lines = [prev.note] if prev.note else []
    pe = prev.entry
    assert new.reported is not None
    if pe is None or pe.reported is None:
        src = new.reported.imported_from or new.reported.source
        return lines + [f"first revision: reported numbers imported from {src}"]
    a, b = pe.reported, new.reported
    for f in ("source", "source_id", "method", "attack", "attack_description"):
        if getattr(a, f) != getattr(b, f):
            lines.append(f"{f}: {getattr(a, f)!r} -> {getattr(b, f)!r}")
    for metric in ("clean", "robust"):
        x, y = getattr(a, metric), getattr(b, metric)
        if x == y:
            continue
        if x is None or y is None:
            lines.append(f"{metric}: {'added' if x is None else 'removed'}")
            continue
        for ds in list(dict.fromkeys([*x.per_dataset, *y.per_dataset])):
            u, v = x.per_dataset.get(ds), y.per_dataset.get(ds)
            if u != v:
                lines.append(f"{metric} {ds}: {u} -> {v}")
        if x.average != y.average:
            lines.append(f"{metric} average: {x.average} -> {y.average}")
        if x.notes != y.notes or x.average_scope != y.average_scope:
            lines.append(f"{metric}: notes or average scope changed")
    if a.notes != b.notes:
        lines.append("notes changed")
    for f in ("model", "protocol", "suite", "eps_text"):
        if getattr(pe, f) != getattr(new, f):
            lines.append(f"{f} changed")
    return lines or ["re-imported, content unchanged"]


# ---------------------------------------------------------------------------------------------------- reading
@dataclass
class LoadedEntry:
    """An entry as shown: the chosen revision, the directory its file references are relative to."""

    entry: LeaderboardEntry
    base: Path
    file: Path | None = None
    newest_revision: int | None = None


@dataclass
class StoreView:
    entries: list[LoadedEntry] = field(default_factory=list)
    problems: list[tuple[Path, str]] = field(default_factory=list)  # bad files: (path, reason)


@dataclass(frozen=True)
class AsOf:
    revision: int | None = None
    time: datetime | None = None
    text: str = ""


def parse_as_of(text: str | None) -> AsOf | None:
    """``r0002`` / ``2`` (that revision of each entry, or the newest older one) or a date/time (UTC)."""
    if text is None:
        return None
    t = text.strip()
    m = re.fullmatch(r"r?(\d{1,6})", t)
    if m and not re.fullmatch(r"\d{8}", t):
        return AsOf(revision=int(m.group(1)), text=t)
    try:
        if re.fullmatch(r"\d{4}-?\d{2}-?\d{2}", t):
            t = t.replace("-", "")
            when = datetime.strptime(t, "%Y%m%d").replace(tzinfo=timezone.utc) + timedelta(days=1) - timedelta(microseconds=1)
        else:
            when = datetime.fromisoformat(t.replace("Z", "+00:00"))
            if when.tzinfo is None:
                when = when.replace(tzinfo=timezone.utc)
    except ValueError:
        raise ZsrError(f"--as-of takes a revision (r0002 or 2) or a date/time (2025-06-01, 2025-06-01T12:00:00Z); "
                       f"got {text!r}.") from None
    return AsOf(time=when, text=t)


def parse_time(text: str) -> datetime | None:
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def load_store(root: str | Path, protocol: str | None = None, as_of: AsOf | None = None) -> StoreView:
    """The entries of the leaderboard at ``root`` (newest revisions, or the state at ``as_of``).

    Bad files are reported in ``problems`` and skipped; an entry whose chosen revision is bad is not shown
    (an older revision is never silently shown in its place).
    """
    root = Path(root)
    if not atomic.probe(root, option="--leaderboard-dir"):
        raise ZsrError(f"No leaderboard at {root}: pass --leaderboard-dir DIR (or --results-dir DIR for raw results).")
    view = StoreView()
    for edir in entry_dirs(root, protocol):
        revs = revision_files(edir)
        parsed: list[tuple[int, Path, LeaderboardEntry | None]] = []
        for n, p in revs:
            try:
                parsed.append((n, p, read_entry(p)))
            except ZsrError as exc:
                view.problems.append((p, str(exc).removeprefix(f"{p}: ")))
                parsed.append((n, p, None))
        if as_of is None:
            chosen = parsed[-1]
        elif as_of.revision is not None:
            older = [x for x in parsed if x[0] <= as_of.revision]
            if not older:
                continue
            chosen = older[-1]
        else:
            assert as_of.time is not None
            older = [x for x in parsed if x[2] is not None and (parse_time(x[2].created_at) or as_of.time) <= as_of.time]
            if not older:
                continue
            chosen = older[-1]
        if chosen[2] is None:
            continue  # named in problems; not replaced by an older revision
        view.entries.append(LoadedEntry(chosen[2], edir, chosen[1], revs[-1][0]))
    return view


def entries_from_results(results_dir: str | Path, protocol: str | None = None) -> StoreView:
    """In-memory measured entries built from a raw results directory (``zsrbench table --results-dir``)."""
    root = Path(results_dir)
    if not atomic.probe(root, option="--results-dir"):
        raise ZsrError(f"Results directory {root} does not exist; pass the folder `zsrbench run --results-dir` "
                       "wrote to.")
    view = StoreView()
    groups: dict[EntryKey, list[tuple[Path, ResultRecord, str]]] = {}
    base = root
    for path in sorted(root.rglob("*.json")):
        if path.name.endswith(".schema.json"):
            continue
        try:
            blob = path.read_bytes()
            record = parse_record(json.loads(blob), path)
        except (OSError, ValueError, ZsrError) as exc:
            view.problems.append((path, str(exc).removeprefix(f"{path}: ")))
            continue
        if protocol and record.protocol.name != protocol:
            continue
        if record.sidecar is None:
            view.problems.append((path, "the record names no flags sidecar"))
            continue
        groups.setdefault(entry_key(record), []).append((path, record, sha256_hex(blob)))
    for key, items in groups.items():
        proto_name, version, model_id, suite, eps_text_, subset = key
        newest = max(items, key=lambda t: t[1].created_at)[1]
        datasets: dict[str, DatasetMeasurement] = {}
        order = protocol_of(newest).datasets
        for path, record, sha in sorted(items, key=lambda t: (t[1].protocol.dataset not in order,
                                                             order.index(t[1].protocol.dataset)
                                                             if t[1].protocol.dataset in order else 0)):
            assert record.sidecar is not None
            rel = path.relative_to(base)
            datasets[record.protocol.dataset] = measurement(
                record, FileRef(path=rel.as_posix(), sha256=sha),
                FileRef(path=(rel.parent / record.sidecar.file).as_posix(), sha256=record.sidecar.sha256))
        try:
            entry = LeaderboardEntry(
                kind="measured", entry=measured_slug(model_id, suite, eps_text_, version, subset), revision=1,
                created_at=newest.created_at, protocol=protocol_of(newest),
                model=EntryModel(id=model_id, name=model_id, defense=newest.model.defense,
                                 architecture=newest.model.architecture,
                                 checkpoint_sha256=newest.model.checkpoint_sha256 or newest.model.weights_sha256,
                                 tensors_sha256=newest.model.tensors_sha256),
                suite=suite, eps=newest.protocol.eps, eps_text=eps_text_, zsrbench_version=zsrbench.__version__,
                measured=MeasuredData(attacks=list(newest.protocol.attacks), precision=newest.protocol.precision,
                                      seed=newest.protocol.seed, datasets=datasets))
        except ValidationError as exc:  # pragma: no cover - records were valid one by one
            view.problems.append((items[0][0], validation_message(exc)))
            continue
        view.entries.append(LoadedEntry(entry, base, None, None))
    return view


def resolve_entry(root: str | Path, name: str) -> tuple[Path, int | None]:
    """The entry directory named by ``name`` (slug, ``protocol/slug``, unique part of a slug or a path) and the
    revision asked for with ``@r0002`` / a revision file path (None: the newest)."""
    revision = None
    m = re.fullmatch(r"(.+)@r?(\d+)", name)
    if m:
        name, revision = m.group(1), int(m.group(2))
    p = Path(name)
    fm = REV_FILE_RE.match(p.name)
    if p.is_file() and fm:
        return p.parent, int(fm.group(1)) if revision is None else revision
    if p.is_dir() and revision_files(p):
        return p, revision
    dirs = entry_dirs(root) if Path(root).is_dir() else []
    if not dirs:
        raise ZsrError(f"No leaderboard entries under {root}; pass --leaderboard-dir DIR.")
    keys = {f"{d.parent.name}/{d.name}": d for d in dirs}
    exact = [d for k, d in keys.items() if name in (k, d.name)]
    if len(exact) == 1:
        return exact[0], revision
    hits = exact or [d for k, d in keys.items() if name.lower() in k.lower()]
    if len(hits) == 1:
        return hits[0], revision
    if not hits:
        close = difflib.get_close_matches(name, [d.name for d in dirs], n=3, cutoff=0.4)
        hint = f" Did you mean {', '.join(close)}?" if close else " `zsrbench table` lists the entries."
        raise ZsrError(f"No leaderboard entry matches '{name}' under {root}.{hint}")
    listed = "\n  ".join(f"{d.parent.name}/{d.name}" for d in hits[:12])
    raise ZsrError(f"'{name}' matches {len(hits)} entries; be more specific:\n  {listed}")


def history(entry_dir: Path) -> list[tuple[int, Path, LeaderboardEntry | ZsrError]]:
    out: list[tuple[int, Path, LeaderboardEntry | ZsrError]] = []
    for n, p in revision_files(entry_dir):
        try:
            out.append((n, p, read_entry(p)))
        except ZsrError as exc:
            out.append((n, p, exc))
    return out


def read_flags_ref(loaded: LoadedEntry, m: DatasetMeasurement) -> dict[str, np.ndarray]:
    """The per-sample flags behind one dataset of an entry (sha256-checked)."""
    path = loaded.base / m.sidecar.path
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise ZsrError(f"{path}: flags file missing ({exc.strerror}).") from exc
    if sha256_hex(blob) != m.sidecar.sha256:
        raise ZsrError(f"{path}: sha256 differs from the one the entry names.")
    return flags_from_bytes(blob, path)
